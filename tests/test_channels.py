"""Channels: an HLS master playlist's every rendition monitored by its own child workflow.

The ladders are made by FFmpeg's HLS muxer (`-var_stream_map`) from real footage (bikes.mp4)
and a real voice (lena.wav) in two languages, served over HTTP on 127.0.0.1, with defects
injected in the source (every rendition), in one video rendition, and in one language.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from cli.worker import build_worker
from support import hls
from support.hls import LivePlaylist
from support.ladder import live_ladder, make_ladder
from vqa.contracts import StreamReport, StreamRequest, StreamStatus, workflow_id_for
from vqa.devserver import free_port, start_dev_server, stop_process
from vqa.runtime import connect
from workflows import StreamMonitorWorkflow
from workflows.channel import child_stream_id

from .ladders import ALL, SPEC, TOLERANCE_S, VIDEOS
from .ladders import only as _only
from . import cdp, realmedia
from .conftest import TemporalServer, run_async, run_starter, running_worker, start_stream, worker_subprocess



@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ladder")
    make_ladder(realmedia.fetch("bikes.mp4"), realmedia.fetch("lena.wav"), directory, SPEC)
    return directory


def _analyse(server: TemporalServer, task_queue: str, directory: Path, **fields: object) -> tuple[StreamReport, Client | None]:
    origin = hls.StaticServer(directory)
    try:
        async def scenario() -> StreamReport:
            async with running_worker(server, task_queue) as client:
                request = StreamRequest(
                    stream_id=f"channel-{os.urandom(3).hex()}", source=f"{origin.url}/master.m3u8",
                    window_seconds=5.0, **fields,  # type: ignore[arg-type]
                )
                return await (await start_stream(client, task_queue, request)).result()

        return run_async(scenario()), None
    finally:
        origin.close()


def test_every_rendition_is_a_child_and_defects_merge_by_scope(
    temporal_server: TemporalServer, task_queue: str, ladder: Path
) -> None:
    report, _ = _analyse(temporal_server, task_queue, ladder)
    assert report.status == "completed", report.error
    assert [r.name for r in report.renditions] == ALL
    by_name = {r.name: r for r in report.renditions}
    assert by_name["272p"].height == 272 and by_name["audio-es"].language == "es" and by_name["audio-es"].type == "audio"
    for r in report.renditions:
        assert r.report is not None and r.report.status == "completed", (r.name, r.error)
        assert r.report.stream_id == child_stream_id(report.stream_id, r.name)
        assert r.report.analysed_s == pytest.approx(20.0, abs=0.5)
    # Each rendition's own report keeps its own defects: black in the source in every video
    # rendition, the 136p black in 136p alone, the Spanish silence in audio-es alone.
    for name in VIDEOS:
        blacks = _only(by_name[name].report.defects, "black")  # type: ignore[union-attr]
        assert len(blacks) == (2 if name == "136p" else 1), (name, blacks)
    assert len(_only(by_name["audio-es"].report.defects, "silence")) == 1  # type: ignore[union-attr]
    assert _only(by_name["audio-en"].report.defects, "silence") == []  # type: ignore[union-attr]

    # The channel's defects: the source's black once, scope source; the rendition's black once.
    blacks = _only(report.defects, "black")
    assert len(blacks) == 2, blacks
    source, one = blacks
    assert source.details["scope"] == "source" and source.details["renditions"] == sorted(VIDEOS)
    assert source.start_s == pytest.approx(4.0, abs=TOLERANCE_S) and source.end_s == pytest.approx(7.0, abs=TOLERANCE_S)
    assert one.details["scope"] == "rendition" and one.details["renditions"] == ["136p"]
    assert one.start_s == pytest.approx(12.0, abs=TOLERANCE_S) and one.end_s == pytest.approx(15.0, abs=TOLERANCE_S)
    silences = _only(report.defects, "silence")
    assert len(silences) == 1, silences
    assert silences[0].details["renditions"] == ["audio-es"] and silences[0].details["scope"] == "rendition"
    assert silences[0].details["language"] == "es" and silences[0].track == "audio"
    assert silences[0].start_s == pytest.approx(9.0, abs=TOLERANCE_S) and silences[0].end_s == pytest.approx(12.0, abs=TOLERANCE_S)
    assert _only(report.defects, "manifest_error") == []


def test_renditions_limits_what_is_decoded_and_manifest_checks_cover_all(
    temporal_server: TemporalServer, task_queue: str, ladder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "ladder"
    shutil.copytree(ladder, broken)
    (broken / "204p" / "index.m3u8").unlink()  # listed in the master, gone from the origin
    report, _ = _analyse(temporal_server, task_queue, broken, renditions=["lowest", "highest"])
    assert report.status == "completed", report.error
    decoded = sorted(r.name for r in report.renditions if r.report is not None)
    assert decoded == ["272p", "96p"]
    missing = _only(report.defects, "manifest_error")
    assert [(d.track, d.details["check"], d.details["renditions"]) for d in missing] == [
        ("manifest", "rendition_missing", ["204p"])
    ]
    assert next(r for r in report.renditions if r.name == "204p").error
    # Both decoded renditions show the source's black: one defect, seen on all that were decoded.
    blacks = _only(report.defects, "black")
    assert [(d.details["scope"], d.details["renditions"]) for d in blacks] == [("source", ["272p", "96p"])]


def test_a_rendition_that_fails_is_named_and_the_others_go_on(
    temporal_server: TemporalServer, task_queue: str, ladder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "ladder"
    shutil.copytree(ladder, broken)
    for segment in sorted((broken / "204p").glob("seg*.ts"))[6:]:
        segment.unlink()  # its segments from 12 s on answer 404
    report, _ = _analyse(temporal_server, task_queue, broken, renditions=["272p", "204p", "audio-en"])
    assert report.status == "completed", report.error
    by_name = {r.name: r for r in report.renditions}
    failed = by_name["204p"]
    assert failed.error is not None and "404" in failed.error
    assert failed.report is not None and failed.report.status == "failed"
    assert by_name["272p"].report is not None and by_name["272p"].report.status == "completed"
    assert by_name["audio-en"].report is not None and by_name["audio-en"].report.status == "completed"
    # 204p saw the source's black before it failed: the black is everywhere decoded.
    blacks = _only(report.defects, "black")
    assert [(d.details["scope"], d.details["renditions"]) for d in blacks] == [("source", ["204p", "272p"])]


def test_a_bad_rendition_name_is_refused_with_the_ladder_named(
    temporal_server: TemporalServer, task_queue: str, ladder: Path
) -> None:
    from temporalio.client import WorkflowFailureError

    with pytest.raises(WorkflowFailureError) as failure:
        _analyse(temporal_server, task_queue, ladder, renditions=["1080p"])
    message = str(failure.value.cause)
    assert "1080p" in message and "272p" in message


def test_a_media_playlist_is_still_one_stream(temporal_server: TemporalServer, task_queue: str, ladder: Path) -> None:
    origin = hls.StaticServer(ladder)
    try:
        async def scenario() -> StreamReport:
            async with running_worker(temporal_server, task_queue) as client:
                request = StreamRequest(stream_id=f"one-{os.urandom(3).hex()}", source=f"{origin.url}/136p/index.m3u8",
                                        window_seconds=5.0)
                return await (await start_stream(client, task_queue, request)).result()

        report = run_async(scenario())
    finally:
        origin.close()
    assert report.renditions == [] and report.status == "completed"
    assert len(_only(report.defects, "black")) == 2
    assert workflow_id_for(report.stream_id).startswith("vqa-stream-")


def _follow_live(
    server: TemporalServer, task_queue: str, ladder: Path, *, hold: dict[str, int] | None = None, end: bool = True,
    act: Callable[[float, StreamStatus, list[LivePlaylist]], bool] | None = None, window_s: float = 4.0,
) -> tuple[StreamReport, list[tuple[float, StreamStatus]]]:
    """A live ladder published in real time and followed as a channel; `act(elapsed, status, publishers)`
    is called on every status (about every 0.25 s); True: stop the channel."""
    master, publishers = live_ladder(ladder, hold=hold, end=end)
    origin = hls.StaticServer(ladder)

    async def scenario() -> tuple[StreamReport, list[tuple[float, StreamStatus]]]:
        client = await connect(server.settings(task_queue))
        # a live window waits for its media inside its activity: one slot per rendition, one for the watch
        async with build_worker(client, task_queue=task_queue, max_concurrent_windows=8):
            request = StreamRequest(stream_id=f"live-{os.urandom(3).hex()}", source=f"{origin.url}/{master}",
                                    window_seconds=window_s)
            handle = await start_stream(client, task_queue, request)
            for publisher in publishers:
                publisher.start()
            began, seen, stopped = time.monotonic(), [], False
            result = asyncio.ensure_future(handle.result())
            while not result.done():
                try:
                    status = await handle.query(StreamMonitorWorkflow.status)
                except Exception:  # noqa: BLE001 - the query may race the workflow's start
                    status = None
                if status is not None:
                    seen.append((time.monotonic() - began, status))
                    if act is not None and not stopped and act(seen[-1][0], status, publishers):
                        await handle.signal(StreamMonitorWorkflow.stop)
                        stopped = True
                await asyncio.sleep(0.25)
            return await result, seen

    try:
        return asyncio.run(scenario())
    finally:
        for publisher in publishers:
            publisher.stop()
        origin.close()


def test_a_live_ladder_is_followed_in_real_time_on_every_rendition(
    temporal_server: TemporalServer, task_queue: str, ladder: Path, tmp_path: Path
) -> None:
    live = tmp_path / "ladder"
    shutil.copytree(ladder, live)
    window_s = 4.0
    report, seen = _follow_live(temporal_server, task_queue, live, window_s=window_s)
    assert report.status == "completed", report.error
    assert all(r.report is not None and r.report.status == "completed" for r in report.renditions), report.renditions
    for r in report.renditions:
        assert r.report is not None and r.report.media is not None and r.report.media.live, r.name
        # every rendition's windows were done within one window of its live edge
        assert r.report.max_lag_s is not None and r.report.max_lag_s <= window_s + 1.0, (r.name, r.report.max_lag_s)
        assert r.report.live_edge_s == pytest.approx(20.0, abs=0.1)
        assert r.report.analysed_s is not None and r.report.analysed_s >= 19.5, "followed to the playlist's end"
    blacks = _only(report.defects, "black")
    assert [(d.details["scope"], d.details["renditions"]) for d in blacks] == [
        ("source", sorted(VIDEOS)), ("rendition", ["136p"])
    ]
    assert _only(report.defects, "manifest_error") == [], "a healthy live ladder has healthy manifests"
    # While live, the channel's status listed every rendition running, their positions moving on.
    running = [s for _, s in seen if s.state == "running" and s.renditions]
    assert running and all(len(s.renditions) == len(ALL) for s in running)
    assert any(all(r.state == "running" and r.position_s > 0 for r in s.renditions) for s in running)
    black_seen = next((t for t, s in seen if any(d.kind == "black" for d in s.open_defects + s.defects)), None)
    assert black_seen is not None and black_seen < 20.0, "the source's black showed while the ladder was live"


def test_a_stale_rendition_playlist_is_a_manifest_error_and_stop_stops_every_rendition(
    temporal_server: TemporalServer, task_queue: str, ladder: Path, tmp_path: Path
) -> None:
    live = tmp_path / "ladder"
    shutil.copytree(ladder, live)
    held_since: list[float] = []

    def act(elapsed: float, status: StreamStatus, publishers: list[LivePlaylist]) -> bool:
        stale = [d for d in status.open_defects if d.details.get("check") == "stale_playlist"]
        if stale and not held_since:
            held_since.append(elapsed)
            next(p for p in publishers if p.path.parent.name == "96p").resume()
        return bool(held_since) and elapsed > held_since[0] + 6.0

    report, seen = _follow_live(temporal_server, task_queue, live, hold={"96p": 3}, end=False, act=act)
    assert held_since, "the held playlist never showed as stale while live"
    assert report.status == "stopped"
    assert {r.name: r.report.status for r in report.renditions if r.report} == {name: "stopped" for name in ALL}
    stale = [d for d in _only(report.defects, "manifest_error") if d.details["check"] == "stale_playlist"]
    assert [d.details["renditions"] for d in stale] == [["96p"]], stale
    # opened after 1.5 target durations (3 s) without an update, closed when it grew again
    assert stale[0].value is not None and stale[0].value >= 3.0 and stale[0].start_s == pytest.approx(6.0, abs=0.1)
    drift = [d for d in _only(report.defects, "manifest_error") if d.details["check"] == "rendition_drift"]
    assert drift and all(d.details["renditions"] == ["96p"] for d in drift), drift


def test_the_starter_shows_a_channel_and_its_renditions(
    temporal_server: TemporalServer, task_queue: str, ladder: Path, tmp_path: Path
) -> None:
    origin = hls.StaticServer(ladder)
    sid = f"cli-{os.urandom(3).hex()}"
    try:
        with worker_subprocess(temporal_server.env(task_queue), tmp_path / "worker.log"):
            done = run_starter(temporal_server, task_queue, f"{origin.url}/master.m3u8", "--stream-id", sid,
                               "--renditions", "lowest,audio-es", "--window-seconds", "5", "--wait", timeout=240)
            assert done.returncode == 0, done.stderr
            status = run_starter(temporal_server, task_queue, "status", sid)
            deadline = time.monotonic() + 20  # visibility is eventually consistent
            while True:
                listed = run_starter(temporal_server, task_queue, "list", "--json")
                rows = {s["stream_id"]: s for s in json.loads(listed.stdout)}
                if rows.get(sid, {}).get("state") == "completed" or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
    finally:
        origin.close()
    # --wait's table: every rendition with its state, then the defects with their scope and renditions
    lines = [line.split() for line in done.stdout.splitlines()]
    states = {words[0]: words[2] for words in lines if words and words[0] in ALL}
    assert states == {"272p": "skipped", "204p": "skipped", "136p": "skipped", "96p": "completed",
                      "audio-en": "skipped", "audio-es": "completed"}, done.stdout
    assert any(words[:2] == ["black", "video"] and words[-1] == "96p" for words in lines), done.stdout
    assert any(words[:2] == ["silence", "audio"] and words[-1] == "audio-es" for words in lines), done.stdout
    assert status.returncode == 0, status.stderr
    assert {words[0]: words[2] for words in (line.split() for line in status.stdout.splitlines()) if words and words[0] in ALL} == states
    streams = rows
    assert streams[f"{sid}.96p"]["channel"] == sid and streams[f"{sid}.audio-es"]["channel"] == sid
    assert streams[f"{sid}.96p"]["source"].endswith("/96p/index.m3u8") and "channel" not in streams[sid]
    # the channel keeps its search attributes up to date as a stream does: list finds it by state
    assert streams[sid]["state"] == "completed" and streams[sid]["defect_kinds"] == ["black", "silence"], streams[sid]


def test_the_temporal_ui_tells_a_channels_story(temporal_server: TemporalServer, task_queue: str, ladder: Path, tmp_path: Path) -> None:
    """The channel's page lists its renditions, their state and the open manifest error; a
    rendition's page names its channel as its parent (the UI, in headless Chromium)."""
    live = tmp_path / "ladder"
    shutil.copytree(ladder, live)
    master, publishers = live_ladder(live, hold={"96p": 2}, end=False)
    origin = hls.StaticServer(live)
    sid = f"ui-{os.urandom(3).hex()}"

    async def scenario() -> tuple[str, str, str]:
        client = await connect(temporal_server.settings(task_queue))
        async with build_worker(client, task_queue=task_queue, max_concurrent_windows=8):
            request = StreamRequest(stream_id=sid, source=f"{origin.url}/{master}", window_seconds=2.0)
            handle = await start_stream(client, task_queue, request)
            for publisher in publishers:
                publisher.start()
            current, deadline = "", time.monotonic() + 60
            while time.monotonic() < deadline:
                metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
                current = metadata.current_details
                if "stale_playlist" in current and current.count("| running |") == len(ALL):
                    break
                await asyncio.sleep(0.5)
            child = client.get_workflow_handle(workflow_id_for(child_stream_id(sid, "96p")))
            run_id = str((await child.describe()).run_id)
            url = f"http://127.0.0.1:{temporal_server.ui_port}/namespaces/default/workflows/{child.id}/{run_id}"
            page_text = await asyncio.to_thread(_ui_text, url, handle.id)
            await handle.signal(StreamMonitorWorkflow.stop)
            report = await handle.result()
            return current, page_text, report.status

    try:
        current, page_text, status = asyncio.run(scenario())
    finally:
        for publisher in publishers:
            publisher.stop()
        origin.close()
    assert status == "stopped"
    for name in ALL:  # one row per rendition, running, with its own workflow id
        assert re.search(rf"\| {re.escape(name)} \(`vqa-stream-{sid}\.{re.escape(name)}`\) \| \w+ \| running \|", current), current
    assert re.search(r"\| stale_playlist \| manifest \| [\d.]+ \|  \| 96p \| open \|", current), current
    assert workflow_id_for(sid) in page_text, "the rendition's page names its channel"


