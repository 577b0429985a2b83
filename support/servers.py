"""The real servers the cost benchmark (bench/cost.py, and its test) runs against, on free ports: a
Temporal dev server (with its Prometheus metrics, for the server's own `action` counter) and
SeaweedFS (S3), with one bucket per kind of object."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.seaweedfs import SeaweedFS, start_seaweedfs
from vqa.devserver import free_port, port_open, temporal_binary

# One bucket per kind of object, so every S3 request is attributed by its bucket alone.
SOURCE_BUCKET = "bench-media"  # the streams' sources
FRAMES_BUCKET = "bench-frames"  # the per-second design's intermediate frames and audio
RESULTS_BUCKET = "bench-results"  # window results, reports, evidence
S3_CATEGORIES = {SOURCE_BUCKET: "source", FRAMES_BUCKET: "intermediate", RESULTS_BUCKET: "results"}


@dataclass
class Servers:
    temporal_address: str
    metrics_url: str
    temporal: subprocess.Popen[bytes]
    s3: SeaweedFS
    directory: Path

    def worker_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The environment of a worker process: `base` (the caller's environment) less its AWS, VQA and
        Temporal settings, plus this Temporal server and this S3 server, nothing else."""
        env = {k: v for k, v in base.items() if not k.startswith(("AWS_", "VQA_", "TEMPORAL_"))}
        env.update(self.s3.env())
        env.update(
            TEMPORAL_ADDRESS=self.temporal_address,
            TEMPORAL_NAMESPACE="default",
            VQA_HOME=str(self.directory / "home"),
            VQA_RESULTS=f"s3://{RESULTS_BUCKET}/default",
            PYTHONUNBUFFERED="1",
        )
        return env

    def admin(self) -> Any:
        """An S3 client of the benchmark's own: what it does (uploads, clean-up) is never counted."""
        return self.s3.client()


def _search_attributes() -> dict[str, str]:
    from vqa.search_attributes import SEARCH_ATTRIBUTES

    return dict(SEARCH_ATTRIBUTES)


@contextmanager
def running_servers(directory: Path, *, timeout_s: float = 60.0) -> Iterator[Servers]:
    """Start both servers (state in memory / under `directory`), yield them, stop them."""
    directory.mkdir(parents=True, exist_ok=True)
    port, metrics_port = free_port(), free_port()
    args = [
        temporal_binary(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
        "--metrics-port", str(metrics_port), "--log-level", "warn",
    ]
    for name, kind in _search_attributes().items():  # whatever the product's workflows may upsert
        args += ["--search-attribute", f"{name}={kind}"]
    with open(directory / "temporal.log", "ab") as log:
        temporal = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    s3: SeaweedFS | None = None
    try:
        deadline = time.monotonic() + timeout_s
        while not (port_open("127.0.0.1", port) and _answers(metrics_url)):
            if temporal.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Temporal dev server did not start; see {directory / 'temporal.log'}")
            time.sleep(0.2)
        # Room for the per-second design's intermediate objects, kept until its run ends
        # (3.8 GB per stream-minute at 1080p): 600 volumes of 64 MiB.
        s3 = start_seaweedfs(directory / "s3", timeout_s=timeout_s, max_volumes=600)
        admin = s3.client()
        for bucket in S3_CATEGORIES:
            admin.create_bucket(Bucket=bucket)
        yield Servers(
            temporal_address=f"127.0.0.1:{port}", metrics_url=metrics_url, temporal=temporal, s3=s3,
            directory=directory,
        )
    finally:
        if s3 is not None:
            s3.stop()
        temporal.terminate()
        try:
            temporal.wait(timeout=15)
        except subprocess.TimeoutExpired:
            temporal.kill()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own dev server
            return bool(response.status == 200)
    except OSError:
        return False


def empty_bucket(servers: Servers, bucket: str, prefix: str = "") -> int:
    """Delete what a run left in `bucket` (uncounted); returns how many objects."""
    admin = servers.admin()
    deleted = 0
    for page in admin.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            admin.delete_objects(Bucket=bucket, Delete={"Objects": keys[i : i + 1000], "Quiet": True})
        deleted += len(keys)
    return deleted
