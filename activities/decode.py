"""Probing a source and decoding one window with PyAV: demux, decode, and hand the
detectors chunks of frames and samples.

Nothing here knows about Temporal: failures are raised as `UnreadableSourceError`
(the input itself is bad: retrying cannot help) or `SourceUnavailableError`
(the source could not be reached just now: retrying may help).
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import av
import av.error
import numpy as np

from detectors import AudioChunk, VideoChunk
from detectors.base import DecodeErrorChunk, FrameStack, coarse_stride
from vqa.contracts import AudioInfo, MediaInfo, VideoInfo
from vqa.settings import Settings

from .errors import MediaNotFoundError, SourceUnavailableError, UnreadableSourceError
from .sources import hls, load_playlist, open_source, segmented

# Frames per chunk handed to the detectors: big enough to vectorise over,
# small enough that a 1080p window never sits in memory whole (32 x 2 MB).
VIDEO_CHUNK_FRAMES = 32
AUDIO_CHUNK_SECONDS = 1.0
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


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory a window frees for the next one.

    Each window opens its own decoder, whose frame pool allocates a few dozen pictures
    (1080p: 3 MB each). By default glibc serves such blocks with fresh mmaps and returns
    them on free, so every window faults its pool's pages in again. From the heap, below a
    high trim threshold, the next window reuses them. Returns whether the allocator took the settings (False where it is not glibc's).
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(mallopt(m_trim_threshold, 512 * 1024 * 1024))


keep_freed_memory()


def _video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    for stream in container.streams.video:
        # Cover art and thumbnails are "video" streams of one picture: not the programme.
        if stream.disposition & av.stream.Disposition.attached_pic:
            continue
        return stream
    return None


def _audio_stream(container: av.container.InputContainer) -> av.AudioStream | None:
    return container.streams.audio[0] if container.streams.audio else None


def _audio_info(stream: av.AudioStream, index: int) -> AudioInfo:
    language = str(stream.metadata.get("language") or "").strip()
    return AudioInfo(
        codec=stream.codec_context.name,
        sample_rate=stream.codec_context.sample_rate,
        channels=stream.codec_context.channels,
        index=index,
        language=language if language and language.lower() != "und" else None,  # "und": undetermined
    )


def _audio_tracks(container: av.container.InputContainer, media: MediaInfo) -> list[tuple[str, av.AudioStream]]:
    """The audio tracks the probe found, each with its name on defects: "audio" (the first), "audio:N"."""
    streams = container.streams.audio
    found = [("audio", media.audio)] if media.audio is not None else []
    found += [(f"audio:{info.index}", info) for info in media.audio_tracks]
    return [(track, streams[info.index]) for track, info in found if info is not None and info.index < len(streams)]


def _codec_name(stream: av.stream.Stream) -> str:
    """The codec's name, or what the container calls it when FFmpeg has no decoder for it."""
    if stream.codec_context is not None:
        return str(stream.codec_context.name)
    tag = stream.metadata.get("codec_tag") or stream.metadata.get("CODEC_ID")
    return f"unsupported codec{f' {tag}' if tag else ''}"


# Packets read past the first frames of the tracks a source needs, looking for its other audio tracks'.
_PROBE_EXTRA_PACKETS = 500


def _first_frame_times(
    container: av.container.InputContainer, streams: list[av.stream.Stream], optional: tuple[av.stream.Stream, ...] = ()
) -> dict[int, float]:
    """Time of each stream's first decodable frame, in one pass from the start (works unseekable too);
    an `optional` stream's only if found soon after the others'."""
    firsts: dict[int, float] = {}
    required = {s.index for s in streams}
    extra = 0
    try:
        for packet in container.demux([*streams, *optional]):
            if required <= firsts.keys():
                extra += 1
                if extra > _PROBE_EXTRA_PACKETS:
                    break
            if packet.stream.index in firsts:
                continue
            try:
                for frame in packet.decode():
                    firsts[packet.stream.index] = float(frame.time) if frame.time is not None else 0.0
                    break
            except (av.error.InvalidDataError, ValueError):
                continue
            if len(firsts) == len(streams) + len(optional):
                break
    except av.error.FFmpegError:
        pass
    return firsts


