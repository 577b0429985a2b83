"""S3 goes away while a stream reads its source from S3 and writes its results there.

The S3 server (SeaweedFS) is killed mid-stream and brought back on the same ports with
the same data after OUTAGE_S. Windows that hit the outage fail retryably and are tried
again by Temporal (workflows/stream.py: 6 attempts, 1 s doubling: ~31 s of backoff, and
boto3 tries each request 3 times), so the stream ends as if nothing happened.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from support.seaweedfs import SeaweedFS, start_seaweedfs
from vqa.contracts import StreamReport, StreamRequest, WindowResult
from vqa.runtime import connect
from workflows import StreamMonitorWorkflow

from . import media
from .conftest import TemporalServer, run_async, start_stream, worker_subprocess

pytestmark = pytest.mark.integration

# S3 is down this long, plus the 3-8 s SeaweedFS takes to serve again: inside what the
# window's retries span (README, "What happens when…": about 30 s is always survived).
OUTAGE_S = 10.0
WINDOW_S = 2.0
WINDOWS = 16  # the main clip is 32 s


def _keys(s3: SeaweedFS, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(keys)


def _read(s3: SeaweedFS, bucket: str, key: str) -> Any:
    return json.loads(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def _comparable(window: WindowResult) -> dict[str, Any]:
    """A window's result less its evidence links (of its events and of the runs at its edges), which name the stream."""
    return window.model_copy(
        update={
            "events": [e.model_copy(update={"defect": media.without_evidence([e.defect])[0]}) for e in window.events],
            "edges": [e.model_copy(update={"defect": media.without_evidence([e.defect])[0]}) for e in window.edges],
        }
    ).model_dump()


async def _window_attempts(handle: WorkflowHandle) -> list[tuple[int, str]]:  # type: ignore[type-arg]
    """(attempt, message of the failure before it) of each window activity that finished."""
    scheduled: dict[int, str] = {}
    attempts: list[tuple[int, str]] = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            if scheduled.get(started.scheduled_event_id) == "analyze_window":
                attempts.append((started.attempt, started.last_failure.message))
    return attempts


def test_a_stream_survives_an_s3_outage_and_loses_no_window(
    temporal_server: TemporalServer, task_queue: str, tmp_path: Path, clips: media.ClipFactory
) -> None:
    s3 = start_seaweedfs(tmp_path / "s3")  # this test's own server: it is killed below
    media_bucket, results_bucket = f"media-{uuid.uuid4().hex[:8]}", f"results-{uuid.uuid4().hex[:8]}"
    s3.client().create_bucket(Bucket=media_bucket)
    s3.client().create_bucket(Bucket=results_bucket)
    s3.client().upload_file(str(clips("main")), media_bucket, "in/main.mp4")

    def request(name: str) -> StreamRequest:
        return StreamRequest(
            stream_id=f"{name}-{uuid.uuid4().hex[:8]}", source=f"s3://{media_bucket}/in/main.mp4",
            window_seconds=WINDOW_S, results=f"s3://{results_bucket}/vqa",
        )

    async def start(client: Client, req: StreamRequest) -> WorkflowHandle:  # type: ignore[type-arg]
        return await start_stream(client, task_queue, req)

    async def scenario() -> tuple[StreamReport, StreamReport, int, list[tuple[int, str]]]:
        nonlocal s3
        client = await connect(temporal_server.settings(task_queue))
        clean = await (await start(client, request("clean"))).result()
        faulted = await start(client, request("outage"))
        while (done := (await faulted.query(StreamMonitorWorkflow.status)).windows_done) < 4:
            await asyncio.sleep(0.05)
        s3.kill()
        await asyncio.sleep(OUTAGE_S)
        s3 = await asyncio.to_thread(s3.started_again)
        report = await asyncio.wait_for(faulted.result(), timeout=120)
        return clean, report, done, await _window_attempts(faulted)

    env = temporal_server.env(task_queue, **s3.env(), VQA_MAX_CONCURRENT_WINDOWS="2")
    try:
        with worker_subprocess(env, tmp_path / "worker.log"):
            clean, report, done_before, attempts = run_async(scenario())
        assert done_before < WINDOWS, "S3 went away while the stream ran"

        # The outage hit: windows failed on S3 and were tried again, and no window failed for another reason.
        retried = [(attempt, why) for attempt, why in attempts if attempt > 1]
        assert retried, attempts
        assert all("S3 unavailable" in why for _, why in retried), retried
        assert len(attempts) == WINDOWS, attempts

        # The same analysis as without the outage: every window, the same defects.
        assert clean.status == report.status == "completed", report.error
        assert clean.windows == report.windows == WINDOWS
        assert media.without_evidence(report.defects) == media.without_evidence(clean.defects)
        assert media.match(report.defects, media.MAIN_TRUTH) == []

        # Every window's document is in S3, once per index, and says what the fault-free run's says.
        for stream in (clean, report):
            prefix = f"vqa/{stream.stream_id}/"
            keys = _keys(s3, results_bucket, prefix)
            assert [k for k in keys if "/windows/" in k] == [f"{prefix}windows/{i:06d}.json" for i in range(WINDOWS)]
            assert f"{prefix}report.json" in keys
            for defect in stream.defects:
                if "evidence" in defect.details:
                    assert defect.details["evidence"].removeprefix(f"s3://{results_bucket}/") in keys, defect
        for i in range(WINDOWS):
            ours, theirs = (
                WindowResult.model_validate(_read(s3, results_bucket, f"vqa/{s.stream_id}/windows/{i:06d}.json"))
                for s in (report, clean)
            )
            assert ours.index == i and _comparable(ours) == _comparable(theirs), i
        stored = StreamReport.model_validate(_read(s3, results_bucket, f"vqa/{report.stream_id}/report.json"))
        assert stored == report and report.results_uri == f"s3://{results_bucket}/vqa/{report.stream_id}/report.json"
    finally:
        s3.stop()

