"""Synthetic programme with defects at known times, encoded with PyAV (H.264 + AAC).

Used for the demo clip that `starter.py --dev` analyses when no source is given,
and by the tests as ground truth. Picture: a moving textured pattern with
sensor-like noise; sound: a modulated two-tone programme at about -20 dBFS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

VIDEO_KINDS = ("black", "freeze", "still", "sitting", "gap")
AUDIO_KINDS = ("silence", "quiet", "gap")  # gap: no media at all (timestamps jump over it)


@dataclass(frozen=True)
class Segment:
    """`kind` from `start_s` to `end_s` on the clip's timeline."""

    kind: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ClipSpec:
    duration_s: float
    video: Sequence[Segment] = ()
    audio: Sequence[Segment] = ()
    fps: int = 25
    width: int = 320
    height: int = 240
    sample_rate: int = 48000
    channels: int = 2
    audio_codec: str = "aac"  # "flac": lossless and ~15x cheaper to encode, for very long test clips
    with_video: bool = True
    with_audio: bool = True
    keyframe_interval_s: float = 1.0
    crf: int = 23
    bitrate_kbps: int | None = None  # constant bit rate, as broadcast encoders run, instead of crf
    reencode: bool = False
    seed: int = 7
    extra: dict[str, object] = field(default_factory=dict)


def _segment_at(segments: Sequence[Segment], t: float) -> Segment | None:
    for seg in segments:
        if seg.start_s <= t < seg.end_s:
            return seg
    return None


def _pattern(t: float, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    v = 128 + 60 * np.sin((x + 40 * t) / 9.0) * np.cos((y - 25 * t) / 13.0) + 30 * np.sin((x + y) / 31.0 + t)
    v += rng.normal(0, 3, v.shape).astype(np.float32)
    return np.clip(v, 16, 235).astype(np.uint8)


def _luma_at(spec: ClipSpec, t: float, rng: np.random.Generator, still: dict[float, np.ndarray]) -> np.ndarray:
    seg = _segment_at(spec.video, t)
    if seg is None:
        return _pattern(t, spec.width, spec.height, rng)
    if seg.kind == "gap":
        raise AssertionError("gap frames are not encoded")  # pragma: no cover
    if seg.kind == "black":
        return np.full((spec.height, spec.width), 16, dtype=np.uint8)
    if seg.kind == "freeze":
        if seg.start_s not in still:
            still[seg.start_s] = _pattern(seg.start_s, spec.width, spec.height, rng)
        return still[seg.start_s]
    if seg.kind in ("still", "sitting"):
        # A static scene seen by a real camera: the picture holds, the sensor noise does not.
        key = -seg.start_s - 1
        if key not in still:
            still[key] = _pattern(seg.start_s, spec.width, spec.height, rng)
        base = still[key]
        if seg.kind == "sitting":
            # A person sitting still: the middle of the picture sways a pixel or two (breathing).
            base = base.copy()
            h, w = spec.height // 4, spec.width // 4
            shift = round(2 * np.sin(2 * np.pi * 0.5 * (t - seg.start_s)))
            base[h : 3 * h, w : 3 * w] = np.roll(still[key], shift, axis=1)[h : 3 * h, w : 3 * w]
        noisy = base.astype(np.int16) + rng.normal(0, 2.5, base.shape).astype(np.int16)
        return np.clip(noisy, 16, 235).astype(np.uint8)
    raise ValueError(f"unknown video segment kind {seg.kind!r}; known: {VIDEO_KINDS}")


def _audio_block(spec: ClipSpec, t0: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = t0 + np.arange(n) / spec.sample_rate
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)
    tone = 0.12 * envelope * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 331 * t))
    out = np.repeat(tone[None, :], spec.channels, axis=0).astype(np.float32)
    for seg in spec.audio:
        mask = (t >= seg.start_s) & (t < seg.end_s)
        if not mask.any() or seg.kind == "gap":
            continue
        if seg.kind == "silence":
            # Dead air with a noise floor around -90 dBFS, well under the -60 dB rule.
            out[:, mask] = rng.normal(0, 3e-5, (spec.channels, int(mask.sum()))).astype(np.float32)
        elif seg.kind == "quiet":
            out[:, mask] *= 10 ** (-30 / 20)  # quiet but not silent: about -50 dBFS
        else:
            raise ValueError(f"unknown audio segment kind {seg.kind!r}; known: {AUDIO_KINDS}")
    return out


