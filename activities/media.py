"""Opening sources, probing them and decoding one window with PyAV.

Nothing here knows about Temporal: failures are raised as `UnreadableSourceError`
(the input itself is bad: retrying cannot help) or `SourceUnavailableError`
(the source could not be reached just now: retrying may help).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import av
import av.error
import numpy as np

from detectors import AudioChunk, VideoChunk
from detectors.base import DecodeErrorChunk
from vqa.contracts import AudioInfo, MediaInfo, VideoInfo

# Frames per chunk handed to the detectors: big enough to vectorise over,
# small enough that a 1080p window never sits in memory whole (32 x 2 MB).
VIDEO_CHUNK_FRAMES = 32
AUDIO_CHUNK_SECONDS = 1.0
# Seek this far before a window so the frame just before it is decoded too.
PREROLL_S = 0.25
NETWORK_TIMEOUT_US = 15_000_000
# Decoder threads per window (0: FFmpeg picks). Workers run several windows at
# once, so one thread each is the most efficient when they are busy.
DECODE_THREADS = int(os.environ.get("VQA_DECODE_THREADS", "0"))
_FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"}
_AVCOL_RANGE_JPEG = 2


class UnreadableSourceError(Exception):
    """The source exists but is not media we can analyse, or does not exist at all."""


class SourceUnavailableError(Exception):
    """The source could not be reached now (network, server); a retry may succeed."""


def _open(source: str) -> av.container.InputContainer:
    parsed = urlparse(source)
    scheme = parsed.scheme.lower()
    options: dict[str, str] = {}
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        target = unquote(parsed.path) if scheme == "file" else source
        if not os.path.exists(target):
            raise UnreadableSourceError(f"source not found: {target}")
        if os.path.isdir(target):
            raise UnreadableSourceError(f"source is a directory, not a media file: {target}")
        if os.path.getsize(target) == 0:
            raise UnreadableSourceError(f"source is an empty file: {target}")
    elif scheme in ("http", "https"):
        target = source
        options = {"timeout": str(NETWORK_TIMEOUT_US), "rw_timeout": str(NETWORK_TIMEOUT_US)}
    else:
        raise UnreadableSourceError(f"unsupported source scheme {scheme!r} in {source}")
    try:
        return av.open(target, mode="r", options=options, timeout=NETWORK_TIMEOUT_US / 1e6)
    except av.error.FileNotFoundError as exc:
        raise UnreadableSourceError(f"source not found: {target}") from exc
    except av.error.InvalidDataError as exc:
        raise UnreadableSourceError(f"not a readable media file: {target} ({exc.strerror})") from exc
    except av.error.HTTPNotFoundError as exc:
        raise UnreadableSourceError(f"source not found (HTTP 404): {target}") from exc
    except av.error.HTTPClientError as exc:
        raise UnreadableSourceError(f"source refused by the server: {target} ({exc.strerror})") from exc
    except (av.error.HTTPServerError, av.error.ConnectionRefusedError, av.error.ConnectionResetError) as exc:
        raise SourceUnavailableError(f"source unavailable: {target} ({exc.strerror})") from exc
    except (av.error.TimeoutError, TimeoutError) as exc:
        raise SourceUnavailableError(f"source did not answer in time: {target}") from exc
    except av.error.FFmpegError as exc:
        raise UnreadableSourceError(f"cannot open {target}: {exc.strerror}") from exc
    except OSError as exc:
        raise SourceUnavailableError(f"cannot read {target}: {exc}") from exc


def _video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    for stream in container.streams.video:
        # Cover art and thumbnails are "video" streams of one picture: not the programme.
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        return stream
    return None


def _audio_stream(container: av.container.InputContainer) -> av.AudioStream | None:
    return container.streams.audio[0] if container.streams.audio else None


def _first_frame_time(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Decode until the stream's first frame; None when nothing decodes."""
    try:
        container.seek(0, backward=True, any_frame=False)
    except av.error.FFmpegError:
        pass
    try:
        for packet in container.demux(stream):
            try:
                for frame in packet.decode():
                    return float(frame.time) if frame.time is not None else 0.0
            except (av.error.InvalidDataError, ValueError):
                continue
    except av.error.FFmpegError:
        return None
    return None


def probe(source: str) -> MediaInfo:
    """What the source holds: tracks, duration, and where its timeline starts."""
    container = _open(source)
    try:
        video = _video_stream(container)
        audio = _audio_stream(container)
        if video is None and audio is None:
            raise UnreadableSourceError(f"no audio or video track in {source}")
        firsts: list[float] = []
        for stream in (video, audio):
            if stream is None:
                continue
            t = _first_frame_time(container, stream)
            if t is None:
                raise UnreadableSourceError(
                    f"{stream.type} track of {source} does not decode ({stream.codec_context.name})"
                )
            firsts.append(t)
        start = min(firsts)
        duration = _duration(container, start)
        if duration is None or duration <= 0:
            raise UnreadableSourceError(f"cannot tell the duration of {source}")
        video_info = audio_info = None
        if video is not None:
            rate = video.average_rate or video.guessed_rate or video.base_rate
            video_info = VideoInfo(
                codec=video.codec_context.name,
                width=video.codec_context.width,
                height=video.codec_context.height,
                fps=round(float(rate), 3) if rate else 0.0,
            )
            if video_info.width <= 0 or video_info.height <= 0:
                raise UnreadableSourceError(f"video track of {source} has no picture size")
        if audio is not None:
            audio_info = AudioInfo(
                codec=audio.codec_context.name,
                sample_rate=audio.codec_context.sample_rate,
                channels=audio.codec_context.channels,
            )
        return MediaInfo(
            duration_s=round(duration, 6), video=video_info, audio=audio_info, start_offset_s=round(start, 6)
        )
    finally:
        container.close()


