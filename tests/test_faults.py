"""Faults injected into a running system: a worker killed mid-window, the Temporal server restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import PendingActivityState, TimeoutType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from cli.worker import build_worker
from support.webhook import Receiver, serve_webhook
from vqa.contracts import StreamReport, StreamRequest
from vqa.devserver import free_port, start_dev_server, stop_process
from vqa.runtime import Settings, connect
from workflows import StreamMonitorWorkflow

from . import bad_media, media
from .conftest import REPO, TemporalServer, python_command, run_async, start_stream

pytestmark = pytest.mark.integration


def _heavy_clip(path: Path) -> Path:
    """30 s of noisy 720p (about 2 s to analyse per 15 s window): black 4-9 s, silence 16-21 s."""
    bad_media.ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=30",
        "-f", "lavfi", "-i", "sine=frequency=300:duration=30",
        "-vf", "noise=alls=12:allf=t,drawbox=c=black:t=fill:enable='between(t,4,9)'",
        "-af", "volume=enable='between(t,16,21)':volume=0",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", str(path),
    )
    return path


@contextmanager
def _worker_process(
    server: TemporalServer, task_queue: str, log: Path, *, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            python_command("worker.py"),
            env=env or server.env(task_queue, VQA_MAX_CONCURRENT_WINDOWS="1", VQA_DECODE_THREADS="1"),
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _window_in_progress(handle: WorkflowHandle, timeout_s: float = 60) -> int:  # type: ignore[type-arg]
    """Waits until a window activity has started and heartbeated once; returns its attempt."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if (
                pending.activity_type.name == "analyze_window"
                and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                and pending.HasField("heartbeat_details")
            ):
                return pending.attempt
        await asyncio.sleep(0.02)
    raise AssertionError("no window was seen in progress")


def _assert_same_as_clean(report: StreamReport, clean: StreamReport, *, windows: int) -> None:
    """The faulted stream's report is the fault-free one's: the heavy clip's black and silence."""
    assert report.status == clean.status == "completed"
    assert report.windows == clean.windows == windows
    assert media.without_evidence(report.defects) == media.without_evidence(clean.defects), "same defects, none lost or doubled"
    assert [(d.kind, round(d.start_s), round(d.end_s)) for d in report.defects] == [("black", 4, 9), ("silence", 16, 21)]