def probe(source: str, *, settings: Settings | None = None) -> MediaInfo:
    """What the source holds: tracks, duration, and where its timeline starts."""
    playlist = load_playlist(source, settings=settings) if segmented(source) else None
    container = open_source(source, settings=settings, segments=playlist.segments[:2] if playlist else None)
    try:
        video = _video_stream(container)
        audio = _audio_stream(container)
        if video is None and audio is None:
            raise UnreadableSourceError(f"no audio or video track in {source}")
        present = [st for st in (video, audio) if st is not None]
        others = tuple(container.streams.audio[1:])  # analysed when they decode; never required
        found = _first_frame_times(container, present, others)
        for stream in present:
            if stream.index not in found:
                raise UnreadableSourceError(
                    f"{stream.type} track of {source} does not decode ({_codec_name(stream)})"
                )
        start = min(found[stream.index] for stream in present)
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
            audio_info = _audio_info(audio, 0)
        return MediaInfo(
            duration_s=round(duration, 6),
            video=video_info,
            audio=audio_info,
            audio_tracks=[_audio_info(st, n) for n, st in enumerate(others, 1) if st.index in found],
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
    # Frames the decoder gave that belong to a neighbour: at a boundary of an open GOP (HEVC CRA,
    # H.264 open GOP, MPEG-2), the next window's first keyframe is decoded as the reference of
    # this window's last pictures, then dropped. 0 on closed-GOP streams.
    video_frames_dropped: int = 0
    # Video packets read before the window's first keyframe and skipped, never decoded.
    video_packets_skipped: int = 0
    audio_samples: int = 0
    decode_errors: int = 0
    # Where the window began and ended on the stream's timeline: on the video's keyframes
    # (K(start), K(end)); None until found.
    start_s: float | None = None
    span_end_s: float | None = None
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
    is_last: bool = False,
    align: bool = True,
    audio_warm_up_s: float = 0.0,
    heartbeat: Callable[[float], None] = lambda position: None,
    settings: Settings | None = None,
) -> tuple[Iterator[VideoChunk | AudioChunk | DecodeErrorChunk], DecodeReport]:
    """Decode the window [K(start_s), K(end_s)) of the source into detector chunks, K(t) being
    the first video keyframe at or after t (a stream without video: t itself). The window from 0 s
    starts at the stream's first frame; the last (`is_last`) runs to the stream's end.

    Packets before K(start_s) are skipped unread by the decoder; decoding stops at the first
    packet of the next window. Consecutive windows so decode every frame exactly once. Returns the
    chunk iterator and a report filled in as it runs (its start_s/span_end_s: the window found).
    `align=False`: [start_s, end_s) exactly, decoded from the keyframe before it (what a
    per-second media converter does; bench/'s baseline).
    `audio_warm_up_s`: the sound of that many seconds before the window comes first, as
    `warm_up` chunks (audio is cheap to decode; the video before the window is still skipped).
    """
    window = _Window(
        source, media, start_s=start_s, end_s=end_s, is_last=is_last, align=align, heartbeat=heartbeat,
        settings=settings or Settings(),
    )
    window.warm_up_s = audio_warm_up_s if start_s > 0 and media.audio is not None else 0.0
    return window.chunks(), window.report


def _open_window(window: _Window) -> av.container.InputContainer | None:
    """The source opened for the window; a segmented one (an HLS playlist, a DASH Representation)
    also tells where the stream ends. None: a live stream delivered nothing for this window (an
    outage: signal_loss tells)."""
    source, media, report = window.source, window.media, window.report
    playlist_format = segmented(source)
    if playlist_format is None:
        return open_source(source, settings=window.settings)
    if media.live:
        playlist, _stalled = hls.wait_for_coverage(
            source, window.end_s, stall_s=window.settings.live_stall_s, heartbeat=window.heartbeat, settings=window.settings,
            load=playlist_format.load,
        )
    else:
        playlist = playlist_format.load(source, settings=window.settings)
    report.live_edge_s = playlist.duration_s
    if playlist.ended and playlist.duration_s <= window.end_s + 1e-6:
        report.stream_ended, report.end_s = True, max(window.start_s, playlist.duration_s)
        window.end_s = report.end_s
        window.bounds.run_to_end(report.end_s)
    # Segments start on keyframes: those overlapping the window hold its first keyframe, and
    # its data ends where the next window's first keyframe is.
    segments = hls.segments_for(playlist, max(0.0, window.start_s - window.warm_up_s), window.end_s)
    if not segments and media.live and playlist.segments:
        return None
    try:
        # A live segment that answers not-found (a CDN lost it) is a gap in the media, not the end.
        return open_source(source, settings=window.settings, segments=segments, skip_missing=media.live)
    except MediaNotFoundError:
        if not media.live:
            raise
        return None  # every segment of the window is lost: an outage, signal_loss tells


