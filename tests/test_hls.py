"""HLS sources: VOD playlists (local and over HTTP) and a live playlist analysed while it is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import starter
from activities.decode import probe
from bench.counting import HistoryCount, count_history
from detectors.runs import event_id
from support import hls
from support.webhook import serve_webhook
from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from vqa.runtime import connect
from vqa.synth import ClipSpec, Segment, make_clip

from . import media
from .conftest import TemporalServer, run_async, running_worker, start_stream
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
                handle = await start_stream(client, task_queue, request)
                return await handle.result()

        report = run_async(scenario())
    finally:
        server.close()
    assert report.status == "completed" and report.windows == 8
    assert media.match(report.defects, media.MAIN_TRUTH) == []
    assert report.live_edge_s is None and report.max_lag_s is None, "a VOD playlist has no live edge to lag behind"


def _history(server: TemporalServer, task_queue: str, stream_id: str) -> HistoryCount:
    """The stream's workflow history, counted (events, activities and their attempts)."""

    async def fetch() -> HistoryCount:
        client = await connect(server.settings(task_queue))
        handle = client.get_workflow_handle(workflow_id_for(stream_id))
        return await count_history(client, handle.id, (await handle.describe()).run_id)

    return run_async(fetch())


def test_live_playlist_is_analysed_as_it_grows(
    temporal_server: TemporalServer, task_queue: str, segmented: tuple[Path, list[tuple[str, float]]]
) -> None:
    directory, segments = segmented
    server = hls.StaticServer(directory)
    live = hls.LivePlaylist(directory, segments, initial=2)
    heartbeats = hls.HeartbeatCounter()
    window_s = 2.0
    try:
        request = StreamRequest(stream_id=f"live-{os.urandom(3).hex()}", source=f"{server.url}/live.m3u8", window_seconds=window_s)
        report, seen = hls.analyse_live(temporal_server, task_queue, request, live, interceptors=[heartbeats])
    finally:
        live.stop()
        server.close()
    assert report.status == "completed"
    assert report.media is not None and report.media.duration_s == pytest.approx(12.0, abs=0.2)
    assert media.match(report.defects, LIVE_TRUTH) == []
    # The analysis kept up with the edge: never more than about a window behind.
    assert report.live_edge_s == pytest.approx(12.0, abs=0.2)
    assert report.max_lag_s is not None and 0.0 <= report.max_lag_s <= window_s + 2.0, report.max_lag_s

    # Waiting for media costs no actions: each window is one activity, one attempt, waiting inside it;
    # no timer (the one allowed is the end-of-stream wait for notifications still in flight), and
    # windows that wait less than a quarter of their heartbeat timeout (30 s) send no heartbeat.
    history = _history(temporal_server, task_queue, request.stream_id)
    windows = [a for a in history.activities if a.activity_type == "analyze_window"]
    assert len(windows) == report.windows == 6 and all(a.attempt == 1 for a in windows)
    assert history.event_types["TIMER_STARTED"] <= (1 if history.scheduled("notify_defects") else 0), history.event_types
    assert heartbeats.calls["analyze_window"] == 0, heartbeats.calls
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