def _notified(webhook: Receiver, stream_id: str) -> list[str]:
    """The notification ids the webhook received for one stream (duplicates kept), sorted."""
    return sorted(n.removeprefix(stream_id + "/") for n in webhook.ids() if n.startswith(stream_id + "/"))


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1: its URL, and the notifications it received (duplicates kept)."""
    with serve_webhook() as state:
        yield state


def test_a_worker_killed_mid_window_changes_nothing(
    temporal_server: TemporalServer, task_queue: str, tmp_path: Path, webhook: Receiver
) -> None:
    clip = _heavy_clip(tmp_path / "heavy.mp4")
    settings = temporal_server.settings(task_queue)
    hook = webhook.url

    def request(name: str) -> StreamRequest:
        return StreamRequest(
            stream_id=f"{name}-{uuid.uuid4().hex[:8]}", source=str(clip), window_seconds=15.0, heartbeat_timeout_s=3.0,
            notify_url=hook,
        )

    async def scenario() -> tuple[StreamReport, StreamReport, list[tuple[int, int]]]:
        client = await connect(settings)
        faulted = await start_stream(client, task_queue, request("killed"))
        with _worker_process(temporal_server, task_queue, tmp_path / "first.log") as first:
            assert await _window_in_progress(faulted) == 1
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        with _worker_process(temporal_server, task_queue, tmp_path / "second.log"):
            report = await faulted.result()
            clean = await (await start_stream(client, task_queue, request("clean"))).result()
        attempts: list[tuple[int, int]] = []  # (attempt, timeout type of the failure before it)
        async for event in faulted.fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                started = event.activity_task_started_event_attributes
                attempts.append((started.attempt, started.last_failure.timeout_failure_info.timeout_type))
        return report, clean, attempts

    report, clean, attempts = run_async(scenario())
    _assert_same_as_clean(report, clean, windows=2)
    # probe, window 0 (killed, then again on the second worker), window 1, report
    assert (2, TimeoutType.TIMEOUT_TYPE_HEARTBEAT) in attempts, attempts
    assert sum(1 for attempt, _ in attempts if attempt > 1) == 1, attempts
    # Notifications: each event opened and closed once, as for the clean run.
    assert _notified(webhook, report.stream_id) == _notified(webhook, clean.stream_id), webhook.ids()
    assert len(_notified(webhook, report.stream_id)) == 4, webhook.ids()


def test_streams_survive_a_temporal_server_restart(tmp_path: Path, clips: media.ClipFactory) -> None:
    port, ui_port = free_port(), free_port()
    db, log = tmp_path / "temporal.db", tmp_path / "server.log"
    task_queue = f"restart-{uuid.uuid4().hex[:8]}"
    settings = Settings(address=f"127.0.0.1:{port}", namespace="default", task_queue=task_queue,
                        max_concurrent_windows=2, home=tmp_path, ui_url=None)
    path = clips("boundary")
    server = start_dev_server(port=port, ui_port=ui_port, db_path=db, log_path=log)

    async def result(client: Client, workflow_id: str) -> StreamReport:
        while True:  # waiting across the outage: the client reconnects, a call in flight may fail
            try:
                return await client.get_workflow_handle(workflow_id, result_type=StreamReport).result()
            except RPCError:
                await asyncio.sleep(0.5)

    async def scenario() -> tuple[list[StreamReport], list[int]]:
        nonlocal server
        client = await connect(settings)
        async with build_worker(client, task_queue=task_queue, max_concurrent_windows=2):
            handles = [
                await start_stream(client, task_queue, StreamRequest(
                    stream_id=f"restart{i}-{uuid.uuid4().hex[:8]}", source=str(path), window_seconds=0.5))
                for i in range(3)
            ]
            while True:
                statuses = [await h.query(StreamMonitorWorkflow.status) for h in handles]
                if min(s.windows_done for s in statuses) >= 3:
                    break
                await asyncio.sleep(0.05)
            server.terminate()
            server.wait(timeout=30)
            await asyncio.sleep(2)
            server = start_dev_server(port=port, ui_port=ui_port, db_path=db, log_path=log)
            reports = await asyncio.wait_for(asyncio.gather(*(result(client, h.id) for h in handles)), timeout=120)
            return reports, [s.windows_done for s in statuses]

    try:
        reports, done_before = run_async(scenario())
    finally:
        stop_process(server)
    assert max(done_before) < 40, "the server went away while the streams ran"
    for report in reports:
        assert report.status == "completed" and report.windows == 40
        assert media.match(report.defects, media.BOUNDARY_TRUTH) == []


async def _windows_started(handle: WorkflowHandle, count: int, timeout_s: float = 60) -> int:  # type: ignore[type-arg]
    """Waits until `count` window activities run at once; returns how many were seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        description = await handle.describe()
        started = [
            p for p in description.raw_description.pending_activities
            if p.activity_type.name == "analyze_window" and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        ]
        if len(started) >= count:
            return len(started)
        await asyncio.sleep(0.02)
    raise AssertionError(f"never saw {count} windows in progress at once")


def test_a_worker_killed_with_four_windows_in_flight_loses_nothing(
    temporal_server: TemporalServer, task_queue: str, tmp_path: Path, webhook: Receiver
) -> None:
    clip = _heavy_clip(tmp_path / "heavy.mp4")
    settings = temporal_server.settings(task_queue)

    def request(name: str, parallel: int) -> StreamRequest:
        return StreamRequest(
            stream_id=f"{name}-{uuid.uuid4().hex[:8]}", source=str(clip), window_seconds=5.0, heartbeat_timeout_s=3.0,
            notify_url=webhook.url, parallel=parallel,
        )

    async def scenario() -> tuple[StreamReport, StreamReport, list[int]]:
        client = await connect(settings)
        faulted = await start_stream(client, task_queue, request("killed-4", 4))
        env = temporal_server.env(task_queue, VQA_MAX_CONCURRENT_WINDOWS="4", VQA_DECODE_THREADS="1")
        with _worker_process(temporal_server, task_queue, tmp_path / "first.log", env=env) as first:
            assert await _windows_started(faulted, 4) == 4
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        with _worker_process(temporal_server, task_queue, tmp_path / "second.log", env=env):
            report = await faulted.result()
            clean = await (await start_stream(client, task_queue, request("clean-1", 1))).result()
        attempts = []
        async for event in faulted.fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                attempts.append(event.activity_task_started_event_attributes.attempt)
        return report, clean, attempts

    report, clean, attempts = run_async(scenario())
    _assert_same_as_clean(report, clean, windows=6)
    assert sum(1 for a in attempts if a == 2) == 4, f"the four windows in flight ran again, once each: {attempts}"

    assert _notified(webhook, report.stream_id) == _notified(webhook, clean.stream_id), webhook.ids()
    assert len(_notified(webhook, report.stream_id)) == 4, webhook.ids()
