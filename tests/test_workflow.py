"""The stream workflow on a real Temporal dev server with a real worker."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError

from bench.counting import HistoryCount, count_history
from starter import start_or_attach
from vqa.contracts import StreamReport, StreamRequest, StreamStatus, workflow_id_for
from vqa.devserver import free_port, start_dev_server, stop_process
from workflows import StreamMonitorWorkflow

from . import media
from .conftest import TemporalServer, run_async, running_worker, start_stream

pytestmark = pytest.mark.integration


def _request(name: str, path: Path, **kw) -> StreamRequest:  # type: ignore[no-untyped-def]
    return StreamRequest(stream_id=f"{name}-{os.urandom(4).hex()}", source=str(path), **kw)


def test_report_matches_the_injected_truth(temporal_server: TemporalServer, task_queue: str, clips) -> None:  # type: ignore[no-untyped-def]
    path = clips("main")

    async def scenario() -> StreamReport:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, _request("main", path, window_seconds=4.0))
            return await handle.result()

    report = run_async(scenario())
    assert report.status == "completed" and report.error is None
    assert report.windows == 8 and report.window_seconds == 4.0
    assert report.media is not None and report.media.duration_s == pytest.approx(32.0, abs=0.05)
    assert media.match(report.defects, media.MAIN_TRUTH) == []
    assert [d.start_s for d in report.defects] == sorted(d.start_s for d in report.defects)


def test_continue_as_new_gives_the_same_report(temporal_server: TemporalServer, task_queue: str, clips) -> None:  # type: ignore[no-untyped-def]
    path = clips("main")

    async def scenario() -> tuple[StreamReport, StreamReport, StreamStatus, int]:
        async with running_worker(temporal_server, task_queue) as client:
            whole = await start_stream(client, task_queue, _request("whole", path, window_seconds=3.0))
            split = await start_stream(client, task_queue, _request("split", path, window_seconds=3.0, windows_per_run=2))
            a, b = await asyncio.gather(whole.result(), split.result())
            status = await split.query(StreamMonitorWorkflow.status)
            runs = 0
            async for _ in client.list_workflows(f"WorkflowId = '{split.id}'"):
                runs += 1
            return a, b, status, runs

    whole, split, status, runs = run_async(scenario())
    assert whole.windows == split.windows == 11
    assert status.runs == 6 and runs == 6, "11 windows, 2 per run: the stream continued-as-new 5 times"
    assert media.without_evidence(split.defects) == media.without_evidence(whole.defects)
    assert media.match(split.defects, media.MAIN_TRUTH) == []


@pytest.fixture
def server_suggesting_continue_as_new(tmp_path: Path) -> Iterator[TemporalServer]:
    """A dev server of its own that suggests continue-as-new once a run's history holds 30 events
    (its default is 4096: a stream of thousands of windows)."""
    port = free_port()
    proc = start_dev_server(
        port=port, ui_port=None, db_path=None, log_path=tmp_path / "server.log",
        dynamic_config={"limit.historyCount.suggestContinueAsNew": 30},
    )
    try:
        yield TemporalServer(address=f"127.0.0.1:{port}", ui_port=port + 1000, process=proc)
    finally:
        stop_process(proc)


def test_continue_as_new_when_the_server_suggests_it(
    temporal_server: TemporalServer, server_suggesting_continue_as_new: TemporalServer, task_queue: str, clips  # type: ignore[no-untyped-def]
) -> None:
    """With windows_per_run at its default (far more than the stream's 11 windows), the stream still
    continues-as-new when its history grows past the server's suggestion, and reports the same defects."""
    path = clips("main")

    async def analyse(server: TemporalServer, name: str) -> StreamReport:
        async with running_worker(server, task_queue) as client:
            return await (await start_stream(client, task_queue, _request(name, path, window_seconds=3.0))).result()

    whole = run_async(analyse(temporal_server, "whole"))
    suggested = run_async(analyse(server_suggesting_continue_as_new, "suggested"))
    assert StreamRequest(stream_id="x", source="y").windows_per_run > suggested.windows == whole.windows == 11
    assert whole.runs == 1 and suggested.runs > 1, (whole.runs, suggested.runs)
    assert media.without_evidence(suggested.defects) == media.without_evidence(whole.defects)
    assert media.match(suggested.defects, media.MAIN_TRUTH) == []


def test_same_stream_twice_is_one_analysis(temporal_server: TemporalServer, task_queue: str, clips) -> None:  # type: ignore[no-untyped-def]
    path = clips("clean")
    settings = temporal_server.settings(task_queue)
    request = _request("twice", path, window_seconds=4.0)

    async def scenario() -> tuple[set[str], list[bool], StreamReport, int, int]:
        async with running_worker(temporal_server, task_queue) as client:
            first = await asyncio.gather(*(start_or_attach(client, settings, request) for _ in range(3)))
            report = await first[0][0].result()
            again, _, started_again = await start_or_attach(client, settings, request)
            await again.result()
            runs = 0
            async for _ in client.list_workflows(f"WorkflowId = '{workflow_id_for(request.stream_id)}'"):
                runs += 1
            windows_activities = 0
            async for event in first[0][0].fetch_history_events():
                if event.HasField("activity_task_scheduled_event_attributes"):
                    if event.activity_task_scheduled_event_attributes.activity_type.name == "analyze_window":
                        windows_activities += 1
            run_ids = {h.result_run_id or h.run_id or "" for h, _, _ in first}
            return run_ids, [s for _, _, s in first] + [started_again], report, runs, windows_activities

    run_ids, started, report, runs, window_activities = run_async(scenario())
    assert len(run_ids) == 1, "concurrent starts attach to one workflow run"
    assert started[-1] is False, "a finished stream is attached to, not analysed again"
    assert runs == 1
    assert window_activities == report.windows == 3, "one activity per window, never per second or detector"


def test_status_query_then_stop_signal(temporal_server: TemporalServer, task_queue: str, clips) -> None:  # type: ignore[no-untyped-def]
    path = clips("main")

    async def scenario() -> tuple[list[StreamStatus], StreamReport]:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, _request("stop", path, window_seconds=0.5))
            seen: list[StreamStatus] = []
            while True:
                status = await handle.query(StreamMonitorWorkflow.status)
                seen.append(status)
                if status.position_s >= 5.5:
                    break
                await asyncio.sleep(0.05)
            await handle.signal(StreamMonitorWorkflow.stop)
            return seen, await handle.result()

    seen, report = run_async(scenario())
    last = seen[-1]
    assert last.state == "running" and last.duration_s == pytest.approx(32.0, abs=0.05)
    assert last.windows_total == 64 and last.windows_done >= 10
    assert any(d.kind == "black" and d.start_s == pytest.approx(3.0, abs=0.2) for d in last.defects + last.open_defects)
    assert report.status == "stopped"
    assert last.windows_done <= report.windows < 64
    # Nothing past where the analysis stopped: the last window's end, on the keyframe at or after
    # its nominal end (one a second in this clip).
    stopped_at = report.analysed_s
    assert stopped_at is not None and report.windows * 0.5 <= stopped_at <= report.windows * 0.5 + 1.0
    assert all(d.end_s <= stopped_at + 1e-6 for d in report.defects)
    # An event still open when the stream stops ends where the analysis stopped.
    assert media.match(report.defects, [media.Expected("black", 3.0, min(6.0, stopped_at))]) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "source not found"),
        (b"", "empty file"),
        # Fixed bytes: some random draws happen to probe as a container with no tracks
        # ("no audio or video track"), a different clear message.
        (random.Random(0).randbytes(64 * 1024), "not a readable media file"),
    ],
    ids=["missing", "empty", "random-bytes"],
)
def test_bad_input_fails_clearly_and_the_worker_survives(
    temporal_server: TemporalServer, task_queue: str, clips, tmp_path: Path, content: bytes | None, message: str  # type: ignore[no-untyped-def]
) -> None:
    bad = tmp_path / "bad.mp4"
    if content is not None:
        bad.write_bytes(content)
    good = clips("clean")

    async def scenario() -> tuple[WorkflowFailureError, HistoryCount, StreamReport]:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, _request("bad", bad))
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
            history = await count_history(client, handle.id, handle.first_execution_run_id or "")
            after = await start_stream(client, task_queue, _request("after", good, window_seconds=6.0))
            return failure.value, history, await after.result()

    failure, history, after = run_async(scenario())
    assert message in str(failure.cause)
    assert [(a.activity_type, a.attempt) for a in history.activities if a.activity_type != "write_report"] == [
        ("probe_source", 1)
    ], "bad input is final: the probe is not retried, and no window is scheduled"
    assert after.status == "completed" and after.windows == 2