def _ui_text(url: str, parent_id: str) -> str:
    with cdp.live_page(url, width=1400, height=1100) as page:
        return page.wait_for_text(parent_id, timeout_s=45)


def test_a_live_rendition_whose_segments_answer_404_keeps_going(
    temporal_server: TemporalServer, task_queue: str, ladder: Path, tmp_path: Path
) -> None:
    """The segment 10-12 s of 204p is lost at the origin (404) while the ladder is live, in the
    middle of a window (8-12 s): the watch reports it unavailable until the next one answers, and
    the rendition's own analysis carries on past the gap (a signal loss), as do the others."""
    live = tmp_path / "ladder"
    shutil.copytree(ladder, live)
    (live / "204p" / "seg005.ts").unlink()
    report, _ = _follow_live(temporal_server, task_queue, live, window_s=4.0)
    assert report.status == "completed", report.error
    by_name = {r.name: r for r in report.renditions}
    assert all(r.report is not None and r.report.status == "completed" for r in report.renditions), {
        r.name: r.error for r in report.renditions
    }
    unavailable = [d for d in _only(report.defects, "manifest_error") if d.details["check"] == "segment_unavailable"]
    assert [d.details["renditions"] for d in unavailable] == [["204p"]], unavailable
    assert unavailable[0].start_s == pytest.approx(10.0, abs=0.1) and unavailable[0].end_s == pytest.approx(12.0, abs=0.1)
    assert "404" in unavailable[0].details["error"]
    lost = _only(by_name["204p"].report.defects, "signal_loss")  # type: ignore[union-attr]
    assert len(lost) == 1 and lost[0].start_s == pytest.approx(10.0, abs=0.2) and lost[0].end_s == pytest.approx(12.0, abs=0.2), lost
    assert by_name["204p"].report.analysed_s is not None and by_name["204p"].report.analysed_s >= 19.5  # type: ignore[union-attr]
    assert all(_only(by_name[n].report.defects, "signal_loss") == [] for n in ALL if n != "204p")  # type: ignore[union-attr]


