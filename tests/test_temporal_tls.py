"""Connecting to a secured Temporal: TLS, mTLS and API keys from the Temporal CLI's variables.

The dev server speaks plain gRPC (`temporal server start-dev` has no TLS flags), so the
integration test puts a real TLS terminator in front of it that requires a client
certificate (mTLS), with certificates made here by a CA of the test's own.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.service import TLSConfig

from vqa.contracts import StreamReport
from vqa.runtime import Settings, SettingsError, connect

from . import media
from .conftest import TemporalServer, run_async, run_starter, worker_subprocess

SERVER_NAME = "temporal.vqa.test"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return key


def _certificate(
    *, subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, issuer_key: ec.EllipticCurvePrivateKey,
    usage: list[x509.ObjectIdentifier] | None = None, names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        ).add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for SERVER_NAME only, and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = _write_key(d / "ca.key")
    ca = _certificate(subject="vqa test CA", key=ca_key, issuer=None, issuer_key=ca_key)
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_key = _write_key(d / "server.key")
    server = _certificate(subject=SERVER_NAME, key=server_key, issuer=ca, issuer_key=ca_key,
                          usage=[ExtendedKeyUsageOID.SERVER_AUTH], names=[x509.DNSName(SERVER_NAME)])
    (d / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    client_key = _write_key(d / "client.key")
    client = _certificate(subject="vqa worker", key=client_key, issuer=ca, issuer_key=ca_key,
                          usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    (d / "client.pem").write_bytes(client.public_bytes(serialization.Encoding.PEM))
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


class MtlsTerminator:
    """Accepts TLS connections that present a client certificate of the CA, and relays them to `upstream`."""

    def __init__(self, pki: Pki, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        self.context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.set_alpn_protocols(["h2"])
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, context: None)  # refused handshakes are expected
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context), self.loop
        ).result(10)
        self.address = f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in relays:
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def mtls(pki: Pki, temporal_server: TemporalServer) -> Iterator[MtlsTerminator]:
    host, _, port = temporal_server.address.rpartition(":")
    terminator = MtlsTerminator(pki, (host, int(port)))
    try:
        yield terminator
    finally:
        terminator.close()


def _mtls_env(pki: Pki, address: str) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(pki.client_cert),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pki.client_key),
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki.ca),
        "TEMPORAL_TLS_SERVER_NAME": SERVER_NAME,
    }


# -- Settings from the environment ----------------------------------------------------------


def test_mtls_settings_read_the_files(pki: Pki) -> None:
    settings = Settings.from_env(_mtls_env(pki, "temporal.example.com:7233"))
    assert settings.tls == TLSConfig(
        server_root_ca_cert=pki.ca.read_bytes(),
        client_cert=pki.client_cert.read_bytes(),
        client_private_key=pki.client_key.read_bytes(),
        domain=SERVER_NAME,
    )
    assert settings.api_key is None
    assert "PRIVATE KEY" not in repr(settings), "keys stay out of reprs and logs"


def test_the_short_tctl_names_are_aliases(pki: Pki) -> None:
    short = Settings.from_env(
        {"TEMPORAL_TLS_CERT": str(pki.client_cert), "TEMPORAL_TLS_KEY": str(pki.client_key), "TEMPORAL_TLS_CA": str(pki.ca)}
    )
    assert isinstance(short.tls, TLSConfig)
    assert (short.tls.client_cert, short.tls.client_private_key, short.tls.server_root_ca_cert) == (
        pki.client_cert.read_bytes(), pki.client_key.read_bytes(), pki.ca.read_bytes(),
    )


def test_api_key_implies_tls_with_the_system_roots() -> None:
    cloud = Settings.from_env({"TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233", "TEMPORAL_API_KEY": "key-123"})
    assert cloud.api_key == "key-123" and cloud.tls is True
    assert "key-123" not in repr(cloud)
    assert Settings.from_env({"TEMPORAL_TLS": "true"}).tls == TLSConfig()
    assert Settings.from_env({"TEMPORAL_API_KEY": "k", "TEMPORAL_TLS": "false"}).tls is False
    plain = Settings.from_env({})
    assert plain.tls is False and plain.api_key is None


def test_an_unreadable_tls_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"TEMPORAL_TLS_CLIENT_CERT_PATH: cannot read .*/missing\.pem"):
        Settings.from_env({"TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "missing.pem")})
    with pytest.raises(SettingsError, match="TEMPORAL_TLS_CA: cannot read"):
        Settings.from_env({"TEMPORAL_TLS_CA": str(tmp_path / "missing.pem")})


# -- through a real TLS terminator -------------------------------------------------------------


@pytest.mark.integration
def test_a_stream_through_mtls(mtls: MtlsTerminator, pki: Pki, temporal_server: TemporalServer, task_queue: str, clips, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = _mtls_env(pki, mtls.address)
    log = tmp_path / "worker.log"
    with worker_subprocess(temporal_server.env(task_queue, **env), log):
        done = run_starter(temporal_server, task_queue, str(clips("main")), "--wait", "--json", "--window-seconds", "4", **env)
    assert done.returncode == 0, done.stderr + log.read_text()
    report = StreamReport.model_validate(json.loads(done.stdout))
    assert report.status == "completed" and media.match(report.defects, media.MAIN_TRUTH) == []


@pytest.mark.integration
@pytest.mark.parametrize(
    "drop",
    [
        ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH"),  # no client certificate
        ("TEMPORAL_TLS_SERVER_NAME",),  # the certificate does not name 127.0.0.1
        ("TEMPORAL_TLS_SERVER_CA_CERT_PATH",),  # the system roots do not know the test CA
    ],
    ids=["no-client-cert", "wrong-server-name", "unknown-ca"],
)
def test_the_starter_cannot_connect_without_the_right_tls(  # type: ignore[no-untyped-def]
    mtls: MtlsTerminator, pki: Pki, temporal_server: TemporalServer, task_queue: str, drop: tuple[str, ...]
) -> None:
    env = {k: v for k, v in _mtls_env(pki, mtls.address).items() if k not in drop}
    if "TEMPORAL_TLS_SERVER_CA_CERT_PATH" in drop:
        env["TEMPORAL_TLS"] = "true"
    done = run_starter(temporal_server, task_queue, "list", timeout=120, **env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "cannot reach Temporal" in done.stderr


@pytest.mark.integration
def test_plain_grpc_does_not_reach_a_tls_server(mtls: MtlsTerminator, temporal_server: TemporalServer, task_queue: str) -> None:
    done = run_starter(temporal_server, task_queue, "list", timeout=120, TEMPORAL_ADDRESS=mtls.address)
    assert done.returncode == 3, done.stdout + done.stderr


@pytest.mark.integration
def test_connect_sends_the_api_key_over_tls(mtls: MtlsTerminator, pki: Pki) -> None:
    settings = Settings.from_env({**_mtls_env(pki, mtls.address), "TEMPORAL_API_KEY": "key-123"})

    async def scenario() -> tuple[str | None, bool]:
        client = await connect(settings)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
        return client.api_key, info.server_version != ""

    assert run_async(scenario()) == ("key-123", True)