def _duration(container: av.container.InputContainer, start: float) -> float | None:
    if container.duration is not None and container.duration > 0:
        begin = container.start_time / 1e6 if container.start_time is not None else 0.0
        # The container's duration counts from its own start, which can precede the first frame.
        return container.duration / 1e6 - (start - begin)
    ends = []
    for stream in container.streams:
        if stream.duration and stream.time_base:
            s0 = float((stream.start_time or 0) * stream.time_base)
            ends.append(s0 + float(stream.duration * stream.time_base))
    return max(ends) - start if ends else None


@dataclass
class DecodeReport:
    video_frames: int = 0
    audio_samples: int = 0
    decode_errors: int = 0
    previous_luma: np.ndarray | None = None
    previous_time_s: float | None = None


def _luma(frame: av.VideoFrame) -> np.ndarray:
    """The 8-bit luma plane of a frame, as a view when the format allows."""
    name = frame.format.name
    if name.startswith(("yuv", "yuvj", "nv12", "nv21", "gray")) and not any(
        tag in name for tag in ("10", "12", "14", "16", "p9")
    ) and name != "gray16le":
        plane = frame.planes[0]
        buf = np.frombuffer(plane, dtype=np.uint8)
        return buf.reshape(-1, plane.line_size)[: frame.height, : frame.width]
    return frame.to_ndarray(format="gray")


def decode_window(
    source: str,
    media: MediaInfo,
    *,
    start_s: float,
    end_s: float,
    heartbeat: Callable[[float], None] = lambda position: None,
) -> tuple[Iterator[VideoChunk | AudioChunk], DecodeReport]:
    """Decode [start_s, end_s) of the source into detector chunks.

    Returns the chunk iterator and a report filled in as it runs; the report
    holds the last frame before the window by the time the first video chunk
    comes out.
    """
    report = DecodeReport()
    return _decode(source, media, start_s, end_s, heartbeat, report), report


def _decode(
    source: str,
    media: MediaInfo,
    start_s: float,
    end_s: float,
    heartbeat: Callable[[float], None],
    report: DecodeReport,
) -> Iterator[VideoChunk | AudioChunk]:
    container = _open(source)
    try:
        video = _video_stream(container) if media.video else None
        audio = _audio_stream(container) if media.audio else None
        streams = [s for s in (video, audio) if s is not None]
        if video is not None:
            video.thread_type = "AUTO"
            video.thread_count = DECODE_THREADS
        t0 = media.start_offset_s
        if start_s > 0:
            target = max(t0 + start_s - PREROLL_S, 0.0)
            try:
                container.seek(int(target * 1e6), backward=True, any_frame=False)
            except av.error.FFmpegError as exc:
                raise UnreadableSourceError(f"cannot seek to {start_s:.3f}s in {source}: {exc.strerror}") from exc

        video_buffer = _VideoBuffer()
        audio_buffer = _AudioBuffer(start_s=start_s, end_s=end_s)
        resampler = av.AudioResampler(format="fltp") if audio is not None else None
        video_done = video is None
        audio_done = audio is None
        last_before: tuple[np.ndarray, float] | None = None

        errors: dict[str, list[tuple[float, float]]] = {"video": [], "audio": []}

        def error_at(stream: av.stream.Stream, pts: int | None, duration: int | None) -> None:
            if pts is None or stream.time_base is None:
                return
            t = float(pts * stream.time_base) - t0
            if start_s - 1e-6 <= t < end_s - 1e-6:  # earlier ones belong to the window before
                length = float(duration * stream.time_base) if duration else 0.0
                errors[stream.type].append((t, length))
                report.decode_errors += 1

        def frames() -> Iterator[av.VideoFrame | av.AudioFrame]:
            for packet in container.demux(streams):
                try:
                    for frame in packet.decode():
                        if frame.is_corrupt:
                            error_at(packet.stream, frame.pts, packet.duration)
                        yield frame
                except (av.error.InvalidDataError, av.error.UndefinedError, ValueError):
                    # A corrupt packet is a defect of the stream, not a failure of the analysis.
                    error_at(packet.stream, packet.pts, packet.duration)

        def error_chunks() -> Iterator[DecodeErrorChunk]:
            for track, found in errors.items():
                if found:
                    times, durations = zip(*sorted(found))
                    yield DecodeErrorChunk(track=track, times=np.array(times), durations=np.array(durations))  # type: ignore[arg-type]
                    found.clear()

        for frame in frames():
            if frame.time is None:
                continue
            t = float(frame.time) - t0
            if isinstance(frame, av.VideoFrame):
                if video_done:
                    continue
                if t < start_s - 1e-6:
                    last_before = (_luma(frame).copy(), t)
                    continue
                if t >= end_s - 1e-6:
                    video_done = True
                else:
                    if last_before is not None:
                        report.previous_luma, report.previous_time_s = last_before
                        last_before = None
                    report.video_frames += 1
                    for chunk in video_buffer.add(frame, t):
                        heartbeat(t)
                        yield chunk
            else:
                if audio_done or resampler is None:
                    continue
                for converted in resampler.resample(frame):
                    if converted.time is not None:
                        t = float(converted.time) - t0
                    for item in audio_buffer.add(converted.to_ndarray(), t, converted.sample_rate):
                        report.audio_samples += item.samples.shape[1]
                        yield item
                    t += converted.samples / converted.sample_rate
                if audio_buffer.done:
                    audio_done = True
            yield from error_chunks()
            if video_done and audio_done:
                break

        yield from video_buffer.flush()
        for item in audio_buffer.flush():
            report.audio_samples += item.samples.shape[1]
            yield item
        yield from error_chunks()
    except av.error.FFmpegError as exc:
        raise SourceUnavailableError(f"reading {source} failed: {exc.strerror}") from exc
    finally:
        container.close()


