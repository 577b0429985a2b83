"""Evidence for each defect: a small JPEG thumbnail (video) or a short WAV snippet (audio).

Made inside `analyze_window` from what the window already decoded: while the
detectors run, the activity keeps small copies (a strided luma thumbnail every
few frames, the audio decimated to about 16 kHz), and after they finish it
writes one object per defect that the window reports for the first time,

    <results>/<stream_id>/evidence/<event id, sanitised>.jpg | .wav

A defect is first reported either as `opened` (it is still going at the end
of the window) or as `closed` (it began and ended before being announced): that
window writes the evidence, from the defect's first frame or samples it saw;
later windows only link it (the key is derived from the event's id, so a
retried window overwrites the same object). The link is `details["evidence"]`.
A clean window keeps its copies in memory and writes nothing; `signal_loss` and
`av_sync` get no evidence (no media, or two tracks: nothing one picture shows).
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from detectors import AudioChunk, VideoChunk
from vqa.contracts import DefectEvent
from vqa.settings import Settings

from .results import evidence_name, evidence_uri, store_evidence

# Thumbnails kept per window (evenly over its span) and their largest width.
MAX_THUMBNAILS = 200
THUMBNAIL_WIDTH = 192
# Audio kept at about this rate (an integer decimation of the source's).
SNIPPET_RATE = 16000
SNIPPET_S = 2.0
NO_EVIDENCE_KINDS = {"signal_loss", "av_sync"}


def has_evidence(event: DefectEvent) -> bool:
    track = event.defect.track
    return event.defect.kind not in NO_EVIDENCE_KINDS and (track in ("video", "audio") or track.startswith("audio:"))


@dataclass
class _Snippet:
    start_s: float
    rate: int
    samples: np.ndarray  # (channels, n) int16


@dataclass
class EvidenceRecorder:
    """Small copies of one window's decoded media, enough to illustrate any defect in it."""

    start_s: float
    end_s: float
    thumbnails: list[tuple[float, np.ndarray]] = field(default_factory=list)
    audio: dict[str, list[_Snippet]] = field(default_factory=dict)  # by track: "audio", "audio:N"

    def add_video(self, chunk: VideoChunk) -> None:
        spacing = max(0.0, (self.end_s - self.start_s) / MAX_THUMBNAILS)
        last = self.thumbnails[-1][0] if self.thumbnails else -math.inf
        for i, t in enumerate(chunk.times.tolist()):
            if t >= last + spacing - 1e-9 or last < self.start_s:
                self.thumbnails.append((t, _thumbnail(chunk.luma[i], full_range=chunk.full_range)))
                last = t

    def add_audio(self, chunk: AudioChunk) -> None:
        step = max(1, chunk.sample_rate // SNIPPET_RATE)
        pcm = np.clip(np.round(chunk.samples[:, ::step] * 32767.0), -32768, 32767).astype(np.int16)
        snippet = _Snippet(start_s=chunk.start_s, rate=chunk.sample_rate // step, samples=pcm)
        self.audio.setdefault(chunk.track, []).append(snippet)

    def encode(self, event: DefectEvent) -> tuple[bytes, str] | None:
        """The evidence of one event (body, content type), or None when this window saw none of it."""
        d = event.defect
        t0 = max(d.start_s, self.start_s)
        if d.track == "video":
            inside = [(t, y) for t, y in self.thumbnails if t0 - 1e-6 <= t <= d.end_s + 1e-6]
            before = [(t, y) for t, y in self.thumbnails if t <= d.end_s + 1e-6]
            chosen = inside[0] if inside else (before[-1] if before else None)
            return (encode_jpeg(chosen[1]), "image/jpeg") if chosen else None
        end = min(t0 + SNIPPET_S, d.end_s) if d.end_s - t0 >= 0.1 else t0 + SNIPPET_S
        parts = []
        for snippet in self.audio.get(d.track, []):
            first = max(0, math.ceil((t0 - snippet.start_s) * snippet.rate - 1e-6))
            last = min(snippet.samples.shape[1], math.ceil((end - snippet.start_s) * snippet.rate - 1e-6))
            if last > first and (not parts or parts[0].rate == snippet.rate):
                parts.append(_Snippet(snippet.start_s + first / snippet.rate, snippet.rate, snippet.samples[:, first:last]))
        if not parts:
            return None
        return encode_wav(np.concatenate([p.samples for p in parts], axis=1), parts[0].rate), "audio/wav"


def _thumbnail(luma: np.ndarray, *, full_range: bool) -> np.ndarray:
    step = max(1, math.ceil(luma.shape[1] / THUMBNAIL_WIDTH))
    small = luma[::step, ::step]
    small = small[: small.shape[0] // 2 * 2, : small.shape[1] // 2 * 2]  # 4:2:0 JPEG wants even sizes
    if full_range:
        return np.ascontiguousarray(small)
    # Limited-range (16-235) luma stretched to the full range a JPEG viewer expects.
    return np.clip((small.astype(np.int16) - 16) * 255 // 219, 0, 255).astype(np.uint8)


def encode_jpeg(luma: np.ndarray) -> bytes:
    """A grey JPEG of one luma picture, with FFmpeg's MJPEG encoder (no image library needed)."""
    height, width = luma.shape
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(luma), format="gray").reformat(format="yuvj420p")
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


def encode_wav(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV of (channels, n) int16 samples."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(samples.shape[0])
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(samples.T).astype("<i2").tobytes())
    return out.getvalue()


def attach_evidence(
    events: list[DefectEvent], recorder: EvidenceRecorder, *, location: str, stream_id: str, already_reported: set[str],
    settings: Settings | None = None,
) -> None:
    """Write the evidence of the events first reported in this window; link it from every event that has one."""
    for event in events:
        if not has_evidence(event):
            continue
        uri = evidence_uri(location, stream_id, evidence_name(event.id, event.defect.track))
        if event.id not in already_reported:
            encoded = recorder.encode(event)
            if encoded is None:
                continue  # this window saw none of its media: nothing to show, nothing linked
            store_evidence(uri, encoded[0], content_type=encoded[1], settings=settings)
        event.defect.details["evidence"] = uri