@pytest.fixture
def server_suggesting_continue_as_new(tmp_path: Path) -> Iterator[TemporalServer]:
    """A dev server of its own that suggests continue-as-new once a run's history holds 30 events."""
    port = free_port()
    proc = start_dev_server(port=port, ui_port=None, db_path=None, log_path=tmp_path / "server.log",
                            dynamic_config={"limit.historyCount.suggestContinueAsNew": 30})
    try:
        yield TemporalServer(address=f"127.0.0.1:{port}", ui_port=port + 1000, process=proc)
    finally:
        stop_process(proc)


def test_a_channel_continues_as_new_while_its_renditions_go_on(
    server_suggesting_continue_as_new: TemporalServer, task_queue: str, ladder: Path
) -> None:
    """A channel's history grows with its renditions' signals: it continues-as-new when Temporal
    suggests it, its renditions (children that outlive its runs) going on and reporting to the
    new run, and the report is the one a single run gives."""
    report, _ = _analyse(server_suggesting_continue_as_new, task_queue, ladder,
                         renditions=["lowest", "highest", "audio-es"])
    assert report.status == "completed", report.error
    assert report.runs > 1, "the channel continued-as-new"
    decoded = {r.name: r.report for r in report.renditions if r.report is not None}
    assert sorted(decoded) == ["272p", "96p", "audio-es"]
    assert all(r.status == "completed" and r.analysed_s == pytest.approx(20.0, abs=0.5) for r in decoded.values())
    blacks = _only(report.defects, "black")
    assert [(d.details["scope"], d.details["renditions"]) for d in blacks] == [("source", ["272p", "96p"])]
    assert blacks[0].start_s == pytest.approx(4.0, abs=TOLERANCE_S) and blacks[0].end_s == pytest.approx(7.0, abs=TOLERANCE_S)
    silences = _only(report.defects, "silence")
    assert [d.details["renditions"] for d in silences] == [["audio-es"]]