def _video_stream(container: av.container.OutputContainer, spec: ClipSpec) -> av.VideoStream:
    stream = container.add_stream("libx264", rate=spec.fps)
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
    gop = max(1, round(spec.keyframe_interval_s * spec.fps))
    options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "preset": "veryfast"}
    if spec.bitrate_kbps:
        rate = f"{spec.bitrate_kbps}k"
        options.update(b=rate, maxrate=rate, bufsize=f"{spec.bitrate_kbps // 2}k")
        stream.bit_rate = spec.bitrate_kbps * 1000
    else:
        options["crf"] = str(spec.crf)
    stream.options = options
    stream.codec_context.time_base = Fraction(1, spec.fps)
    return stream


def _yuv(luma: np.ndarray) -> av.VideoFrame:
    h, w = luma.shape
    chroma = np.full((h // 2, w), 128, dtype=np.uint8)
    return av.VideoFrame.from_ndarray(np.concatenate([luma, chroma], axis=0), format="yuv420p")


def make_clip(path: str | Path, spec: ClipSpec) -> Path:
    """Encode the clip described by `spec` to `path` (MP4) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.mp4")
    rng = np.random.default_rng(spec.seed)
    with av.open(str(tmp), mode="w") as container:
        vstream = _video_stream(container, spec) if spec.with_video else None
        astream = None
        if spec.with_audio:
            astream = container.add_stream(spec.audio_codec, rate=spec.sample_rate)
            astream.layout = "stereo" if spec.channels == 2 else "mono"
        frames = round(spec.duration_s * spec.fps)
        samples_total = round(spec.duration_s * spec.sample_rate)
        still: dict[float, np.ndarray] = {}
        block = 1024
        next_sample = 0
        for i in range(frames if vstream else 0):
            t = i / spec.fps
            if _in_gap(spec.video, t):
                continue
            frame = _yuv(_luma_at(spec, t, rng, still))
            frame.pts = i
            for packet in vstream.encode(frame):
                container.mux(packet)
            # Interleave audio up to this frame's time.
            while astream is not None and next_sample < min(samples_total, (i + 1) * spec.sample_rate // spec.fps):
                next_sample = _encode_audio(container, astream, spec, next_sample, block, samples_total, rng)
        while astream is not None and next_sample < samples_total:
            next_sample = _encode_audio(container, astream, spec, next_sample, block, samples_total, rng)
        if vstream is not None:
            for packet in vstream.encode():
                container.mux(packet)
        if astream is not None:
            for packet in astream.encode():
                container.mux(packet)
    if spec.reencode and spec.with_video:
        _reencode(tmp, path, spec)
        tmp.unlink()
    else:
        tmp.replace(path)
    return path


def _in_gap(segments: Sequence[Segment], t: float) -> bool:
    seg = _segment_at(segments, t)
    return seg is not None and seg.kind == "gap"


def _encode_audio(container, astream, spec: ClipSpec, start: int, block: int, total: int, rng) -> int:  # type: ignore[no-untyped-def]
    n = min(block, total - start)
    if _in_gap(spec.audio, start / spec.sample_rate):
        return start + n
    samples = _audio_block(spec, start / spec.sample_rate, n, rng)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=astream.layout.name)
    frame.sample_rate = spec.sample_rate
    frame.pts = start
    frame.time_base = Fraction(1, spec.sample_rate)
    for packet in astream.encode(frame):
        container.mux(packet)
    return start + n


def _reencode(src: Path, dst: Path, spec: ClipSpec) -> None:
    """Decode and encode the picture again, as a contribution chain would; audio is copied."""
    with av.open(str(src)) as inp, av.open(str(dst), mode="w") as out:
        vstream = _video_stream(out, spec)
        ain = inp.streams.audio[0] if inp.streams.audio else None
        aout = out.add_stream_from_template(ain) if ain is not None else None
        for i, frame in enumerate(inp.decode(video=0)):
            plane = frame.planes[0]
            luma = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)[: frame.height, : frame.width]
            new = _yuv(luma.copy())
            new.pts = i
            for packet in vstream.encode(new):
                out.mux(packet)
        for packet in vstream.encode():
            out.mux(packet)
        if ain is not None and aout is not None:
            inp.seek(0)
            for packet in inp.demux(ain):
                if packet.dts is None:
                    continue
                packet.stream = aout
                out.mux(packet)


def demo_spec() -> ClipSpec:
    """The embedded default: 40 s with one of each defect the foundation detects."""
    return ClipSpec(
        duration_s=40.0,
        video=[Segment("black", 6.0, 9.5), Segment("freeze", 18.0, 23.0)],
        audio=[Segment("silence", 28.0, 32.5)],
        keyframe_interval_s=2.0,
    )
