"""Plain http(s) file sources: a clip on an ordinary web server (Range requests), analysed through Temporal."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from activities.errors import UnreadableSourceError
from activities.decode import probe
from support import hls
from vqa.contracts import StreamRequest

from . import media
from .conftest import TemporalServer, analyse_stream
from .test_temporal_tls import _certificate, _write_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA of the test's own, and a server certificate it signed for 127.0.0.1: (CA, certificate, key)."""
    d = tmp_path_factory.mktemp("https")
    ca_key = _write_key(d / "ca.key")
    ca = _certificate(subject="vqa test media CA", key=ca_key, issuer=None, issuer_key=ca_key)
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key = _write_key(d / "server.key")
    server = _certificate(subject="127.0.0.1", key=key, issuer=ca, issuer_key=ca_key, usage=[ExtendedKeyUsageOID.SERVER_AUTH],
                          names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (d / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_file_over_http_is_analysed_through_temporal(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, tls: tuple[Path, Path, Path], scheme: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = clips("main")
    if scheme == "https":
        monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))  # the worker (this process) trusts the test CA
    server = hls.StaticServer(path.parent, tls=tls[1:] if scheme == "https" else None)
    request = StreamRequest(stream_id=f"{scheme}-{os.urandom(3).hex()}", source=f"{server.url}/{path.name}", window_seconds=4.0)
    assert request.source.startswith(f"{scheme}://")
    try:
        report = analyse_stream(temporal_server, task_queue, request)
    finally:
        server.close()
    assert report.status == "completed", report.error
    assert report.windows == 8 and report.media is not None and report.media.duration_s == pytest.approx(32.0, abs=0.1)
    assert media.match(report.defects, media.MAIN_TRUTH) == []
    starts = [int(r.removeprefix("bytes=").partition("-")[0] or 0) for r in server.ranges if r]
    assert any(start > 0 for start in starts), "windows seek into the file with Range requests"


def test_an_https_file_whose_certificate_is_not_trusted_is_refused(  # type: ignore[no-untyped-def]
    clips, tls: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FFmpeg reads https without checking the certificate unless told to: the worker tells it."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the test CA is trusted by no one
    path = clips("main")
    server = hls.StaticServer(path.parent, tls=tls[1:])
    try:
        with pytest.raises(UnreadableSourceError, match="TLS certificate is not trusted"):
            probe(f"{server.url}/{path.name}")
        monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))  # once its CA is trusted, the same file is read
        assert probe(f"{server.url}/{path.name}").duration_s == pytest.approx(32.0, abs=0.1)
    finally:
        server.close()