def test_a_stream_that_starts_behind_the_live_edge_shows_its_lag(
    temporal_server: TemporalServer, task_queue: str, segmented: tuple[Path, list[tuple[str, float]]]
) -> None:
    directory, segments = segmented
    # 8 s already out when the analysis starts, from an origin slow enough (0.3 s a segment) that
    # catching up takes a while.
    server = hls.StaticServer(directory, segment_delay_s=0.3)
    live = hls.LivePlaylist(directory, segments, initial=8)
    window_s = 2.0
    try:
        request = StreamRequest(stream_id=f"lag-{os.urandom(3).hex()}", source=f"{server.url}/live.m3u8", window_seconds=window_s)
        report, seen = hls.analyse_live(temporal_server, task_queue, request, live)
    finally:
        live.stop()
        server.close()
    assert report.status == "completed" and media.match(report.defects, LIVE_TRUTH) == []
    behind = [(edge, s) for edge, s in seen if s.state == "running" and s.windows_done and s.lag_s]
    assert behind, "the status showed the analysis behind the edge while it caught up"
    for edge, s in behind:
        assert s.live_edge_s is not None and s.lag_s == pytest.approx(s.live_edge_s - s.position_s, abs=1e-3)
        # An edge the playlist had published (a segment may have come between reading `edge` and the query).
        assert s.position_s < s.live_edge_s <= edge + 1.0 + 1e-6, (edge, s)
        assert f"lag {s.lag_s:.1f} s" in starter.format_status(s), "`starter.py status` shows the lag"
    # The first window ended on the keyframe at 2 s (the video starts 21 ms after the sound on
    # this timeline) and saw at least 8 s published.
    assert report.max_lag_s is not None and report.max_lag_s >= 6.0 - 0.04
    assert report.max_lag_s >= max(s.lag_s or 0.0 for _, s in behind) - 1e-6
    assert report.live_edge_s == pytest.approx(12.0, abs=0.2)


def test_a_live_defect_is_notified_while_the_playlist_is_written(
    temporal_server: TemporalServer, task_queue: str, segmented: tuple[Path, list[tuple[str, float]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("VQA_NOTIFY_URL", "VQA_SNS_TOPIC_ARN"):  # the in-process worker's environment
        monkeypatch.delenv(name, raising=False)
    directory, segments = segmented
    server = hls.StaticServer(directory)
    live = hls.LivePlaylist(directory, segments, initial=2)
    window_s = 2.0
    with serve_webhook() as receiver:
        try:
            request = StreamRequest(stream_id=f"live-notify-{os.urandom(3).hex()}", source=f"{server.url}/live.m3u8",
                                    window_seconds=window_s, notify_url=receiver.url)
            report, _ = hls.analyse_live(temporal_server, task_queue, request, live)
        finally:
            live.stop()
            server.close()
    assert report.status == "completed" and media.match(report.defects, LIVE_TRUTH) == []
    arrived: dict[str, float] = {}
    for when, notification, status in receiver.attempts:
        if status == 204:
            arrived.setdefault(notification, when)
    assert set(arrived) == {
        f"{request.stream_id}/{event_id(d.kind, d.track, d.start_s)}/{phase}" for d in report.defects for phase in ("opened", "closed")
    }
    assert len(live.published_at) == len(segments)
    black = next(d for d in report.defects if d.kind == "black")
    opened_at = arrived[f"{request.stream_id}/{event_id(black.kind, black.track, black.start_s)}/opened"]
    # The playlist's last segment (then #EXT-X-ENDLIST) came out at live.published_at[-1].
    assert opened_at < live.published_at[-1], "the black picture was announced while the stream was still live"
    edge_then = sum(duration for (_, duration), at in zip(segments, live.published_at) if at <= opened_at)
    assert edge_then <= 2.0 + 2.0 + window_s + 1.0 + 2.0, edge_then  # its start, the 2 s rule, a window, slack


def test_stop_ends_a_live_stream(
    temporal_server: TemporalServer, task_queue: str, segmented: tuple[Path, list[tuple[str, float]]], tmp_path: Path
) -> None:
    directory, segments = segmented
    server = hls.StaticServer(directory)
    live = hls.LivePlaylist(directory, segments, initial=5, pace_s=3600, end=False)  # never grows, never ends
    request = StreamRequest(
        stream_id=f"stop-{os.urandom(3).hex()}", source=f"{server.url}/live.m3u8", window_seconds=1.0,
        heartbeat_timeout_s=2.0,  # cancellation reaches a heartbeating activity within about that
    )
    try:
        # The five published seconds are analysed; the sixth window waits for media.
        report, _ = hls.analyse_live(temporal_server, task_queue, request, live, stop_when=lambda s: s.windows_done >= 5)
    finally:
        live.stop()
        server.close()
    assert report.status == "stopped"
    assert report.windows == 5, "the window that waited for media was cancelled, not analysed"
    assert media.match(report.defects, [media.Expected("black", 2.0, 5.0)]) == []
