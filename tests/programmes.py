"""Programmes made from real footage at test time, with a black, a freeze and a silence at known
times, encoded the way broadcast and streaming teams receive them (FFmpeg's own encoders).

The picture is real footage (fetched by tests/realmedia.py) looped to the programme's length;
the sound is a real voice recording (audio-lena) looped likewise. Defects are injected before
encoding: black is a black picture, the freeze holds one decoded frame (FFmpeg's
`freezeframes`), silence is the sound muted.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

from .realmedia import fetch


@dataclass(frozen=True)
class Programme:
    footage: str = "bikes.mp4"
    seconds: float = 30.0
    black: tuple[float, float] | None = (6.0, 9.0)
    freeze: tuple[float, float] | None = (17.0, 20.0)
    silence: tuple[float, float] | None = (26.0, 28.5)
    fps: float | None = None  # None: the footage's own
    audio: bool = True


# Encoding recipes: the FFmpeg arguments after the filters, and the container's file suffix.
ENCODINGS: dict[str, tuple[list[str], str]] = {
    "h264-aac-mp4": (["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k"], ".mp4"),
    "vp9-opus-webm": (
        ["-c:v", "libvpx-vp9", "-b:v", "1M", "-deadline", "realtime", "-cpu-used", "8", "-pix_fmt", "yuv420p",
         "-c:a", "libopus", "-b:a", "96k"],
        ".webm",
    ),
    # Broadcast delivery: MPEG-2 1080i25 (top field first) with MPEG-1 layer II sound in MPEG-TS.
    "mpeg2-1080i25-ts": (
        ["-c:v", "mpeg2video", "-b:v", "15M", "-maxrate", "15M", "-bufsize", "9M", "-g", "12", "-bf", "2",
         "-flags", "+ilme+ildct", "-alternate_scan", "1", "-pix_fmt", "yuv420p", "-c:a", "mp2", "-b:a", "192k"],
        ".ts",
    ),
    # Full-range Motion JPEG as `ffmpeg -c:v mjpeg` writes it with no quality set (200 kb/s).
    "mjpeg-default-avi": (["-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-c:a", "pcm_s16le"], ".avi"),
    "hevc10-aac-mkv": (
        ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le", "-x265-params", "log-level=error",
         "-c:a", "aac"],
        ".mkv",
    ),
}


def _video_filter(p: Programme, encoding: str, fps: float) -> str:
    chain = []
    if encoding.startswith("mpeg2-1080i"):
        # Real interlaced picture: the footage played at twice its rate gives 50 pictures a
        # second; each frame weaves two of them as its top and bottom fields.
        chain += ["setpts=0.5*PTS", f"fps={2 * fps:g}", "scale=1920:1080"]
    elif p.fps:
        chain.append(f"fps={p.fps:g}")
    if p.freeze:
        rate = 2 * fps if encoding.startswith("mpeg2-1080i") else fps
        first, last = round(p.freeze[0] * rate), round(p.freeze[1] * rate) - 1
        # freezeframes takes the held frame from its second input: the same picture, split.
        chain.append(f"split[main][held];[main][held]freezeframes=first={first}:last={last}:replace={first}")
    if encoding.startswith("mpeg2-1080i"):
        chain += ["tinterlace=mode=interleave_top", "setfield=tff"]
    if p.black:
        chain.append(f"drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='gte(t,{p.black[0]})*lt(t,{p.black[1]})'")
    return "[0:v:0]" + ",".join(chain) + "[v]"


def make(directory: Path, encoding: str, programme: Programme = Programme()) -> Path:
    """The programme, encoded as `encoding` (a key of ENCODINGS), cached in `directory`."""
    args, suffix = ENCODINGS[encoding]
    digest = hashlib.sha1(repr((programme, args)).encode()).hexdigest()[:10]
    name = f"{Path(programme.footage).stem}-{encoding}-{digest}{suffix}"
    target = directory / name
    if target.exists():
        return target
    footage = fetch(programme.footage)
    fps = programme.fps or _fps(footage)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
           "-stream_loop", "-1", "-i", str(footage)]
    if programme.audio:
        cmd += ["-stream_loop", "-1", "-i", str(fetch("lena.wav"))]
    cmd += ["-t", f"{programme.seconds:g}", "-filter_complex", _video_filter(programme, encoding, fps)]
    if programme.audio:
        audio = ["aresample=48000", "aformat=channel_layouts=stereo"]
        if programme.silence:
            s0, s1 = programme.silence
            audio.append(f"volume=volume=0:enable='gte(t,{s0})*lt(t,{s1})'")
        cmd += ["-af", ",".join(audio), "-map", "[v]", "-map", "1:a:0"]
    else:
        cmd += ["-map", "[v]", "-an"]
        args = _without_audio(args)
    cmd += args + [str(target.with_suffix(".part" + suffix))]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    target.with_suffix(".part" + suffix).replace(target)
    return target


def _fps(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
        return float(rate) if rate else 25.0


def _without_audio(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith(("-c:a", "-b:a")):
            skip = True
        else:
            out.append(arg)
    return out


def still_image(directory: Path, *, seconds: float = 30.0, moves_at: float | None = None) -> Path:
    """A still-image programme: one picture of real footage (bikes.mp4 at 7 s) over a real voice
    recording, as `ffmpeg -loop 1 -i picture -tune stillimage` makes it. With `moves_at`, the
    footage itself plays from then on (the programme cuts to video)."""
    target = directory / f"still-{seconds:g}-{moves_at}.mp4"
    if target.exists():
        return target
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    footage = fetch("bikes.mp4")
    picture = directory / "still.png"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-ss", "7", "-i", str(footage),
                    "-frames:v", "1", str(picture)], check=True, capture_output=True, timeout=120)
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-loop", "1", "-framerate", "25", "-i", str(picture),
           "-stream_loop", "-1", "-i", str(fetch("lena.wav"))]
    if moves_at is None:
        cmd += ["-filter_complex", "[0:v]format=yuv420p[v]"]
    else:
        cmd += ["-stream_loop", "-1", "-i", str(footage), "-filter_complex",
                f"[0:v]trim=0:{moves_at},setpts=PTS-STARTPTS,format=yuv420p[a];"
                f"[2:v]format=yuv420p,setpts=PTS-STARTPTS[b];[a][b]concat=n=2:v=1:a=0[v]"]
    cmd += ["-map", "[v]", "-map", "1:a:0", "-t", f"{seconds:g}", "-c:v", "libx264", "-tune", "stillimage",
            "-preset", "veryfast", "-c:a", "aac", "-ar", "48000", "-ac", "2", str(target.with_suffix(".part.mp4"))]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    target.with_suffix(".part.mp4").replace(target)
    return target
