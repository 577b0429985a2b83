"""A channel's HLS ladder made by FFmpeg's HLS muxer from real footage, as a packager makes one
(and the same ladder by its DASH muxer, `make_dash_ladder`, published live by `LiveMpd`):
several video renditions scaled from one picture (x264, a keyframe every segment), audio
renditions in two languages in one group, a master playlist (`-var_stream_map`,
`-master_pl_name`), defects injected at known times into the source (every rendition shows
them) or into one rendition's branch only."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree

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


def _inputs(footage: Path, voice: Path, spec: LadderSpec) -> list[str]:
    """FFmpeg's command up to its outputs: the footage looped to the ladder's length, one voice per
    language, and the filter graph that injects the defects (`_filters`)."""
    args = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-stream_loop", "-1", "-t", f"{spec.duration_s:g}", "-i", str(footage)]
    for _ in spec.languages:
        # the voice, then the low hiss a real room carries, so a pause in speech is not digital silence
        args += ["-f", "lavfi", "-t", f"{spec.duration_s:g}", "-i",
                 f"amovie={voice}:loop=0,asetpts=N/SR/TB,volume=1[v];anoisesrc=a=0.003:c=pink[n];[v][n]amix=inputs=2:duration=first"]
    return args + ["-filter_complex", _filters(spec)]


def make_ladder(footage: Path, voice: Path, directory: Path, spec: LadderSpec) -> Path:
    """Write the ladder under `directory` (one folder per rendition) and return its master playlist."""
    directory.mkdir(parents=True, exist_ok=True)
    gop = round(25 * spec.segment_s)
    args = _inputs(footage, voice, spec)
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


def make_dash_ladder(footage: Path, voice: Path, directory: Path, spec: LadderSpec) -> Path:
    """The same ladder (the same footage, voices and injected defects: `_filters`) written by FFmpeg's
    DASH muxer as a packager writes one: one video AdaptationSet of every height, one audio
    AdaptationSet per language (`lang`), fragmented-MP4 segments named by a SegmentTemplate with a
    SegmentTimeline. Returns the MPD (`manifest.mpd`)."""
    directory.mkdir(parents=True, exist_ok=True)
    gop = round(25 * spec.segment_s)
    args = _inputs(footage, voice, spec)
    n = len(spec.videos)
    for i in range(n):
        args += ["-map", f"[v{i}]"]
    sets = ["id=0,streams=v"]
    for j, language in enumerate(spec.languages):
        args += ["-map", f"[a{j}]", f"-metadata:s:a:{j}", f"language={language}"]
        sets.append(f"id={1 + j},streams={n + j}")  # DASH tells a language by its AdaptationSet's lang
    args += ["-c:v", "libx264", "-preset", "veryfast", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
             "-c:a", "aac", "-b:a", "96k", "-t", f"{spec.duration_s:g}",
             "-f", "dash", "-adaptation_sets", " ".join(sets), "-seg_duration", f"{spec.segment_s:g}",
             "-use_template", "1", "-use_timeline", "1",
             str(directory / "manifest.mpd")]
    subprocess.run(args, check=True, capture_output=True)
    return directory / "manifest.mpd"


class LiveMpd:
    """The DASH ladder in `directory` published live as `live.mpd`: a dynamic MPD whose every
    SegmentTimeline lists the segments that have ended by now (real time since `start()`, its
    availabilityStartTime), rewritten every `tick_s`; once all are out it is the static VOD MPD
    again (what FFmpeg's muxer writes when a live stream ends), unless `end` is False."""

    def __init__(self, directory: Path, *, end: bool = True, tick_s: float = 0.25) -> None:
        self.path = directory / "live.mpd"
        self.vod = (directory / "manifest.mpd").read_text()
        self.end, self.tick_s = end, tick_s
        self._stop = threading.Event()
        self.started = time.time()
        self._write(0.0)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LiveMpd:
        self.started = time.time()
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            if not self._write(time.time() - self.started):
                if self.end:
                    self._publish(self.vod)
                return

    def _write(self, elapsed_s: float) -> bool:
        """Publish what has ended by `elapsed_s`; False once every segment is out."""
        ns = "urn:mpeg:dash:schema:mpd:2011"
        ElementTree.register_namespace("", ns)
        root = ElementTree.fromstring(self.vod)
        root.set("type", "dynamic")
        stamp = datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="milliseconds")
        root.set("availabilityStartTime", stamp.replace("+00:00", "Z"))
        root.set("minimumUpdatePeriod", "PT1S")
        root.attrib.pop("mediaPresentationDuration", None)
        pending = False
        for template in root.iter(f"{{{ns}}}SegmentTemplate"):
            timescale = int(template.get("timescale", "1"))
            timeline = template.find(f"{{{ns}}}SegmentTimeline")
            assert timeline is not None
            entries, t = [], 0
            for s in list(timeline):
                t = int(s.get("t", t))
                for _ in range(int(s.get("r", "0")) + 1):
                    entries.append((t, int(s.get("d", "0"))))
                    t += entries[-1][1]
                timeline.remove(s)
            out = [(t, d) for t, d in entries if (t + d) / timescale <= elapsed_s]
            pending = pending or len(out) < len(entries)
            for t, d in out:
                ElementTree.SubElement(timeline, f"{{{ns}}}S", t=str(t), d=str(d))
        self._publish(ElementTree.tostring(root, encoding="unicode"))
        return pending

    def _publish(self, text: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.path)
