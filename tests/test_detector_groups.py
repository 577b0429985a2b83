"""Detector groups on their own task queues: one activity per group per window, on other workers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from temporalio.client import Client

from cli.worker import build_worker
from vqa.contracts import StreamReport, StreamRequest, WindowResult, workflow_id_for
from vqa.runtime import connect
from workflows import StreamMonitorWorkflow

from . import media
from .conftest import REPO, TemporalServer, run_async, run_starter, running_worker, worker_subprocess

pytestmark = pytest.mark.integration

HEAVY = ["silence", "blockiness", "blur", "loudness", "clipping"]


def _sid(name: str) -> str:
    return f"{name}-{os.urandom(4).hex()}"


async def _run(client: Client, queue: str, request: StreamRequest) -> StreamReport:
    return await client.execute_workflow(
        StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=queue,
        result_type=StreamReport,
    )


def test_two_groups_on_two_workers_give_the_one_worker_report(
    temporal_server: TemporalServer, task_queue: str, clips, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    path = clips("main")
    heavy_queue = f"{task_queue}-heavy"
    results = tmp_path / "results"

    async def scenario() -> tuple[StreamReport, StreamReport, Client]:
        async with running_worker(temporal_server, task_queue) as client:
            one = await _run(client, task_queue, StreamRequest(
                stream_id=_sid("one"), source=str(path), window_seconds=4.0, results=str(results)))
            group_client = await connect(temporal_server.settings(heavy_queue))
            async with build_worker(group_client, task_queue=heavy_queue, max_concurrent_windows=1, detectors=HEAVY):
                split = await _run(client, task_queue, StreamRequest(
                    stream_id=_sid("split"), source=str(path), window_seconds=4.0, results=str(results),
                    detector_groups={heavy_queue: HEAVY}))
            history = await client.get_workflow_handle(workflow_id_for(split.stream_id)).fetch_history()
            return one, split, history  # type: ignore[return-value]

    one, split, history = run_async(scenario())
    assert split.status == "completed" and split.windows == one.windows == 8
    assert media.without_evidence(split.defects) == media.without_evidence(one.defects)
    assert media.match(split.defects, media.MAIN_TRUTH) == []

    # Two activities per window, each on its group's queue, each writing its own document.
    scheduled = [e.activity_task_scheduled_event_attributes for e in history.events
                 if e.HasField("activity_task_scheduled_event_attributes")
                 and e.activity_task_scheduled_event_attributes.activity_type.name == "analyze_window"]
    queues = sorted(a.task_queue.name for a in scheduled)
    assert queues == sorted([task_queue] * 8 + [heavy_queue] * 8)
    windows = results / split.stream_id / "windows"
    assert sorted(p.name for p in windows.iterdir()) == sorted(
        [f"{i:06d}.json" for i in range(8)] + [f"{i:06d}-{heavy_queue}.json" for i in range(8)])
    heavy = WindowResult.model_validate_json((windows / f"000005-{heavy_queue}.json").read_text())
    own = WindowResult.model_validate_json((windows / "000005.json").read_text())
    assert set(heavy.detectors) == set(HEAVY)
    assert not set(own.detectors) & set(HEAVY) and "black" in own.detectors
    # The silence at 21-24 s was found by the heavy group only (an event, or a run at an edge of the window).
    assert {e.defect.kind for e in heavy.events} | {e.defect.kind for e in heavy.edges} == {"silence"}
    assert not [e for e in own.events + own.edges if e.defect.kind == "silence"]


def test_users_run_a_group_worker_and_route_a_group_from_the_starter(
    temporal_server: TemporalServer, task_queue: str, clips, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """`worker.py --detectors ... --task-queue Q` and `starter.py SOURCE --group Q=...`, as README shows."""
    path = clips("main")
    heavy_queue = f"{task_queue}-heavy"
    env = temporal_server.env(task_queue)
    with worker_subprocess(env, tmp_path / "main.log"), worker_subprocess(
        temporal_server.env(task_queue), tmp_path / "heavy.log", args=["--detectors", ",".join(HEAVY), "--task-queue", heavy_queue]
    ):
        done = run_starter(temporal_server, task_queue, str(path), "--wait", "--json", "--window-seconds", "8",
                           "--stream-id", _sid("cli"), "--group", f"{heavy_queue}={','.join(HEAVY)}")
    assert done.returncode == 0, done.stderr
    report = StreamReport.model_validate_json(done.stdout)
    assert media.match(report.defects, media.MAIN_TRUTH) == []
    log = (tmp_path / "heavy.log").read_text()
    assert "serving only the detector group" in log


def test_a_group_worker_refuses_detectors_outside_its_group(
    temporal_server: TemporalServer, task_queue: str, clips  # type: ignore[no-untyped-def]
) -> None:
    path = clips("clean")
    heavy_queue = f"{task_queue}-heavy"

    async def scenario() -> StreamReport:
        async with running_worker(temporal_server, task_queue) as client:
            group_client = await connect(temporal_server.settings(heavy_queue))
            async with build_worker(group_client, task_queue=heavy_queue, max_concurrent_windows=1, detectors=["blur"]):
                from temporalio.client import WorkflowFailureError

                try:
                    await _run(client, task_queue, StreamRequest(
                        stream_id=_sid("misrouted"), source=str(path), window_seconds=6.0,
                        detector_groups={heavy_queue: ["blur", "blockiness"]}))
                except WorkflowFailureError as exc:
                    return StreamReport.model_validate(exc.cause.details[0])  # type: ignore[union-attr]
            raise AssertionError("a misrouted window must fail the stream")

    report = run_async(scenario())
    assert report.status == "failed"
    assert "serves only the detectors blur" in (report.error or "") and "blockiness" in (report.error or "")


@pytest.mark.parametrize(
    "group, message",
    [
        ("heavy", "expected TASK_QUEUE=detector"),
        ("heavy=nosuch", "unknown detector"),
        ("a=blur --group b=blur", "more than one group"),
    ],
)
def test_bad_groups_are_refused_before_anything_starts(temporal_server: TemporalServer, task_queue: str, group: str, message: str) -> None:
    args = ["missing.mp4", "--wait"]
    for item in group.split(" --group "):
        args += ["--group", item]
    done = run_starter(temporal_server, task_queue, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_group_worker_option_is_validated() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(REPO / "worker.py"), "--detectors", "blur,nosuch"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown detector(s): nosuch" in done.stderr


def test_a_merged_window_has_every_groups_measures_and_states() -> None:
    """The merged window result carries every group's measures (what the report's timeline plots)."""
    from vqa.stitch import merge_group_results

    a = WindowResult(index=3, start_s=30, end_s=40)
    a.metrics.measures.update({"luma_mean": 80.0})
    a.states["black"] = {"x": 1}
    b = WindowResult(index=3, start_s=30, end_s=40)
    b.metrics.measures.update({"blockiness_max": 0.2})
    b.states["blur"] = {"y": 2}
    merged = merge_group_results([a, b])
    assert merged.metrics.measures == {"luma_mean": 80.0, "blockiness_max": 0.2}
    assert set(merged.states) == {"black", "blur"}
    assert len(json.dumps(merged.model_dump())) < 4096
