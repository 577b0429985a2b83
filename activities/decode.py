"""Probing a source and decoding one window with PyAV: demux, decode, and hand the
detectors chunks of frames and samples.

Nothing here knows about Temporal: failures are raised as `UnreadableSourceError`
(the input itself is bad: retrying cannot help) or `SourceUnavailableError`
(the source could not be reached just now: retrying may help).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import av
import av.error
import numpy as np

from detectors import AudioChunk, VideoChunk
from detectors.base import DecodeErrorChunk, FrameStack, coarse_stride
from vqa.contracts import AudioInfo, MediaInfo, VideoInfo
from vqa.settings import Settings

from .errors import SourceUnavailableError, UnreadableSourceError
from .sources import hls, open_source

# Frames per chunk handed to the detectors: big enough to vectorise over,
# small enough that a 1080p window never sits in memory whole (32 x 2 MB).
VIDEO_CHUNK_FRAMES = 32
AUDIO_CHUNK_SECONDS = 1.0
# HLS: also read the segment(s) this far before a window, for the frame just before it.
PREROLL_S = 0.25
_FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p"}
_AVCOL_RANGE_JPEG = 2
_PICTURE_I = av.video.frame.PictureType.I  # intra-coded, keyframe or not



class DecoderThreads:
    """How many threads each window's video decoder gets.

    A window decoding alone lets FFmpeg use every core (the fastest window); once
    the worker decodes as many windows at once as it has cores, each gets one
    thread: frame threading costs CPU per frame, which a busy worker would rather
    spend on another stream.
    `VQA_DECODE_THREADS=N` (settings.decode_threads, given to `acquire`) fixes the count instead.
    """

    def __init__(self, fixed: int = 0, cores: int | None = None) -> None:
        self.fixed = fixed
        self.cores = cores or os.cpu_count() or 1
        self.decoding = 0
        self._lock = threading.Lock()

    def acquire(self, fixed: int = 0) -> int:
        """A window starts decoding: its thread count (0: FFmpeg picks one per core)."""
        with self._lock:
            self.decoding += 1
            if fixed > 0 or self.fixed > 0:
                return fixed or self.fixed
            if self.decoding == 1:
                return 0
            return max(1, self.cores // self.decoding)

    def release(self) -> None:
        with self._lock:
            self.decoding -= 1


DECODER_THREADS = DecoderThreads()


def _video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    for stream in container.streams.video:
        # Cover art and thumbnails are "video" streams of one picture: not the programme.
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        return stream
    return None


def _audio_stream(container: av.container.InputContainer) -> av.AudioStream | None:
    return container.streams.audio[0] if container.streams.audio else None


def _codec_name(stream: av.stream.Stream) -> str:
    """The codec's name, or what the container calls it when FFmpeg has no decoder for it."""
    if stream.codec_context is not None:
        return str(stream.codec_context.name)
    tag = stream.metadata.get("codec_tag") or stream.metadata.get("CODEC_ID")
    return f"unsupported codec{f' {tag}' if tag else ''}"


def _first_frame_times(container: av.container.InputContainer, streams: list[av.stream.Stream]) -> dict[int, float]:
    """Time of each stream's first decodable frame, in one pass from the start (works unseekable too)."""
    firsts: dict[int, float] = {}
    try:
        for packet in container.demux(streams):
            if packet.stream.index in firsts:
                continue
            try:
                for frame in packet.decode():
                    firsts[packet.stream.index] = float(frame.time) if frame.time is not None else 0.0
                    break
            except (av.error.InvalidDataError, ValueError):
                continue
            if len(firsts) == len(streams):
                break
    except av.error.FFmpegError:
        pass
    return firsts


def probe(source: str, *, settings: Settings | None = None) -> MediaInfo:
    """What the source holds: tracks, duration, and where its timeline starts."""
    playlist = hls.load_playlist(source, settings=settings) if hls.is_hls(source) else None
    container = open_source(source, settings=settings, segments=playlist.segments[:2] if playlist else None)
    try:
        video = _video_stream(container)
        audio = _audio_stream(container)
        if video is None and audio is None:
            raise UnreadableSourceError(f"no audio or video track in {source}")
        present = [st for st in (video, audio) if st is not None]
        found = _first_frame_times(container, present)
        for stream in present:
            if stream.index not in found:
                raise UnreadableSourceError(
                    f"{stream.type} track of {source} does not decode ({_codec_name(stream)})"
                )
        start = min(found.values())
        duration = playlist.duration_s if playlist else _duration(container, start)
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
            duration_s=round(duration, 6),
            video=video_info,
            audio=audio_info,
            start_offset_s=round(start, 6),
            live=bool(playlist and not playlist.ended),
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