class _Bounds:
    """Where the window begins and ends, found on the video's keyframe packets as they are
    demuxed, and what to do with each video packet: skip it, decode it, or stop."""

    def __init__(
        self, *, start_s: float, end_s: float, from_start: bool, to_end: bool, video: bool, align: bool = True
    ) -> None:
        self.nominal_start, self.nominal_end = start_s, end_s
        self.to_end, self.align = to_end, align
        # Not aligned (the per-second baseline of bench/): decoded from the keyframe before, cut at the nominal times.
        self.start: float | None = start_s if from_start or not align else None
        self.end: float | None = math.inf if to_end else None
        self.held: av.Packet | None = None  # the next window's first keyframe, decoded only as a reference
        self.video_done = False
        if not video:
            self.without_video()

    def without_video(self) -> None:
        """No picture to align on: the window is its nominal span."""
        self.video_done = True
        self.start = self.nominal_start if self.start is None else self.start
        self.end = self.nominal_end if self.end is None else self.end

    def video_packet(self, packet: av.Packet, t: float | None) -> list[av.Packet]:
        """The packets to decode now, given the next video packet (`t`: its time on the timeline)."""
        if self.video_done:
            return []
        if self.start is None:
            if not (packet.is_keyframe and t is not None and t >= self.nominal_start - 1e-6):
                return []  # before the window's first keyframe: skipped, never decoded
            self.start = t
            if not self.to_end and t >= self.nominal_end - 1e-6:
                # No keyframe in the nominal span (a GOP longer than the window): K(start) is
                # K(end), the next window's first frame. This window is empty.
                self.end, self.video_done = t, True
                return []
            return [packet]
        if self.held is not None:
            if t is not None and t < self.end - 1e-6:  # type: ignore[operator]
                # A leading picture of an open GOP: shown before the keyframe it follows, it is
                # this window's, and needs that keyframe decoded.
                held, self.held = self.held, None
                return [held, packet]
            self.video_done = True
            return []
        if self.end is None and packet.is_keyframe and t is not None and t >= self.nominal_end - 1e-6:
            self.end = t  # the next window's first keyframe
            self.held = packet
            return []
        if self.end is not None and t is not None and t >= self.end - 1e-6:
            # After the leading pictures: the next window's own.
            self.video_done = True
            return []
        return [packet]

    def cut(self) -> tuple[float, float]:
        """The times a frame or sample must lie within to be this window's, as far as known now."""
        start = self.start if self.start is not None else self.nominal_start
        end = self.end if self.end is not None else math.inf
        return start, (end if self.align or self.to_end else self.nominal_end)

    def run_to_end(self, end_s: float) -> None:
        """The stream ends at `end_s` (a live playlist ended): the window takes all that is left."""
        self.nominal_end, self.to_end, self.end = end_s, True, math.inf

    def finish(self, data_end_s: float | None) -> None:
        """The data ran out. A start not found (no keyframe in it): the window is empty, at the
        data's end. An end not found: where the data ended (the stream's end, or the end of the
        last HLS segment read, where the next segment's first keyframe is)."""
        fallback = data_end_s if data_end_s is not None else self.nominal_end
        if self.start is None:
            self.start = max(self.nominal_start, fallback)
        if self.to_end or not self.align:
            self.end = max(self.nominal_end, self.start)
        elif self.end is None:
            self.end = max(self.start, fallback)