def test_payloads_stay_small(temporal_server: TemporalServer, task_queue: str, clips) -> None:  # type: ignore[no-untyped-def]
    path = clips("main")

    async def scenario() -> int:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, _request("payload", path, window_seconds=10.0))
            await handle.result()
            biggest = 0
            async for event in handle.fetch_history_events():
                biggest = max(biggest, event.ByteSize())
            return biggest

    assert run_async(scenario()) < 32 * 1024


def test_window_activities_heartbeat_with_a_timeout(temporal_server: TemporalServer, task_queue: str, clips) -> None:  # type: ignore[no-untyped-def]
    path = clips("clean")

    async def scenario() -> list[float]:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, _request("hb", path, window_seconds=6.0, heartbeat_timeout_s=12))
            await handle.result()
            timeouts = []
            async for event in handle.fetch_history_events():
                if event.HasField("activity_task_scheduled_event_attributes"):
                    attrs = event.activity_task_scheduled_event_attributes
                    if attrs.activity_type.name == "analyze_window":
                        timeouts.append(attrs.heartbeat_timeout.ToTimedelta().total_seconds())
            return timeouts

    assert run_async(scenario()) == [12.0, 12.0]


@pytest.mark.parametrize(("name", "kind"), [("audio_only", "silence"), ("video_only", "black")])
def test_single_track_streams_are_analysed(temporal_server: TemporalServer, task_queue: str, clips, name: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    path = clips(name)

    async def scenario() -> StreamReport:
        async with running_worker(temporal_server, task_queue) as client:
            return await (await start_stream(client, task_queue, _request(name, path, window_seconds=3.0))).result()

    report = run_async(scenario())
    assert report.status == "completed" and report.media is not None
    assert (report.media.video is None) == (name == "audio_only")
    assert (report.media.audio is None) == (name == "video_only")
    assert [d.kind for d in report.defects] == [kind]


def test_a_source_that_is_briefly_unavailable_is_retried(temporal_server: TemporalServer, task_queue: str, clips) -> None:  # type: ignore[no-untyped-def]
    """HTTP 503 is transient: the activity is retried with backoff and the stream completes."""
    import http.server
    import threading

    body = clips("clean").read_bytes()
    failures = {"left": 3}

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if failures["left"] > 0:
                failures["left"] -= 1
                self.send_error(503, "busy")
                return
            start, end = 0, len(body) - 1
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start, end = int(a or 0), int(b) if b else len(body) - 1
            self.send_response(206 if rng else 200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            self.end_headers()
            self.wfile.write(body[start : end + 1])

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/clean.mp4"
    try:
        async def scenario() -> StreamReport:
            async with running_worker(temporal_server, task_queue) as client:
                return await (await start_stream(client, task_queue, _request("flaky", url, window_seconds=6.0))).result()

        report = run_async(scenario())
    finally:
        server.shutdown()
    assert failures["left"] == 0
    assert report.status == "completed" and report.windows == 2 and report.defects == []
