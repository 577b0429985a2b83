"""A channel's HLS ladder made by FFmpeg's HLS muxer from real footage, as a packager makes one:
several video renditions scaled from one picture (x264, a keyframe every segment), audio
renditions in two languages in one group, a master playlist (`-var_stream_map`,
`-master_pl_name`), defects injected at known times into the source (every rendition shows
them) or into one rendition's branch only."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import imageio_ffmpeg

from .hls import LivePlaylist

# name, height: 640x272 footage scaled down the way a ladder is
VIDEO_LADDER: tuple[tuple[str, int], ...] = (("272p", 272), ("204p", 204), ("136p", 136), ("96p", 96))
AUDIO_LANGUAGES: tuple[str, ...] = ("en", "es")


@dataclass(frozen=True)
class LadderSpec:
    """What to inject, as (start_s, end_s): black in every rendition (the source), black in one
    video rendition (by name), silence in one audio language."""

    duration_s: float = 20.0
    segment_s: float = 2.0
    black_everywhere: tuple[float, float] | None = None
    black_in: dict[str, tuple[float, float]] = field(default_factory=dict)
    silence_in: dict[str, tuple[float, float]] = field(default_factory=dict)
    videos: tuple[tuple[str, int], ...] = VIDEO_LADDER
    languages: tuple[str, ...] = AUDIO_LANGUAGES


def _between(span: tuple[float, float]) -> str:
    return f"between(t,{span[0]:g},{span[1]:g})"


def _filters(spec: LadderSpec) -> str:
    """The filter graph: the footage (black where every rendition is black), split into the ladder,
    each branch scaled (and blacked where only it is); each language's voice (silenced where asked)."""
    source = "[0:v]fps=25,format=yuv420p"
    if spec.black_everywhere:
        source += f",drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='{_between(spec.black_everywhere)}'"
    n = len(spec.videos)
    chains = [source + f",split={n}" + "".join(f"[s{i}]" for i in range(n))]
    for i, (name, height) in enumerate(spec.videos):
        branch = f"[s{i}]scale=-2:{height}"
        if name in spec.black_in:
            branch += f",drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='{_between(spec.black_in[name])}'"
        chains.append(branch + f"[v{i}]")
    for j, language in enumerate(spec.languages):
        voice = f"[{1 + j}:a]aresample=48000,aformat=channel_layouts=stereo"
        if language in spec.silence_in:
            voice += f",volume=volume=0:enable='{_between(spec.silence_in[language])}'"
        chains.append(voice + f"[a{j}]")
    return ";".join(chains)


def make_ladder(footage: Path, voice: Path, directory: Path, spec: LadderSpec) -> Path:
    """Write the ladder under `directory` (one folder per rendition) and return its master playlist."""
    directory.mkdir(parents=True, exist_ok=True)
    gop = round(25 * spec.segment_s)
    args = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-stream_loop", "-1", "-t", f"{spec.duration_s:g}", "-i", str(footage)]
    for _ in spec.languages:
        # the voice, then the low hiss a real room carries, so a pause in speech is not digital silence
        args += ["-f", "lavfi", "-t", f"{spec.duration_s:g}", "-i",
                 f"amovie={voice}:loop=0,asetpts=N/SR/TB,volume=1[v];anoisesrc=a=0.003:c=pink[n];[v][n]amix=inputs=2:duration=first"]
    args += ["-filter_complex", _filters(spec)]
    stream_map = []
    for i, (name, _) in enumerate(spec.videos):
        args += ["-map", f"[v{i}]"]
        stream_map.append(f"v:{i},agroup:aud,name:{name}")
    for j, language in enumerate(spec.languages):
        args += ["-map", f"[a{j}]"]
        stream_map.append(f"a:{j},agroup:aud,language:{language},name:audio-{language}")
    args += ["-c:v", "libx264", "-preset", "veryfast", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
             "-c:a", "aac", "-b:a", "96k", "-t", f"{spec.duration_s:g}",
             "-f", "hls", "-hls_time", f"{spec.segment_s:g}", "-hls_playlist_type", "vod",
             "-hls_segment_filename", str(directory / "%v" / "seg%03d.ts"),
             "-master_pl_name", "master.m3u8", "-var_stream_map", " ".join(stream_map),
             str(directory / "%v" / "index.m3u8")]
    subprocess.run(args, check=True, capture_output=True)
    return directory / "master.m3u8"


def live_ladder(directory: Path, *, hold: dict[str, int] | None = None, end: bool = True) -> tuple[str, list[LivePlaylist]]:
    """The VOD ladder in `directory` published live: each rendition's `live.m3u8` grows one segment
    per segment duration (real time), all together, listed by `live-master.m3u8` (returned, with
    the publishers, not yet started). `hold`: rendition -> segments after which its playlist stops
    growing until its publisher's `resume()`; `end`: each ends with #EXT-X-ENDLIST when all are out."""
    master = (directory / "master.m3u8").read_text().replace("/index.m3u8", "/live.m3u8")
    (directory / "live-master.m3u8").write_text(master)
    publishers = []
    for rendition in sorted(p.parent for p in directory.glob("*/index.m3u8")):
        text = (rendition / "index.m3u8").read_text()
        segments = [(name, float(d)) for d, name in re.findall(r"#EXTINF:([\d.]+),\s*\n(\S+)", text)]
        publishers.append(LivePlaylist(rendition, segments, initial=1, end=end,
                                       hold_after=(hold or {}).get(rendition.name)))
    return "live-master.m3u8", publishers