class _Window:
    """One window's decode: demux, decode, and cut what falls in the window into chunks."""

    def __init__(
        self, source: str, media: MediaInfo, *, start_s: float, end_s: float, is_last: bool, align: bool,
        heartbeat: Callable[[float], None], settings: Settings,
    ) -> None:
        self.source, self.media, self.settings, self.heartbeat = source, media, settings, heartbeat
        self.start_s, self.end_s = start_s, end_s
        self.report = DecodeReport()
        self.bounds = _Bounds(
            start_s=start_s, end_s=end_s, from_start=start_s <= 0, to_end=is_last, video=media.video is not None,
            align=align,
        )
        self.errors = _DecodeErrors(self.report, self.bounds, t0=media.start_offset_s)
        self.data_end: float | None = None  # the end of the last frame read
        self.sounds: dict[int, _AudioCut] = {}  # each audio track's, by stream index
        self.warm_up_s = 0.0

    def chunks(self) -> Iterator[VideoChunk | AudioChunk | DecodeErrorChunk]:
        container = _open_window(self)
        if container is None:
            return
        threads = 0
        try:
            video = _video_stream(container) if self.media.video else None
            sounds = _audio_tracks(container, self.media)
            if video is not None:
                video.thread_type = "AUTO"
                video.thread_count = DECODER_THREADS.acquire(self.settings.decode_threads)
                threads = 1
            if self.start_s > 0 and segmented(self.source) is None:
                self._seek(container, video or (sounds[0][1] if sounds else None))
            yield from self._cut(container, video, sounds)
        except av.error.FFmpegError as exc:
            raise SourceUnavailableError(f"reading {self.source} failed: {exc.strerror}") from exc
        finally:
            container.close()
            if threads:
                DECODER_THREADS.release()

    def _seek(self, container: av.container.InputContainer, stream: av.stream.Stream | None) -> None:
        # To a keyframe at or before the window: from there its packets are skipped, not
        # decoded, up to its first keyframe.
        try:
            _seek_before(container, stream, self.media.start_offset_s + max(0.0, self.start_s - self.warm_up_s))
        except av.error.FFmpegError as exc:
            raise UnreadableSourceError(f"cannot seek to {self.start_s:.3f}s in {self.source}: {exc.strerror}") from exc

    def _packets(self, container: av.container.InputContainer, streams: list[av.stream.Stream]) -> Iterator[av.Packet]:
        """The packets to decode, in decode order: the video's chosen by the bounds, the audio's
        all from the seek on (cheap; cut by time later), until both tracks are past the window."""
        t0 = self.media.start_offset_s
        time_bases = {s.index: float(s.time_base) if s.time_base else None for s in streams}  # not a Fraction a packet
        for packet in container.demux(streams):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker: decoders are flushed after
            tb = time_bases.get(packet.stream.index)
            t = packet.pts * tb - t0 if packet.pts is not None and tb else None
            if t is not None and packet.duration and tb:
                self.data_end = max(self.data_end or t, t + packet.duration * tb)
            if packet.stream.type == "video":
                chosen = self.bounds.video_packet(packet, t)
                self.report.video_packets_skipped += self.bounds.start is None
                yield from chosen
            elif (sound := self.sounds.get(packet.stream.index)) is not None and not sound.done:
                yield packet
            if self.bounds.video_done and self._audio_done:
                return

    def _frames(
        self, container: av.container.InputContainer, streams: list[av.stream.Stream]
    ) -> Iterator[tuple[int, av.frame.Frame]]:
        """Each decoded frame, with the index of its stream."""
        for packet in self._packets(container, streams):
            yield from self._decoded(packet.stream, packet)
        for stream in streams:  # what the decoders still hold (frame threading, reordering)
            yield from self._decoded(stream, None)
        self.bounds.finish(self.data_end)

    def _decoded(self, stream: av.stream.Stream, packet: av.Packet | None) -> Iterator[tuple[int, av.frame.Frame]]:
        try:
            for frame in stream.decode(packet):
                if frame.is_corrupt:
                    self.errors.at(stream, frame.pts, packet.duration if packet is not None else None)
                yield stream.index, frame
        except (av.error.InvalidDataError, av.error.UndefinedError, ValueError):
            # A corrupt packet is a defect of the stream, not a failure of the analysis.
            if packet is not None:
                self.errors.at(stream, packet.pts, packet.duration)
        except av.error.EOFError:
            return

    @property
    def _audio_done(self) -> bool:
        return all(sound.done for sound in self.sounds.values())

    def _cut(
        self, container: av.container.InputContainer, video: av.VideoStream | None,
        sounds: list[tuple[str, av.AudioStream]],
    ) -> Iterator[VideoChunk | AudioChunk | DecodeErrorChunk]:
        """One demux: every track's packets decoded by its own decoder, cut into the window's chunks."""
        pictures = _VideoCut(self, video.codec_context) if video is not None else None
        self.sounds = {stream.index: _AudioCut(self, track) for track, stream in sounds}
        # Decode errors are the first audio track's (the decode_error detector's "audio").
        self.errors.tracks = {s.index: s.type for s in [video, *(st for _, st in sounds[:1])] if s is not None}
        if video is None:
            self.bounds.without_video()
        t0 = self.media.start_offset_s
        for index, frame in self._frames(container, [s for s in (video, *(st for _, st in sounds)) if s is not None]):
            if frame.time is None:
                continue
            cut = pictures if isinstance(frame, av.VideoFrame) else self.sounds.get(index)
            if cut is not None:
                yield from cut.add(frame, float(frame.time) - t0)
            yield from self.errors.chunks()
        for cut in (pictures, *self.sounds.values()):
            if cut is not None:
                yield from cut.flush()
        yield from self.errors.chunks()
        self.report.start_s, self.report.span_end_s = self.bounds.start, self.bounds.end


