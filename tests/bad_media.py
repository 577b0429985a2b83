"""Broken and unusual inputs, made with the ffmpeg binary from imageio-ffmpeg or PyAV, in a test's directory."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def truncated(src: Path, dst: Path, *, faststart: bool) -> Path:
    """The first half of `src`; with `faststart` the index (moov) precedes the media, else it is lost."""
    if faststart:
        ffmpeg("-i", str(src), "-c", "copy", "-movflags", "+faststart", str(dst))
        data = dst.read_bytes()
    else:
        data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def resolution_change(directory: Path) -> Path:
    """MPEG-TS: 4 s of 320x240 at 25 fps, then 4 s of black 640x360 at 30 fps (a switch upstream)."""
    first, second = directory / "first.ts", directory / "second.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=4", "-f", "lavfi", "-i", "sine=duration=4",
           "-c:v", "libx264", "-g", "25", "-c:a", "aac", "-f", "mpegts", str(first))
    ffmpeg("-f", "lavfi", "-i", "color=black:size=640x360:rate=30:duration=4", "-f", "lavfi", "-i", "sine=duration=4",
           "-c:v", "libx264", "-g", "30", "-c:a", "aac", "-output_ts_offset", "4", "-f", "mpegts", str(second))
    out = directory / "switch.ts"
    out.write_bytes(first.read_bytes() + second.read_bytes())
    return out


def variable_frame_rate(path: Path) -> Path:
    """8 s of noise at alternately 50 and about 14 fps, black from 2 to 5 s (millisecond timestamps)."""
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        t, i = 0, 0
        while t < 8000:
            black = 2000 <= t < 5000
            img = np.zeros((240, 320, 3), np.uint8) if black else rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                c.mux(packet)
            t += 20 if (i // 10) % 2 == 0 else 70
            i += 1
        for packet in stream.encode():
            c.mux(packet)
    return path


def with_cover_art(directory: Path, *, suffix: str) -> Path:
    """5 s of tone, silent from 1 to 4 s, with a PNG cover picture (attached_pic) as its only 'video'."""
    cover = directory / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "color=red:size=64x64", "-frames:v", "1", str(cover))
    audio_codec = "libmp3lame" if suffix == ".mp3" else "aac"
    out = directory / f"song{suffix}"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=5", "-i", str(cover), "-map", "0:a", "-map", "1:v",
           "-af", "volume=enable='between(t,1,4)':volume=0", "-c:a", audio_codec, "-c:v", "png",
           "-disposition:v", "attached_pic", str(out))
    return out


def unknown_video_codec(src: Path, directory: Path) -> Path:
    """Matroska whose video track names a codec FFmpeg does not know: it demuxes, it cannot decode."""
    mkv = directory / "known.mkv"
    ffmpeg("-i", str(src), "-c", "copy", str(mkv))
    data = mkv.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    out = directory / "unknown.mkv"
    out.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/AVC"))
    return out


def subtitles_only(directory: Path) -> Path:
    srt = directory / "words.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nhello\n")
    out = directory / "words.mkv"
    ffmpeg("-i", str(srt), str(out))
    return out


def absurd_header(path: Path) -> Path:
    """A Y4M header that claims a 100000x100000 picture."""
    path.write_bytes(b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 100_000)
    return path


def tiny(path: Path) -> Path:
    """A 2x2 video, black from 1 to 3.5 s."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=2x2:rate=25:duration=5", "-vf",
           "drawbox=c=black:t=fill:enable='between(t,1,3.5)'", "-c:v", "ffv1", str(path))
    return path
