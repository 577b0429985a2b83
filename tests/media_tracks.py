"""Test clips with several audio tracks, each with its own channel layout, language tag and
sound (a function of time per channel), encoded with PyAV (AAC; H.264 picture when asked)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RATE = 48000
Sound = Callable[[np.ndarray], np.ndarray]  # times (n,) -> samples (channels, n)


@dataclass(frozen=True)
class AudioTrack:
    sound: Sound
    layout: str = "stereo"
    language: str | None = None


def programme(channels: int, t: np.ndarray, *, level: float = 0.1) -> np.ndarray:
    """A different two-tone programme on every channel (so no two channels correlate), about -20 dBFS."""
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)
    rows = [
        level * envelope * (np.sin(2 * np.pi * (220 + 67 * c) * t) + 0.5 * np.sin(2 * np.pi * (331 + 41 * c) * t))
        for c in range(channels)
    ]
    return np.asarray(rows, dtype=np.float32)


def centred(channels: int, t: np.ndarray) -> np.ndarray:
    """A programme panned to the centre of a stereo image: mostly the same sound on every channel."""
    common = programme(1, t)[0]
    return np.asarray([0.9 * common + 0.1 * row for row in programme(channels, t)], dtype=np.float32)


def silenced(sound: Sound, channels: Sequence[int], start_s: float, end_s: float) -> Sound:
    """`sound` with `channels` digitally silent (a -90 dBFS noise floor) from `start_s` to `end_s`."""
    rng = np.random.default_rng(3)

    def out(t: np.ndarray) -> np.ndarray:
        samples = sound(t)
        mask = (t >= start_s) & (t < end_s)
        for c in channels:
            samples[c, mask] = rng.normal(0, 3e-5, int(mask.sum()))
        return samples

    return out


def scaled(sound: Sound, gain: float, start_s: float, end_s: float, channels: Sequence[int] | None = None) -> Sound:
    """`sound` multiplied by `gain` from `start_s` to `end_s` (on `channels`, else all); -1: inverted."""

    def out(t: np.ndarray) -> np.ndarray:
        samples = sound(t)
        mask = (t >= start_s) & (t < end_s)
        for c in channels if channels is not None else range(samples.shape[0]):
            samples[c, mask] *= gain
        return samples

    return out


def make_tracks_clip(
    path: Path, tracks: Sequence[AudioTrack], *, duration_s: float, with_video: bool = True, keyframe_s: float = 2.0
) -> Path:
    """An MP4 with a small moving picture (25 fps) and `tracks`, in that order."""
    with av.open(str(path), mode="w") as container:
        video = None
        if with_video:
            video = container.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
            gop = str(round(keyframe_s * 25))
            video.options = {"g": gop, "keyint_min": gop, "sc_threshold": "0", "preset": "ultrafast"}
        streams = []
        for track in tracks:
            stream = container.add_stream("aac", rate=RATE, layout=track.layout)
            stream.bit_rate = 64000 * stream.codec_context.channels
            if track.language:
                stream.metadata["language"] = track.language
            streams.append(stream)
        frames = round(duration_s * 25)
        done = [0] * len(tracks)
        for i in range(frames if video else 0):
            _encode_picture(container, video, i)
            for k, (track, stream) in enumerate(zip(tracks, streams)):
                done[k] = _encode_sound(container, stream, track, done[k], min(round((i + 1) * RATE / 25), round(duration_s * RATE)))
        for k, (track, stream) in enumerate(zip(tracks, streams)):
            done[k] = _encode_sound(container, stream, track, done[k], round(duration_s * RATE))
            for packet in stream.encode():
                container.mux(packet)
        if video is not None:
            for packet in video.encode():
                container.mux(packet)
    return path


def _encode_picture(container: av.container.OutputContainer, video: av.VideoStream, i: int) -> None:
    y, x = np.mgrid[0:120, 0:160]
    luma = ((x * 2 + y + i * 3) % 200 + 28).astype(np.uint8)
    chroma = np.full((60, 160), 128, dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(np.concatenate([luma, chroma]), format="yuv420p")
    frame.pts = i
    frame.time_base = Fraction(1, 25)
    for packet in video.encode(frame):
        container.mux(packet)


def _encode_sound(container: av.container.OutputContainer, stream: av.AudioStream, track: AudioTrack, start: int, until: int) -> int:
    while start < until:
        n = min(1024, until - start)
        samples = np.clip(track.sound(np.arange(start, start + n) / RATE), -1, 1).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=track.layout)
        frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
        start += n
    return start