class _DecodeErrors:
    """Corrupt packets and frames inside the window, handed on as DecodeErrorChunks."""

    def __init__(self, report: DecodeReport, bounds: _Bounds, *, t0: float) -> None:
        self.report, self.bounds, self.t0 = report, bounds, t0
        self.found: dict[str, list[tuple[float, float]]] = {"video": [], "audio": []}
        self.tracks: dict[int, str] = {}  # the streams whose errors are reported, by index: their track

    def at(self, stream: av.stream.Stream, pts: int | None, duration: int | None) -> None:
        if pts is None or stream.time_base is None or stream.index not in self.tracks:
            return
        t = float(pts * stream.time_base) - self.t0
        start, end = self.bounds.cut()
        if start - 1e-6 <= t < end - 1e-6:  # others belong to a neighbouring window
            length = float(duration * stream.time_base) if duration else 0.0
            self.found[self.tracks[stream.index]].append((t, length))
            self.report.decode_errors += 1

    def chunks(self) -> Iterator[DecodeErrorChunk]:
        for track, found in self.found.items():
            if found:
                times, durations = zip(*sorted(found))
                yield DecodeErrorChunk(track=track, times=np.array(times), durations=np.array(durations))  # type: ignore[arg-type]
                found.clear()


class _VideoCut:
    """Video frames of the window to the chunk buffer; a neighbour's (an open GOP's reference
    keyframe) dropped."""

    def __init__(self, window: _Window, codec: Any) -> None:
        self.window, self.report, self.bounds = window, window.report, window.bounds
        self.buffer = _VideoBuffer(codec)

    def add(self, frame: av.VideoFrame, t: float) -> Iterator[VideoChunk]:
        start, end = self.bounds.cut()
        if not start - 1e-6 <= t < end - 1e-6:
            self.report.video_frames_dropped += 1
            return
        self.report.video_frames += 1
        for chunk in self.buffer.add(frame, t):
            self.window.heartbeat(t)
            yield chunk

    def flush(self) -> Iterator[VideoChunk]:
        yield from self.buffer.flush()


