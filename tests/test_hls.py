"""HLS sources: VOD playlists (local and over HTTP) and a live playlist analysed while it is written."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from activities.media import probe
from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from vqa.synth import ClipSpec, Segment, make_clip
from workflows import StreamMonitorWorkflow

from . import hls, media
from .conftest import TemporalServer, run_async, running_worker
from .local import analyse_file

LIVE = ClipSpec(
    duration_s=12.0,
    video=[Segment("black", 2.0, 5.0)],
    audio=[Segment("silence", 7.0, 9.5)],
    keyframe_interval_s=1.0,
)
LIVE_TRUTH = [media.Expected("black", 2.0, 5.0), media.Expected("silence", 7.0, 9.5)]


@pytest.fixture(scope="module")
def segmented(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, float]]]:
    directory = tmp_path_factory.mktemp("hls")
    clip = make_clip(directory / "live.mp4", LIVE)
    return directory, hls.segment(clip, directory, segment_s=1.0)


@pytest.fixture(scope="module")
def main_vod(tmp_path_factory: pytest.TempPathFactory, clips: media.ClipFactory) -> Path:
    directory = tmp_path_factory.mktemp("hls-main")
    hls.segment(clips("main"), directory, segment_s=2.0)
    return directory


def test_vod_playlist_matches_the_file_it_was_cut_from(main_vod: Path) -> None:
    playlist = main_vod / "vod.m3u8"
    info = probe(str(playlist))
    assert not info.live and info.duration_s == pytest.approx(32.0, abs=0.1)
    assert info.video is not None and info.audio is not None
    for window_s in (10.0, 3.3):
        defects = analyse_file(playlist, window_s=window_s)
        assert media.match(defects, media.MAIN_TRUTH) == [], window_s


def test_vod_playlist_over_http_through_temporal(temporal_server: TemporalServer, task_queue: str, main_vod: Path) -> None:
    server = hls.StaticServer(main_vod)
    try:
        async def scenario() -> StreamReport:
            async with running_worker(temporal_server, task_queue) as client:
                request = StreamRequest(stream_id=f"vod-{os.urandom(3).hex()}", source=f"{server.url}/vod.m3u8", window_seconds=4.0)
                handle = await client.start_workflow(
                    StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=task_queue,
                    result_type=StreamReport,
                )
                return await handle.result()

        report = run_async(scenario())
    finally:
        server.close()
    assert report.status == "completed" and report.windows == 8
    assert media.match(report.defects, media.MAIN_TRUTH) == []


def test_live_playlist_is_analysed_as_it_grows(
    temporal_server: TemporalServer, task_queue: str, segmented: tuple[Path, list[tuple[str, float]]]
) -> None:
    directory, segments = segmented
    server = hls.StaticServer(directory)
    live = hls.LivePlaylist(directory, segments, initial=2)
    window_s = 2.0
    try:
        request = StreamRequest(stream_id=f"live-{os.urandom(3).hex()}", source=f"{server.url}/live.m3u8", window_seconds=window_s)
        report, seen = hls.analyse_live(temporal_server, task_queue, request, live)
    finally:
        live.stop()
        server.close()
    assert report.status == "completed"
    assert report.media is not None and report.media.duration_s == pytest.approx(12.0, abs=0.2)
    assert media.match(report.defects, LIVE_TRUTH) == []
    statuses = [s for _, s in seen]
    assert any(s.live and s.state == "running" for s in statuses)
    assert all(s.lag_s is not None and s.lag_s >= 0 for s in statuses if s.state == "running" and s.windows_done)
    # Each defect is reported within one window of becoming reportable (its start + the 2 s rule),
    # while the playlist is still being written.
    for want in LIVE_TRUTH:
        first = next(
            (edge for edge, s in seen if any(d.kind == want.kind for d in s.defects + s.open_defects)), None
        )
        assert first is not None, f"{want.kind} never showed up while live"
        assert first <= want.start_s + 2.0 + window_s + 1.0 + 1e-6, (want, first)
        assert first < 12.0, "reported before the stream ended"


def test_stop_ends_a_live_stream(
    temporal_server: TemporalServer, task_queue: str, segmented: tuple[Path, list[tuple[str, float]]], tmp_path: Path
) -> None:
    directory, segments = segmented
    server = hls.StaticServer(directory)
    live = hls.LivePlaylist(directory, segments, initial=5, pace_s=3600, end=False)  # never grows, never ends
    try:
        async def scenario() -> StreamReport:
            async with running_worker(temporal_server, task_queue) as client:
                request = StreamRequest(
                    stream_id=f"stop-{os.urandom(3).hex()}", source=f"{server.url}/live.m3u8", window_seconds=1.0,
                    heartbeat_timeout_s=2.0,  # cancellation reaches a heartbeating activity within about that
                )
                handle = await client.start_workflow(
                    StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=task_queue,
                    result_type=StreamReport,
                )
                live.start()
                # The five published seconds are analysed; the sixth window waits for media.
                while (await handle.query(StreamMonitorWorkflow.status)).windows_done < 5:
                    await asyncio.sleep(0.2)
                await handle.signal(StreamMonitorWorkflow.stop)
                return await handle.result()

        report = run_async(scenario())
    finally:
        live.stop()
        server.close()
    assert report.status == "stopped"
    assert report.windows == 5, "the window that waited for media was cancelled, not analysed"
    assert media.match(report.defects, [media.Expected("black", 2.0, 5.0)]) == []
