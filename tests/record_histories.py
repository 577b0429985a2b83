"""Regenerate the workflow histories that tests/test_replay.py replays: `python -m tests.record_histories`.

Records, on a throw-away dev server: a plain stream, one that continues-as-new (each of its runs),
one stopped by the stop signal, one with a detector group and search attributes, one whose
worker has no notification target, and a channel of two renditions (and one of its children). With names
(`python -m tests.record_histories groups-search-attributes`) only those are written, so histories
of older workflow versions stay and keep being replayed. Re-record only when a workflow change is meant to be incompatible
(and running workflows have been drained); otherwise the replay test is what catches the change.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from temporalio.client import Client

from cli.worker import build_worker
from support import hls
from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from vqa.devserver import free_port, start_dev_server
from vqa.runtime import Settings, connect
from vqa.synth import ClipSpec, Segment, make_clip
from workflows import StreamMonitorWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
CLIP = ClipSpec(duration_s=6.0, video=[Segment("black", 1.0, 3.5)], audio=[Segment("silence", 2.0, 4.5)])


async def _record(client: Client, task_queue: str, clip: Path) -> None:
    async def start(name: str, **kw):  # type: ignore[no-untyped-def]
        request = StreamRequest(stream_id=f"replay-{name}", source=str(clip), results="none", **kw)
        return await client.start_workflow(
            StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=task_queue,
            result_type=StreamReport,
        )

    group_queue = f"{task_queue}-group"
    async with build_worker(client, task_queue=task_queue, max_concurrent_windows=2), build_worker(
        client, task_queue=group_queue, max_concurrent_windows=1, detectors=["silence", "blur"]
    ):
        plain = await start("plain", window_seconds=2.0)
        split = await start("continue-as-new", window_seconds=2.0, windows_per_run=2)
        stopped = await start("stopped", window_seconds=0.5)
        await stopped.signal(StreamMonitorWorkflow.stop)
        # Detector groups on a second task queue, and search attributes kept up to date.
        groups = await start(
            "groups-search-attributes", window_seconds=2.0, detector_groups={group_queue: ["silence", "blur"]},
            search_attributes=True,
        )
        # Defects, and no notification target anywhere: no notify_defects is scheduled
        # (WindowResult.notify_targets; "plain" was recorded before workers said so).
        quiet = await start("no-notify-target", window_seconds=2.0)
        # A channel: a master playlist of two renditions, each a child workflow.
        request = StreamRequest(stream_id="replay-channel", source=str(_ladder(clip)), results="none", window_seconds=2.0)
        channel = await client.start_workflow(
            StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=task_queue,
            result_type=StreamReport,
        )
        await asyncio.gather(plain.result(), split.result(), stopped.result(), groups.result(), quiet.result(),
                             channel.result())
        histories = {
            "plain": await plain.fetch_history(),
            "no-notify-target": await quiet.fetch_history(),
            "stopped": await stopped.fetch_history(),
            "groups-search-attributes": await groups.fetch_history(),
            "channel": await channel.fetch_history(),
            "channel-rendition": await client.get_workflow_handle(workflow_id_for("replay-channel.360p")).fetch_history(),
        }
        run_id = split.first_execution_run_id
        run = 1
        while run_id:
            history = await client.get_workflow_handle(split.id, run_id=run_id).fetch_history()
            histories[f"continue-as-new-run{run}"] = history
            last = history.events[-1]
            run_id = (
                last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                if last.HasField("workflow_execution_continued_as_new_event_attributes")
                else None
            )
            run += 1
    HISTORIES.mkdir(exist_ok=True)
    wanted = set(sys.argv[1:])  # names to (re)record; none: all of them
    for name, history in histories.items():
        if wanted and name not in wanted:
            continue
        (HISTORIES / f"{name}.json").write_text(history.to_json())
        print(f"{name}: {len(history.events)} events")


def _ladder(clip: Path) -> Path:
    """A master playlist beside `clip` listing two renditions (both cut from it)."""
    directory = clip.parent / "ladder"
    for name in ("a", "b"):
        hls.segment(clip, directory / name, segment_s=2.0)
    (directory / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\na/vod.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=320x180\nb/vod.m3u8\n"
    )
    return directory / "master.m3u8"


def main() -> None:
    for name in ("VQA_NOTIFY_URL", "VQA_SNS_TOPIC_ARN"):  # the workers here run in this process
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "replay.mp4"
        make_clip(clip, CLIP)
        port = free_port()
        server = start_dev_server(port=port, ui_port=None, db_path=None, log_path=Path(tmp) / "server.log")
        try:
            settings = Settings(address=f"127.0.0.1:{port}", namespace="default", task_queue="replay",
                                max_concurrent_windows=2, home=Path(tmp), ui_url=None)
            asyncio.run(_record_with(settings, clip))
        finally:
            server.terminate()
            server.wait(timeout=15)


async def _record_with(settings: Settings, clip: Path) -> None:
    await _record(await connect(settings), settings.task_queue, clip)


if __name__ == "__main__":
    main()
