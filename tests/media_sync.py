"""Sync test clips (PyAV: libx264 + AAC) with a known audio offset, and their truth.

A flash-and-beep pattern as sync test generators make it: one white frame and a
short 1 kHz tone burst once a second, over a dark picture with a small moving
box and near-silence. The burst of the flash at time f sounds at f + delay
(positive: audio late). A clip can also be remuxed with its audio packets'
timestamps shifted, the way a wrong mux offset shifts a whole track.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vqa.synth import ClipSpec, _video_stream, _yuv, make_clip


@dataclass(frozen=True)
class SyncClip:
    duration_s: float = 12.0
    delay_ms: float = 0.0
    # (from_s, to_s, delay_ms): flashes in [from_s, to_s) get this delay instead of delay_ms.
    steps: Sequence[tuple[float, float, float]] = ()
    fps: int = 25
    width: int = 160
    height: int = 120
    sample_rate: int = 48000
    flash_period_s: float = 1.0
    beep_hz: float = 1000.0
    beep_s: float = 0.06
    beep_amplitude: float = 0.5
    # Shift every audio packet's timestamps by this much after encoding (a mux offset).
    audio_pts_offset_ms: float = 0.0
    # The synthetic programme of vqa.synth (moving pattern and tone) instead of the sync pattern.
    programme: bool = False

    def delay_at(self, flash_s: float) -> float:
        for start, end, delay in self.steps:
            if start <= flash_s < end:
                return delay
        return self.delay_ms

    def flash_times(self) -> list[float]:
        count = int(np.floor(self.duration_s / self.flash_period_s - 1e-9)) + 1
        return [round(k * self.flash_period_s * self.fps) / self.fps for k in range(count)]


def _picture(clip: SyncClip, i: int, flash_frames: set[int]) -> np.ndarray:
    if i in flash_frames:
        return np.full((clip.height, clip.width), 235, dtype=np.uint8)
    luma = np.full((clip.height, clip.width), 40, dtype=np.uint8)
    x = (i * 3) % (clip.width - 16)
    luma[clip.height // 2 - 8 : clip.height // 2 + 8, x : x + 16] = 110
    return luma


def _sound(clip: SyncClip) -> np.ndarray:
    rate = clip.sample_rate
    total = round(clip.duration_s * rate)
    rng = np.random.default_rng(3)
    out = rng.normal(0, 1e-4, total)  # a noise floor near -80 dBFS, as a real feed has
    length = round(clip.beep_s * rate)
    t = np.arange(length) / rate
    burst = clip.beep_amplitude * np.sin(2 * np.pi * clip.beep_hz * t)
    fade = min(length, round(0.002 * rate))
    burst[-fade:] *= np.linspace(1.0, 0.0, fade)  # a short fade out; the onset stays sharp
    for flash in clip.flash_times():
        start = round((flash + clip.delay_at(flash) / 1000.0) * rate)
        if start < 0 or start + length > total:
            continue
        out[start : start + length] += burst
    return np.repeat(out[None, :], 2, axis=0).astype(np.float32)


def _encode(path: Path, clip: SyncClip) -> None:
    spec = ClipSpec(duration_s=clip.duration_s, fps=clip.fps, width=clip.width, height=clip.height)
    flash_frames = {round(f * clip.fps) for f in clip.flash_times()}
    sound = _sound(clip)
    rate = clip.sample_rate
    with av.open(str(path), mode="w") as container:
        vstream = _video_stream(container, spec)
        astream = container.add_stream("aac", rate=rate)
        astream.layout = "stereo"
        frames = round(clip.duration_s * clip.fps)
        next_sample, block = 0, 1024
        for i in range(frames):
            frame = _yuv(_picture(clip, i, flash_frames))
            frame.pts = i
            for packet in vstream.encode(frame):
                container.mux(packet)
            while next_sample < min(sound.shape[1], (i + 1) * rate // clip.fps):
                next_sample = _encode_audio(container, astream, sound, next_sample, block, rate)
        while next_sample < sound.shape[1]:
            next_sample = _encode_audio(container, astream, sound, next_sample, block, rate)
        for stream in (vstream, astream):
            for packet in stream.encode():
                container.mux(packet)


def _encode_audio(container, astream, sound: np.ndarray, start: int, block: int, rate: int) -> int:  # type: ignore[no-untyped-def]
    samples = np.ascontiguousarray(sound[:, start : start + block])
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
    for packet in astream.encode(frame):
        container.mux(packet)
    return start + samples.shape[1]


def _shift_audio(src: Path, dst: Path, offset_s: float) -> None:
    """Copy the streams, with every audio packet's timestamps moved by `offset_s`."""
    with av.open(str(src)) as inp, av.open(str(dst), mode="w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in (inp.streams.video[0], inp.streams.audio[0])}
        audio_index = inp.streams.audio[0].index
        for packet in inp.demux(list(inp.streams.video[:1]) + list(inp.streams.audio[:1])):
            if packet.dts is None:
                continue
            if packet.stream.index == audio_index:
                shift = round(offset_s / packet.time_base)
                packet.pts += shift
                packet.dts += shift
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


def make_sync_clip(path: str | Path, clip: SyncClip) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.mp4")
    if clip.programme:
        make_clip(tmp, ClipSpec(duration_s=clip.duration_s, fps=clip.fps, width=clip.width, height=clip.height))
    else:
        _encode(tmp, clip)
    if clip.audio_pts_offset_ms:
        _shift_audio(tmp, path, clip.audio_pts_offset_ms / 1000.0)
        tmp.unlink()
    else:
        tmp.replace(path)
    return path


SYNC_CLIPS = {
    "sync_0": SyncClip(delay_ms=0.0),
    "sync_early_120": SyncClip(delay_ms=-120.0),
    "sync_late_100": SyncClip(delay_ms=100.0),
    "sync_late_250": SyncClip(delay_ms=250.0),
    # In step for 4 s, 250 ms late for 4 s (across the 3.3 s and 5 s window boundaries), in step again.
    "sync_step": SyncClip(duration_s=12.0, steps=((4.0, 8.0, 250.0),)),
    # The sync pattern, and the synthetic programme, with the audio track muxed 300 ms late.
    "sync_pts_300": SyncClip(audio_pts_offset_ms=300.0),
    "programme_pts_300": SyncClip(programme=True, audio_pts_offset_ms=300.0),
}


class SyncClipFactory:
    """Encodes each named clip once per test session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, name: str) -> Path:
        path = self.directory / f"{name}.mp4"
        if not path.exists():
            make_sync_clip(path, SYNC_CLIPS[name])
        return path


def mux_unrelated(video_path: Path, audio_path: Path, out: Path, *, duration_s: float) -> Path:
    """Real picture with real but unrelated sound: `duration_s` of the video's packets, copied, and
    the audio file encoded to AAC, looped to the same length. Nothing in it is in or out of sync."""
    with av.open(str(audio_path)) as inp:
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000)
        parts = [f.to_ndarray() for frame in inp.decode(audio=0) for f in resampler.resample(frame)]
    sound = np.concatenate(parts, axis=1)
    total = round(duration_s * 48000)
    sound = np.tile(sound, (1, total // sound.shape[1] + 1))[:, :total].astype(np.float32)
    with av.open(str(video_path)) as inp, av.open(str(out), mode="w") as container:
        vin = inp.streams.video[0]
        vout = container.add_stream_from_template(vin)
        astream = container.add_stream("aac", rate=48000)
        astream.layout = "stereo"
        next_sample = 0
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            if packet.pts is not None and packet.pts * packet.time_base >= duration_s:
                break
            packet.stream = vout
            container.mux(packet)
            while next_sample < min(total, float(packet.dts * packet.time_base) * 48000):
                next_sample = _encode_audio(container, astream, sound, next_sample, 1024, 48000)
        while next_sample < total:
            next_sample = _encode_audio(container, astream, sound, next_sample, 1024, 48000)
        for packet in astream.encode():
            container.mux(packet)
    return out
