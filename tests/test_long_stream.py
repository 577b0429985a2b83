"""A two-hour stream analysed across continue-as-new: one analysis, however many runs.

The clip is tiny (128x72 at 2 fps, 8 kHz mono FLAC: ~12 s to encode two hours), so the
test is about the orchestration: 120 windows of 60 s, 20 per run, 6 runs, with defects
that straddle every run boundary. A run of 20 windows is about 130 events; the same
stream in one run (about 750 events, well under 1 MB) stays below the history count and
size (4 MB) at which Temporal suggests continuing-as-new, so it really is one run.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle

from vqa.contracts import StreamReport, StreamRequest, StreamStatus
from vqa.synth import ClipSpec, Segment, make_clip
from workflows import StreamMonitorWorkflow

from . import media
from .conftest import TemporalServer, run_async, run_starter, running_worker, start_stream

pytestmark = pytest.mark.integration

WINDOW_S = 60.0
WINDOWS_PER_RUN = 20  # a run boundary every 1200 s
WINDOWS = 120
RUNS = 6
LONG = ClipSpec(
    duration_s=WINDOWS * WINDOW_S,
    fps=2,
    width=128,
    height=72,
    sample_rate=8000,
    channels=1,
    audio_codec="flac",
    keyframe_interval_s=10.0,
    video=[
        Segment("black", 1190.0, 1215.0),  # across the first run boundary (1200 s)
        Segment("freeze", 2385.0, 2410.0),  # across the second (2400 s)
        Segment("black", 4770.0, 4830.0),  # three windows, across the fourth (4800 s)
        Segment("black", 7185.0, 7200.0),  # still open when the stream ends
    ],
    audio=[
        Segment("silence", 3590.0, 3620.0),  # across the third (3600 s)
        Segment("silence", 5990.0, 6010.0),  # across the fifth (6000 s)
    ],
)
TRUTH = [
    media.Expected("black", 1190.0, 1215.0),
    media.Expected("freeze", 2385.0, 2410.0),
    media.Expected("silence", 3590.0, 3620.0),
    media.Expected("black", 4770.0, 4830.0),
    media.Expected("silence", 5990.0, 6010.0),
    media.Expected("black", 7185.0, 7200.0),
]
# The detectors of the injected defects, and two that must find nothing. (Blur and blockiness
# find a few false positives in a 128x72 synthetic pattern; loudness would double the test's
# time. Every detector's state across continue-as-new: tests/test_workflow.py.)
DETECTORS = ["black", "freeze", "silence", "decode_error", "signal_loss"]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("long") / "two-hours.mp4", LONG)


async def _runs(client: Client, workflow_id: str) -> list[int]:
    """Events in each run of the workflow, first run first, following continue-as-new."""
    sizes: list[int] = []
    run_id: str | None = (await client.get_workflow_handle(workflow_id).describe()).raw_description.workflow_execution_info.first_run_id
    while run_id:
        events = [e async for e in client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history_events()]
        sizes.append(len(events))
        last = events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )
    return sizes


def test_a_two_hour_stream_across_continue_as_new_is_one_analysis(
    temporal_server: TemporalServer, task_queue: str, long_clip: Path
) -> None:
    def request(name: str, windows_per_run: int) -> StreamRequest:
        return StreamRequest(
            stream_id=f"{name}-{uuid.uuid4().hex[:8]}", source=str(long_clip), window_seconds=WINDOW_S,
            windows_per_run=windows_per_run, detectors=DETECTORS, results="none",
        )

    async def start(client: Client, req: StreamRequest) -> WorkflowHandle:  # type: ignore[type-arg]
        return await start_stream(client, task_queue, req)

    async def scenario() -> tuple[list[StreamReport], list[StreamStatus], list[list[int]]]:
        async with running_worker(temporal_server, task_queue) as client:
            handles = [
                await start(client, request("split", WINDOWS_PER_RUN)),
                await start(client, request("whole", 1_000_000)),
            ]
            reports = list(await asyncio.gather(*(h.result() for h in handles)))
            statuses = [await h.query(StreamMonitorWorkflow.status) for h in handles]  # the latest run's
            runs = [await _runs(client, h.id) for h in handles]
            return reports, statuses, runs

    (split, whole), (split_status, whole_status), (split_runs, whole_runs) = run_async(scenario())

    # The orchestration: 6 runs of at most 20 windows; the comparison stream in one run.
    assert len(split_runs) == RUNS and split_status.runs == RUNS, split_runs
    assert len(whole_runs) == 1 and whole_status.runs == 1, whole_runs
    assert split.runs == RUNS and whole.runs == 1, "the report says how many runs it took"
    assert max(split_runs) < whole_runs[0] / 4, (split_runs, whole_runs)

    # One analysis: every window, the same defects as in one run, each defect once, as injected.
    for report in (split, whole):
        assert report.status == "completed" and report.windows == WINDOWS
        assert report.media is not None and report.media.duration_s == pytest.approx(7200.0, abs=0.1)
    assert media.without_evidence(split.defects) == media.without_evidence(whole.defects)
    assert media.match(split.defects, TRUTH, tolerance_s=0.5) == []  # 2 fps: half a second a frame
    assert split_status.windows_done == WINDOWS and split_status.position_s == pytest.approx(7200.0)

    # What an operator sees of the finished stream.
    status = run_starter(temporal_server, task_queue, "status", split.stream_id, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["runs"] == RUNS