# How far before a window a seek retries when it landed past the window's start.
_SEEK_BACKOFF_S = (0.0, 1.0, 3.0, 8.0, 20.0)


def _seek_before(container: av.container.InputContainer, stream: av.stream.Stream | None, target: float) -> None:
    """Seek so that decoding starts at a keyframe at or before `target` (seconds).

    A backward seek can still land after its target: MPEG-TS (and other formats
    without an index) seek by byte position, and the first keyframe found there may
    lie past it, which would lose the window's first frames. The first keyframe
    after each seek is checked, and the seek retried earlier until it comes first.
    """
    for back in _SEEK_BACKOFF_S:
        position = max(0.0, target - back)
        container.seek(int(position * 1e6), backward=True, any_frame=False)
        if stream is None or position == 0.0 or back == _SEEK_BACKOFF_S[-1]:
            return
        first = _first_key_time(container, stream)
        if first is None or first <= target + 1e-6:
            container.seek(int(position * 1e6), backward=True, any_frame=False)  # from there again
            return


def _first_key_time(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Time of the first keyframe packet of `stream` read from the current position."""
    for packet in container.demux(stream):
        if packet.pts is None or packet.time_base is None:
            if packet.size == 0:
                return None  # the end of the file
            continue
        if packet.is_keyframe:
            return float(packet.pts * packet.time_base)
    return None


@dataclass
class DecodeReport:
    video_frames: int = 0
    # Decoded from the keyframe the seek found up to the window start, and dropped.
    video_frames_before: int = 0
    audio_samples: int = 0
    decode_errors: int = 0
    previous_luma: np.ndarray | None = None
    previous_time_s: float | None = None
    # A live window can end the stream (the playlist ended) or be cut short by a stall.
    end_s: float | None = None
    stream_ended: bool = False
    live_edge_s: float | None = None


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
    settings: Settings | None = None,
) -> tuple[Iterator[VideoChunk | AudioChunk | DecodeErrorChunk], DecodeReport]:
    """Decode [start_s, end_s) of the source into detector chunks.

    Returns the chunk iterator and a report filled in as it runs; the report
    holds the last frame before the window by the time the first video chunk
    comes out.
    """
    window = _Window(source, media, start_s=start_s, end_s=end_s, heartbeat=heartbeat, settings=settings or Settings())
    return window.chunks(), window.report


def _open_window(window: _Window) -> av.container.InputContainer | None:
    """The source opened for the window; an HLS playlist also tells where the stream ends.
    None: a live stream delivered nothing for this window (an outage: signal_loss tells)."""
    source, media, report = window.source, window.media, window.report
    if not hls.is_hls(source):
        return open_source(source, settings=window.settings)
    if media.live:
        playlist, _stalled = hls.wait_for_coverage(
            source, window.end_s, stall_s=window.settings.live_stall_s, heartbeat=window.heartbeat, settings=window.settings
        )
    else:
        playlist = hls.load_playlist(source, settings=window.settings)
    report.live_edge_s = playlist.duration_s
    if playlist.ended and playlist.duration_s <= window.end_s + 1e-6:
        report.stream_ended, report.end_s = True, max(window.start_s, playlist.duration_s)
        window.end_s = report.end_s
    segments = hls.segments_for(playlist, window.start_s, window.end_s, PREROLL_S + 1.0)
    if not segments and media.live and playlist.segments:
        return None
    return open_source(source, settings=window.settings, segments=segments)


class _Window:
    """One window's decode: demux, decode, and cut what falls in the window into chunks."""

    def __init__(
        self, source: str, media: MediaInfo, *, start_s: float, end_s: float,
        heartbeat: Callable[[float], None], settings: Settings,
    ) -> None:
        self.source, self.media, self.settings, self.heartbeat = source, media, settings, heartbeat
        self.start_s, self.end_s = start_s, end_s
        self.report = DecodeReport()
        self.errors = _DecodeErrors(self.report, start_s=start_s, end_s=end_s, t0=media.start_offset_s)

    def chunks(self) -> Iterator[VideoChunk | AudioChunk | DecodeErrorChunk]:
        container = _open_window(self)
        if container is None:
            return
        threads = 0
        try:
            video = _video_stream(container) if self.media.video else None
            audio = _audio_stream(container) if self.media.audio else None
            if video is not None:
                video.thread_type = "AUTO"
                video.thread_count = DECODER_THREADS.acquire(self.settings.decode_threads)
                threads = 1
            if self.start_s > 0 and not hls.is_hls(self.source):
                self._seek(container, video or audio)
            yield from self._cut(container, video, audio)
        except av.error.FFmpegError as exc:
            raise SourceUnavailableError(f"reading {self.source} failed: {exc.strerror}") from exc
        finally:
            container.close()
            if threads:
                DECODER_THREADS.release()

    def _seek(self, container: av.container.InputContainer, stream: av.stream.Stream | None) -> None:
        # To the keyframe at or before the window: a window that starts on a keyframe
        # (encoders place them every second or two) decodes nothing twice.
        try:
            _seek_before(container, stream, self.media.start_offset_s + self.start_s)
        except av.error.FFmpegError as exc:
            raise UnreadableSourceError(f"cannot seek to {self.start_s:.3f}s in {self.source}: {exc.strerror}") from exc

    def _frames(self, container: av.container.InputContainer, streams: list[av.stream.Stream]) -> Iterator[av.frame.Frame]:
        for packet in container.demux(streams):
            try:
                for frame in packet.decode():
                    if frame.is_corrupt:
                        self.errors.at(packet.stream, frame.pts, packet.duration)
                    yield frame
            except (av.error.InvalidDataError, av.error.UndefinedError, ValueError):
                # A corrupt packet is a defect of the stream, not a failure of the analysis.
                self.errors.at(packet.stream, packet.pts, packet.duration)

    def _cut(
        self, container: av.container.InputContainer, video: av.VideoStream | None, audio: av.AudioStream | None
    ) -> Iterator[VideoChunk | AudioChunk | DecodeErrorChunk]:
        pictures = _VideoCut(self, video.codec_context) if video is not None else None
        sound = _AudioCut(self) if audio is not None else None
        t0 = self.media.start_offset_s
        for frame in self._frames(container, [s for s in (video, audio) if s is not None]):
            if frame.time is None:
                continue
            cut = pictures if isinstance(frame, av.VideoFrame) else sound
            if cut is not None and not cut.done:
                yield from cut.add(frame, float(frame.time) - t0)
            yield from self.errors.chunks()
            if (pictures is None or pictures.done) and (sound is None or sound.done):
                break
        for cut in (pictures, sound):
            if cut is not None:
                yield from cut.flush()
        yield from self.errors.chunks()


class _DecodeErrors:
    """Corrupt packets and frames inside the window, handed on as DecodeErrorChunks."""

    def __init__(self, report: DecodeReport, *, start_s: float, end_s: float, t0: float) -> None:
        self.report, self.start_s, self.end_s, self.t0 = report, start_s, end_s, t0
        self.found: dict[str, list[tuple[float, float]]] = {"video": [], "audio": []}

    def at(self, stream: av.stream.Stream, pts: int | None, duration: int | None) -> None:
        if pts is None or stream.time_base is None:
            return
        t = float(pts * stream.time_base) - self.t0
        if self.start_s - 1e-6 <= t < self.end_s - 1e-6:  # earlier ones belong to the window before
            length = float(duration * stream.time_base) if duration else 0.0
            self.found[stream.type].append((t, length))
            self.report.decode_errors += 1

    def chunks(self) -> Iterator[DecodeErrorChunk]:
        for track, found in self.found.items():
            if found:
                times, durations = zip(*sorted(found))
                yield DecodeErrorChunk(track=track, times=np.array(times), durations=np.array(durations))  # type: ignore[arg-type]
                found.clear()


class _VideoCut:
    """Video frames: those before the window keep only the last (the frame the window's
    first is compared with); those inside go to the chunk buffer."""

    def __init__(self, window: _Window, codec: Any) -> None:
        self.window, self.report = window, window.report
        self.buffer = _VideoBuffer(codec)
        self.last_before: tuple[np.ndarray, float] | None = None
        self.done = False

    def add(self, frame: av.VideoFrame, t: float) -> Iterator[VideoChunk]:
        if t < self.window.start_s - 1e-6:
            self.report.video_frames_before += 1
            self.last_before = (_luma(frame).copy(), t)
            return
        if t >= self.window.end_s - 1e-6:
            self.done = True
            return
        if self.last_before is not None:
            self.report.previous_luma, self.report.previous_time_s = self.last_before
            self.last_before = None
        self.report.video_frames += 1
        for chunk in self.buffer.add(frame, t):
            self.window.heartbeat(t)
            yield chunk

    def flush(self) -> Iterator[VideoChunk]:
        yield from self.buffer.flush()


class _AudioCut:
    """Audio frames, as planar float, into the window's one-second chunks."""

    def __init__(self, window: _Window) -> None:
        self.report, self.t0 = window.report, window.media.start_offset_s
        self.buffer = _AudioBuffer(start_s=window.start_s, end_s=window.end_s)
        self.resampler = av.AudioResampler(format="fltp")
        self.done = False

    def add(self, frame: av.AudioFrame, t: float) -> Iterator[AudioChunk]:
        # Most decoders already give planar float: convert only the others.
        for converted in [frame] if frame.format.name == "fltp" else self.resampler.resample(frame):
            if converted.time is not None:
                t = float(converted.time) - self.t0
            yield from self._counted(self.buffer.add(converted.to_ndarray(), t, converted.sample_rate))
            t += converted.samples / converted.sample_rate
        if self.buffer.done:
            self.done = True

    def flush(self) -> Iterator[AudioChunk]:
        yield from self._counted(self.buffer.flush())

    def _counted(self, items: list[AudioChunk] | Iterator[AudioChunk]) -> Iterator[AudioChunk]:
        for item in items:
            self.report.audio_samples += item.samples.shape[1]
            yield item


# FFmpeg's AVFieldOrder: top or bottom field first in time (coded order aside).
_FIELD_ORDERS = {2: "tff", 4: "tff", 3: "bff", 5: "bff"}


class _VideoBuffer:
    """Collects decoded frames into chunks of luma views: the frames stay alive while
    their chunk is analysed, so no full picture is copied unless a detector asks."""

    def __init__(self, codec: Any = None) -> None:
        self.codec = codec  # the video decoder: its field order is read when an interlaced chunk is made
        self.frames: list[av.VideoFrame] = []
        self.planes: list[np.ndarray] = []
        self.times: list[float] = []
        self.keys: list[bool] = []
        self.full_range = False
        self.coarse: np.ndarray | None = None
        self.interlaced = False

    def add(self, frame: av.VideoFrame, t: float) -> list[VideoChunk]:
        luma = _luma(frame)
        out: list[VideoChunk] = []
        if self.planes and (self.planes[0].shape != luma.shape or self.interlaced != frame.interlaced_frame):
            out.extend(self.flush())  # the picture size or its scan changed mid-stream
        if not self.times:
            self.full_range = frame.format.name in _FULL_RANGE_FORMATS or frame.color_range == _AVCOL_RANGE_JPEG
            self.interlaced = bool(frame.interlaced_frame)
            step = coarse_stride(luma.shape[0])
            self.coarse = np.empty((VIDEO_CHUNK_FRAMES, *luma[::step, ::step].shape), dtype=np.uint8)
        # The coarse picture the whole-picture detectors share, taken now, while the frame
        # the decoder just wrote is still in the CPU's cache (later it costs a trip to memory).
        assert self.coarse is not None
        step = coarse_stride(luma.shape[0])
        self.coarse[len(self.planes)] = luma[::step, ::step]
        self.frames.append(frame)
        self.planes.append(luma)
        self.times.append(t)
        self.keys.append(bool(frame.key_frame) or frame.pict_type == _PICTURE_I)
        if len(self.times) == VIDEO_CHUNK_FRAMES:
            out.extend(self.flush())
        return out

    def _field_order(self) -> str | None:
        """The chunk's field order: the decoder's once it has said, else top field first
        (most interlaced formats; 576i DV aside)."""
        if not self.interlaced:
            return None
        order = int(getattr(self.codec, "field_order", 0) or 0)
        return _FIELD_ORDERS.get(order, "tff")

    def flush(self) -> list[VideoChunk]:
        if not self.times:
            return []
        assert self.coarse is not None
        chunk = VideoChunk(
            times=np.asarray(self.times, dtype=np.float64),
            luma=FrameStack(self.planes),
            keyframe=np.asarray(self.keys, dtype=bool),
            full_range=self.full_range,
            coarse=self.coarse[: len(self.planes)],
            interlaced=self.interlaced,
            field_order=self._field_order(),
        )
        self.frames, self.planes, self.times, self.keys, self.coarse = [], [], [], [], None
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