class _AudioCut:
    """Audio frames, as planar float, into the window's one-second chunks. Until the window's
    keyframes are found, samples past where it may begin or end wait here."""

    def __init__(self, window: _Window, track: str = "audio") -> None:
        self.report, self.t0, self.bounds = window.report, window.media.start_offset_s, window.bounds
        self.warm_up_s, self.track = window.warm_up_s, track
        self.buffer: _AudioBuffer | None = None
        self.warm_up: _AudioBuffer | None = None  # the samples before the window, when asked for
        self.waiting: list[tuple[np.ndarray, float, int, tuple[str, ...]]] = []
        self.resampler = av.AudioResampler(format="fltp")
        self.done = False

    def add(self, frame: av.AudioFrame, t: float) -> Iterator[AudioChunk]:
        # Most decoders already give planar float: convert only the others.
        for converted in [frame] if frame.format.name == "fltp" else self.resampler.resample(frame):
            if converted.time is not None:
                t = float(converted.time) - self.t0
            samples, rate = converted.to_ndarray(), converted.sample_rate
            if t + samples.shape[1] / rate > self.bounds.nominal_start - self.warm_up_s - 1e-6:  # else before any start it may have
                self.waiting.append((samples, t, rate, tuple(c.name for c in converted.layout.channels)))
            t += samples.shape[1] / rate
        yield from self._release()

    def _release(self, *, final: bool = False) -> Iterator[AudioChunk]:
        """The waiting samples, once the window's start (and, for those past its nominal end, its end) is known."""
        if self.bounds.start is None and not final:
            return
        if self.buffer is None:
            start = self.bounds.cut()[0]
            self.buffer = _AudioBuffer(start_s=start, end_s=math.inf, track=self.track)
            if self.warm_up_s > 0:
                self.warm_up = _AudioBuffer(start_s=start - self.warm_up_s, end_s=start, track=self.track)
        if self.bounds.end is not None:
            self.buffer.end_s = self.bounds.cut()[1]
        while self.waiting:
            samples, t, rate, names = self.waiting[0]
            if self.bounds.end is None and not final and t + samples.shape[1] / rate > self.bounds.nominal_end:
                return  # may lie past the window's end, not known yet
            self.waiting.pop(0)
            if self.warm_up is not None:
                yield from self._warm_up(samples, t, rate, names)
            yield from self._counted(self.buffer.add(samples, t, rate, names))
        if self.buffer.done:
            self.done = True

    def _warm_up(self, samples: np.ndarray | None, t: float, rate: int, names: tuple[str, ...] = ()) -> Iterator[AudioChunk]:
        """The samples before the window, all of them before any of the window's own (None: no more)."""
        assert self.warm_up is not None
        chunks = self.warm_up.add(samples, t, rate, names) if samples is not None else []
        if samples is None or self.warm_up.done or t + samples.shape[1] / rate >= self.warm_up.end_s:
            chunks += self.warm_up.flush()
            self.warm_up = None
        for chunk in chunks:
            yield replace(chunk, warm_up=True)

    def flush(self) -> Iterator[AudioChunk]:
        yield from self._release(final=True)
        if self.warm_up is not None:
            yield from self._warm_up(None, 0.0, 1)
        if self.buffer is not None:
            yield from self._counted(self.buffer.flush())

    def _counted(self, items: list[AudioChunk] | Iterator[AudioChunk]) -> Iterator[AudioChunk]:
        for item in items:
            if self.track == "audio":  # the window's metrics count the first audio track's samples
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

    def __init__(self, *, start_s: float, end_s: float, track: str = "audio") -> None:
        self.start_s = start_s
        self.end_s = end_s
        self.track = track
        self.channels: tuple[str, ...] = ()
        self.parts: list[np.ndarray] = []
        self.parts_start: float | None = None
        self.parts_samples = 0
        self.rate = 0
        self.done = False

    def add(self, samples: np.ndarray, t: float, rate: int, channels: tuple[str, ...] = ()) -> list[AudioChunk]:
        out: list[AudioChunk] = []
        n = samples.shape[1]
        first = max(0, math.ceil((self.start_s - t) * rate - 1e-6))
        last = n if math.isinf(self.end_s) else min(n, math.ceil((self.end_s - t) * rate - 1e-6))
        if last <= 0 or first >= n:
            if t + n / rate >= self.end_s:
                self.done = True
            return out
        if last < n:
            self.done = True
        piece = samples[:, first:last]
        piece_start = t + first / rate
        expected = None if self.parts_start is None else self.parts_start + self.parts_samples / self.rate
        if self.parts and (rate != self.rate or piece.shape[0] != self.parts[0].shape[0] or channels != self.channels or (
            expected is not None and abs(piece_start - expected) > 1.5 / rate
        )):
            # A gap or a format change starts a new chunk so sample times stay exact.
            out.extend(self.flush())
        if not self.parts:
            self.parts_start, self.rate, self.channels = piece_start, rate, channels
        self.parts.append(np.ascontiguousarray(piece, dtype=np.float32))
        self.parts_samples += piece.shape[1]
        if self.parts_samples >= AUDIO_CHUNK_SECONDS * rate:
            out.extend(self.flush())
        return out

    def flush(self) -> list[AudioChunk]:
        if not self.parts or self.parts_start is None:
            return []
        samples = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts, axis=1)
        chunk = AudioChunk(
            start_s=self.parts_start, sample_rate=self.rate, samples=samples, track=self.track, channels=self.channels
        )
        self.parts, self.parts_start, self.parts_samples = [], None, 0
        return [chunk]
