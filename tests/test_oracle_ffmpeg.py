"""FFmpeg's own detectors as the oracle, on the same generated clips.

Black and silence must agree with blackdetect/silencedetect within 0.1 s. Freeze
deliberately differs: freezedetect breaks a re-encoded freeze at keyframes,
ours reports it as one event.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from . import media
from .local import analyse_file

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg_log(path: Path, *filters: str) -> str:
    args = [FFMPEG, "-hide_banner", "-nostats", "-i", str(path)]
    for f in filters:
        args += ["-af" if "silence" in f else "-vf", f]
    args += ["-f", "null", "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stderr


def _events(log: str, start_key: str, end_key: str) -> list[tuple[float, float]]:
    starts = [float(x) for x in re.findall(rf"{start_key}:\s*(-?[\d.]+)", log)]
    ends = [float(x) for x in re.findall(rf"{end_key}:\s*(-?[\d.]+)", log)]
    return list(zip(starts, ends))


def _ours(defects, kind: str) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    return [(d.start_s, d.end_s) for d in defects if d.kind == kind]


def _agree(ours: list[tuple[float, float]], theirs: list[tuple[float, float]], tol: float) -> None:
    assert len(ours) == len(theirs), f"ours {ours} vs ffmpeg {theirs}"
    for (a0, a1), (b0, b1) in zip(ours, theirs):
        assert abs(a0 - b0) <= tol and abs(a1 - b1) <= tol, f"ours {ours} vs ffmpeg {theirs}"


@pytest.mark.parametrize("name", ["main", "boundary", "video_only"])
def test_black_agrees_with_blackdetect(clips: media.ClipFactory, name: str) -> None:
    path = clips(name)
    theirs = _events(_ffmpeg_log(path, "blackdetect=d=2:pic_th=0.98:pix_th=0.10"), "black_start", "black_end")
    ours = _ours(analyse_file(path, window_s=4.0), "black")
    assert ours, "the clip has black stretches"
    _agree(ours, theirs, 0.1)


@pytest.mark.parametrize("name", ["main", "boundary", "audio_only"])
def test_silence_agrees_with_silencedetect(clips: media.ClipFactory, name: str) -> None:
    path = clips(name)
    theirs = _events(_ffmpeg_log(path, "silencedetect=n=-60dB:d=2"), "silence_start", "silence_end")
    ours = _ours(analyse_file(path, window_s=4.0), "silence")
    assert ours, "the clip has silences"
    _agree(ours, theirs, 0.1)


def test_reencoded_freeze_is_one_event_where_freezedetect_splits_it(clips: media.ClipFactory) -> None:
    path = clips("main")
    theirs = _events(_ffmpeg_log(path, "freezedetect=n=-60dB:d=2"), "freeze_start", "freeze_end")
    ours = _ours(analyse_file(path, window_s=10.0), "freeze")
    assert ours == [(pytest.approx(9.0, abs=0.2), pytest.approx(13.5, abs=0.2))]
    # FFmpeg does not see the 4.5 s freeze as one: the encoder's refresh and
    # refinement break it into pieces (below its 2 s rule, here).
    whole = [(a, b) for a, b in theirs if abs(a - 9.0) <= 0.2 and abs(b - 13.5) <= 0.2]
    assert whole == [], f"freezedetect found {theirs}"