class _VideoBuffer:
    """Collects decoded luma planes into chunks.

    One array is reused for every chunk of a window (fresh memory for each would
    cost more in page faults than the copy itself), so a chunk's arrays are valid
    until the next chunk: detectors copy what they keep.
    """

    def __init__(self) -> None:
        self.storage: np.ndarray | None = None
        self.times: list[float] = []
        self.keys: list[bool] = []
        self.full_range = False

    def add(self, frame: av.VideoFrame, t: float) -> list[VideoChunk]:
        luma = _luma(frame)
        out: list[VideoChunk] = []
        if self.storage is not None and self.storage.shape[1:] != luma.shape:
            out.extend(self.flush())  # the picture size changed mid-stream
            self.storage = None
        if self.storage is None:
            self.storage = np.empty((VIDEO_CHUNK_FRAMES, *luma.shape), dtype=np.uint8)
        if not self.times:
            self.full_range = frame.format.name in _FULL_RANGE_FORMATS or frame.color_range == _AVCOL_RANGE_JPEG
        self.storage[len(self.times)] = luma
        self.times.append(t)
        self.keys.append(bool(frame.key_frame) or str(frame.pict_type).endswith("I"))
        if len(self.times) == VIDEO_CHUNK_FRAMES:
            out.extend(self.flush())
        return out

    def flush(self) -> list[VideoChunk]:
        if self.storage is None or not self.times:
            return []
        n = len(self.times)
        chunk = VideoChunk(
            times=np.asarray(self.times, dtype=np.float64),
            luma=self.storage[:n],
            keyframe=np.asarray(self.keys, dtype=bool),
            full_range=self.full_range,
        )
        self.times, self.keys = [], []
        return [chunk]


class _AudioBuffer:
    """Collects samples of [start_s, end_s) into chunks of about a second."""

    def __init__(self, *, start_s: float, end_s: float) -> None:
        self.start_s = start_s
        self.end_s = end_s
        self.parts: list[np.ndarray] = []
        self.parts_start: float | None = None
        self.parts_samples = 0
        self.rate = 0
        self.done = False

    def add(self, samples: np.ndarray, t: float, rate: int) -> list[AudioChunk]:
        out: list[AudioChunk] = []
        n = samples.shape[1]
        first = max(0, math.ceil((self.start_s - t) * rate - 1e-6))
        last = min(n, math.ceil((self.end_s - t) * rate - 1e-6))
        if last <= 0 or first >= n:
            if t + n / rate >= self.end_s:
                self.done = True
            return out
        if last < n:
            self.done = True
        piece = samples[:, first:last]
        piece_start = t + first / rate
        expected = None if self.parts_start is None else self.parts_start + self.parts_samples / self.rate
        if self.parts and (rate != self.rate or piece.shape[0] != self.parts[0].shape[0] or (
            expected is not None and abs(piece_start - expected) > 1.5 / rate
        )):
            # A gap or a format change starts a new chunk so sample times stay exact.
            out.extend(self.flush())
        if not self.parts:
            self.parts_start, self.rate = piece_start, rate
        self.parts.append(np.ascontiguousarray(piece, dtype=np.float32))
        self.parts_samples += piece.shape[1]
        if self.parts_samples >= AUDIO_CHUNK_SECONDS * rate:
            out.extend(self.flush())
        return out

    def flush(self) -> list[AudioChunk]:
        if not self.parts or self.parts_start is None:
            return []
        samples = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts, axis=1)
        chunk = AudioChunk(start_s=self.parts_start, sample_rate=self.rate, samples=samples)
        self.parts, self.parts_start, self.parts_samples = [], None, 0
        return [chunk]
