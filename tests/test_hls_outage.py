"""A live HLS stream whose segments stop arriving for a while: signal_loss, then analysis recovers.

As a real encoder does after an outage, the segments that come after it resume
with a timestamp jump as long as the outage, and the packager dates every
segment (#EXT-X-PROGRAM-DATE-TIME): the gap is on the stream's timeline.
An undated playlist that stops growing is a loss too, from where its media
stopped; it closes when segments come again, or where the stream is stopped.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest

import activities.decode
from activities.sources.hls import load_playlist
from support import hls
from vqa.contracts import StreamReport, StreamRequest, StreamStatus
from vqa.synth import ClipSpec, Segment, make_clip

from . import media
from .conftest import TemporalServer

OUTAGE_AFTER = 6  # segments (1 s each) delivered before the outage
OUTAGE_S = 4.0
# 12 s of media; its black 8-10.5 s comes after the outage, at 12-14.5 s on the stream's timeline.
CLIP = ClipSpec(duration_s=12.0, video=[Segment("black", 8.0, 10.5)], keyframe_interval_s=1.0)
LOSS = media.Expected("signal_loss", 6.0, 6.0 + OUTAGE_S)
BLACK = media.Expected("black", 8.0 + OUTAGE_S, 10.5 + OUTAGE_S)


def _shifted(source: Path, target: Path, offset_s: float) -> None:
    """The segment as an encoder resuming after the outage sends it: timestamps `offset_s` later."""
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-copyts", "-i", str(source),
            "-c", "copy", "-output_ts_offset", str(offset_s), "-muxdelay", "0", "-muxpreload", "0", "-f", "mpegts",
            str(target),
        ],
        check=True,
    )


class _DatedLivePlaylist:
    """Publishes each segment when its media has happened in real time, dated; none during the outage."""

    def __init__(self, directory: Path, segments: list[tuple[str, float]]) -> None:
        self.path = directory / "outage.m3u8"
        self.entries: list[tuple[str, float, float]] = []  # (name, timeline start, duration)
        t = 0.0
        for i, (name, duration) in enumerate(segments):
            if i == OUTAGE_AFTER:
                t += OUTAGE_S
            if i >= OUTAGE_AFTER:
                late = f"late-{name}"
                _shifted(directory / name, directory / late, OUTAGE_S)
                name = late
            self.entries.append((name, t, duration))
            t += duration
        self.published = 2
        self.wall_start = time.time() - sum(d for _, _, d in self.entries[:2])
        self._stop = threading.Event()
        self._write(ended=False)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _write(self, *, ended: bool) -> None:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
        for name, start, duration in self.entries[: self.published]:
            date = datetime.fromtimestamp(self.wall_start + start, timezone.utc).isoformat(timespec="milliseconds")
            lines += [f"#EXT-X-PROGRAM-DATE-TIME:{date}", f"#EXTINF:{duration:.6f},", name]
        if ended:
            lines.append("#EXT-X-ENDLIST")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.path)

    def start(self) -> _DatedLivePlaylist:
        self.thread.start()
        return self

    def edge_s(self) -> float:
        _, start, duration = self.entries[self.published - 1]
        return start + duration

    def _run(self) -> None:
        while self.published < len(self.entries):
            _, start, duration = self.entries[self.published]
            if self._stop.wait(max(0.0, self.wall_start + start + duration - time.time())):
                return
            self.published += 1
            self._write(ended=False)
        self._write(ended=True)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


def test_a_live_outage_is_signal_loss_and_analysis_recovers(
    temporal_server: TemporalServer, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The in-process worker is built after this, with its settings.
    monkeypatch.setenv("VQA_LIVE_STALL_S", "1.0")
    segments = hls.segment(make_clip(tmp_path / "clip.mp4", CLIP), tmp_path, segment_s=1.0)
    live = _DatedLivePlaylist(tmp_path, segments)
    server = hls.StaticServer(tmp_path)
    window_s = 2.0
    try:
        request = StreamRequest(stream_id=f"outage-{os.urandom(3).hex()}", source=f"{server.url}/outage.m3u8",
                                window_seconds=window_s)
        report, seen = hls.analyse_live(temporal_server, task_queue, request, live)
    finally:
        live.stop()
        server.close()
    playlist = load_playlist(str(live.path))
    assert [round(s.start_s, 3) for s in playlist.segments[OUTAGE_AFTER - 1 : OUTAGE_AFTER + 1]] == [5.0, 10.0]
    assert report.status == "completed", report.error
    for track in ("video", "audio"):  # one loss per track, closed when media came back
        assert media.match([d for d in report.defects if d.track == track], [LOSS] + [BLACK] * (track == "video"),
                           tolerance_s=0.3) == [], report.defects
    # The loss was announced while the stream was still out, before any media came back.
    first = next((edge for edge, s in seen if any(d.kind == "signal_loss" for d in s.defects + s.open_defects)), None)
    assert first is not None and first <= OUTAGE_AFTER + 1e-6, first


@pytest.fixture(scope="module")
def undated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, float]]]:
    """CLIP in 1 s segments, for an undated live playlist (tests.hls.LivePlaylist)."""
    directory = tmp_path_factory.mktemp("undated")
    return directory, hls.segment(make_clip(directory / "clip.mp4", CLIP), directory, segment_s=1.0)


def _lost_tracks(status: StreamStatus) -> set[str]:
    return {d.track for d in status.open_defects if d.kind == "signal_loss"}


UNDATED_WINDOW_S = 2.0


def _analyse_undated(
    temporal_server: TemporalServer, task_queue: str, directory: Path, live: hls.LivePlaylist, name: str,
    **options: Any,
) -> StreamReport:
    """Serve `directory` over HTTP and analyse its live playlist, in 2 s windows, while `live`
    publishes (`options`: for hls.analyse_live); both are stopped afterwards."""
    server = hls.StaticServer(directory)
    request = StreamRequest(stream_id=f"{name}-{os.urandom(3).hex()}", source=f"{server.url}/live.m3u8",
                            window_seconds=UNDATED_WINDOW_S)
    try:
        return hls.analyse_live(temporal_server, task_queue, request, live, **options)[0]
    finally:
        live.stop()
        server.close()


def test_an_undated_playlist_that_stops_growing_is_signal_loss_until_segments_resume(
    temporal_server: TemporalServer, task_queue: str, undated: tuple[Path, list[tuple[str, float]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VQA_LIVE_STALL_S", "3.0")
    directory, segments = undated
    # Holds at 6 s until the loss shows in the status, then goes on in real time (a segment a
    # second, well within the stall time): the window after the stalled one gets its media.
    live = hls.LivePlaylist(directory, segments, initial=2, hold_after=OUTAGE_AFTER)
    edge_when_lost: list[float] = []

    def resume_once_lost(status: StreamStatus) -> None:
        if _lost_tracks(status) == {"video", "audio"}:
            edge_when_lost.append(live.edge_s())
            live.resume()

    report = _analyse_undated(temporal_server, task_queue, directory, live, "stall", on_status=resume_once_lost)
    assert edge_when_lost and edge_when_lost[0] == OUTAGE_AFTER * 1.0, "the loss opened while the playlist stood still"
    assert report.status == "completed", report.error
    assert report.media is not None and report.media.duration_s == pytest.approx(12.0, abs=0.2)
    # The stalled window (6-8 s) was analysed with what there was; the media that came late for it
    # is not analysed (undated: it cannot be placed after the gap), the next window's is.
    loss = media.Expected("signal_loss", 6.0, 8.0)
    for track in ("video", "audio"):
        assert media.match([d for d in report.defects if d.track == track],
                           [loss] + [media.Expected("black", 8.0, 10.5)] * (track == "video"), tolerance_s=0.3) == [], report.defects


def test_an_undated_playlist_that_never_resumes_is_signal_loss_until_stopped(
    temporal_server: TemporalServer, task_queue: str, undated: tuple[Path, list[tuple[str, float]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VQA_LIVE_STALL_S", "1.0")
    directory, segments = undated
    live = hls.LivePlaylist(directory, segments, initial=OUTAGE_AFTER, pace_s=3600, end=False)  # never grows, never ends
    report = _analyse_undated(temporal_server, task_queue, directory, live, "stall-stop",
                              stop_when=lambda s: _lost_tracks(s) == {"video", "audio"})
    assert report.status == "stopped", report.error
    stopped_at = report.windows * UNDATED_WINDOW_S
    assert report.windows > OUTAGE_AFTER / UNDATED_WINDOW_S and report.media is not None
    assert report.media.duration_s == pytest.approx(stopped_at)
    # Closed by the report where the analysis stopped, one per track.
    assert sorted((d.kind, d.track) for d in report.defects) == [("signal_loss", "audio"), ("signal_loss", "video")]
    for d in report.defects:
        assert d.start_s == pytest.approx(OUTAGE_AFTER * 1.0, abs=0.1) and d.end_s == pytest.approx(stopped_at), d
