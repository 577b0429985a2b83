"""HLS playlists (VOD and live): parse, pick the segments a window needs, read them as one stream.

A window decodes only the segments that overlap it (plus the one before, for
pre-roll), concatenated in memory as they are read; nothing is stored. Segments are
MPEG-TS, or fragmented MP4 (CMAF): then the playlist's `#EXT-X-MAP` init segment (the
movie header) is read once before the window's media segments, and their timestamps
come from each fragment's `tfdt`, absolute across the playlist. `BYTERANGE` on
`#EXT-X-MAP` and `#EXT-X-BYTERANGE` on segments (one file, sub-ranges) are read as
ranges. Every URI, the init segment's too, is checked by the worker's policy. A live
playlist grows while the stream runs: a window waits (in its activity, heartbeating)
until the playlist covers it, the playlist ends, or no new segment has come for
`stall_s` — then it analyses what there is. The playlist may be on any transport.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlparse

import av
import av.container
import av.error

from vqa.settings import Settings

from ..errors import MediaNotFoundError, SourceUnavailableError, UnreadableSourceError
from ..policy import SourcePolicy, SourceRefusedError
from .base import SourceRequest
from .transports import read_bytes, resolve
# A segment whose #EXT-X-PROGRAM-DATE-TIME is this much later than the EXTINF sum
# before it follows an outage: the timeline gets the same gap its timestamps have.
OUTAGE_MIN_GAP_S = 0.5


def is_hls(source: str) -> bool:
    path = urlparse(source).path if "://" in source else source
    return path.lower().endswith(".m3u8")


@dataclass(frozen=True)
class HlsMap:
    """A fragmented-MP4 playlist's init segment (#EXT-X-MAP): the movie header its segments need."""

    uri: str
    byterange: tuple[int, int] | None = None  # (offset, length) within `uri`; None: all of it


@dataclass(frozen=True)
class HlsSegment:
    uri: str
    start_s: float  # nominal, from the durations of the segments before it
    duration_s: float
    init: HlsMap | None = None  # fragmented MP4 (CMAF): read before the segment; None: MPEG-TS
    byterange: tuple[int, int] | None = None  # (offset, length) within `uri` (#EXT-X-BYTERANGE)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass
class Playlist:
    uri: str
    segments: list[HlsSegment] = field(default_factory=list)
    ended: bool = False
    target_duration_s: float = 6.0
    media_sequence: int = 0  # #EXT-X-MEDIA-SEQUENCE: the number of the first segment listed
    wall_start: float | None = None  # epoch seconds of the timeline's 0 (#EXT-X-PROGRAM-DATE-TIME), if dated

    @property
    def duration_s(self) -> float:
        return self.segments[-1].end_s if self.segments else 0.0


def _rules(policy: SourcePolicy | None, settings: Settings | None) -> tuple[SourcePolicy, Settings]:
    """The policy and settings in force: those given, else `Settings()` (the environment now) and its policy."""
    settings = settings if settings is not None else Settings()
    return (policy if policy is not None else SourcePolicy.from_settings(settings)), settings


def load_playlist(
    uri: str, *, what: str = "source", policy: SourcePolicy | None = None, settings: Settings | None = None
) -> Playlist:
    """Fetch and parse a media playlist (a master playlist: its first variant). Default settings:
    `Settings()` (the environment now); default policy: the settings'."""
    checks, settings = _rules(policy, settings)
    text = read_bytes(uri, what=what, policy=checks, settings=settings).decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("#EXTM3U"):
        raise UnreadableSourceError(f"not an HLS playlist (no #EXTM3U): {uri}")
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF") and i + 1 < len(lines):
            variant = resolve(uri, lines[i + 1])
            checks.check_reference(variant, referrer=uri, what="HLS variant playlist")
            return load_playlist(variant, what="HLS variant playlist", policy=checks, settings=settings)
    return _media_playlist(uri, lines, checks)


def _media_playlist(uri: str, lines: list[str], checks: SourcePolicy) -> Playlist:
    """A media playlist's lines parsed; every reference checked as it is read (no I/O)."""
    playlist = Playlist(uri=uri)
    duration: float | None = None
    date: float | None = None
    init: HlsMap | None = None
    byterange: str | None = None  # the pending #EXT-X-BYTERANGE, for the next segment
    range_ends: dict[str, int] = {}  # where the last sub-range of each URI ended (EXT-X-BYTERANGE without @o)
    t = 0.0
    for line in lines:
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            date = _program_date(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            playlist.target_duration_s = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            playlist.media_sequence = _integer(line.split(":", 1)[1], uri)
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif line.startswith("#EXT-X-ENDLIST"):
            playlist.ended = True
        elif line.startswith("#EXT-X-MAP:"):
            attributes = _attributes(line.split(":", 1)[1])
            if not attributes.get("URI"):
                raise UnreadableSourceError(f"#EXT-X-MAP without a URI in {uri}")
            init_uri = resolve(uri, attributes["URI"])
            checks.check_reference(init_uri, referrer=uri, what="HLS init segment")
            init_range = _byterange(attributes["BYTERANGE"], 0, uri) if "BYTERANGE" in attributes else None
            init = HlsMap(uri=init_uri, byterange=init_range)
        elif line.startswith("#EXT-X-BYTERANGE:"):
            byterange = line.split(":", 1)[1]
        elif not line.startswith("#") and duration is not None:
            if date is not None:
                # After an outage an encoder resumes with a timestamp jump and the packager dates
                # the segment at the real time: place it there, not at the sum of the EXTINFs.
                if playlist.wall_start is None:
                    playlist.wall_start = date - t
                elif date - playlist.wall_start > t + OUTAGE_MIN_GAP_S:
                    t = date - playlist.wall_start
                date = None
            segment_uri = resolve(uri, line)
            checks.check_reference(segment_uri, referrer=uri, what="HLS segment")
            segment_range = None
            if byterange is not None:
                segment_range = _byterange(byterange, range_ends.get(segment_uri, 0), uri)
                range_ends[segment_uri] = segment_range[0] + segment_range[1]
            playlist.segments.append(
                HlsSegment(uri=segment_uri, start_s=t, duration_s=duration, init=init, byterange=segment_range)
            )
            t += duration
            duration = byterange = None
    return playlist


def _integer(value: str, uri: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise UnreadableSourceError(f"unreadable #EXT-X-MEDIA-SEQUENCE {value.strip()!r} in {uri}") from None


def _attributes(text: str) -> dict[str, str]:
    """An attribute list (`URI="init.mp4",BYTERANGE="720@0"`), quotes removed."""
    return {m[1]: m[2].strip('"') for m in re.finditer(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


def _byterange(value: str, default_offset: int, uri: str) -> tuple[int, int]:
    """`<length>[@<offset>]` as (offset, length); no offset: `default_offset` (where the last sub-range ended)."""
    length, _, offset = value.strip().strip('"').partition("@")
    try:
        result = (int(offset) if offset else default_offset, int(length))
    except ValueError:
        raise UnreadableSourceError(f"unreadable BYTERANGE {value.strip()!r} in {uri}") from None
    if result[0] < 0 or result[1] <= 0:
        raise UnreadableSourceError(f"unreadable BYTERANGE {value.strip()!r} in {uri}")
    return result


def _program_date(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None  # an unreadable date: the segment stays where its EXTINFs put it


def segments_for(playlist: Playlist, start_s: float, end_s: float) -> list[HlsSegment]:
    """The segments overlapping [start_s, end_s) on the nominal timeline."""
    return [s for s in playlist.segments if s.end_s > start_s and s.start_s < end_s]


class SegmentStream(io.RawIOBase):
    """The listed segments, read one after another as a single non-seekable byte stream;
    fragmented MP4: the first segment's init segment first (FFmpeg's mov demuxer keeps the
    first movie header it reads, so a window is read with one)."""

    def __init__(
        self, segments: Sequence[HlsSegment], *, policy: SourcePolicy, settings: Settings, skip_missing: bool = False
    ) -> None:
        self._policy, self._settings, self._skip_missing = policy, settings, skip_missing
        self.skipped: list[str] = []  # segments that answered not-found, skipped (skip_missing)
        self._pending: list[tuple[str, tuple[int, int] | None, str]] = [
            (s.uri, s.byterange, "HLS segment") for s in segments
        ]
        if segments and segments[0].init is not None:
            self._pending.insert(0, (segments[0].init.uri, segments[0].init.byterange, "HLS init segment"))
        self._buffer = b""
        self._offset = 0
        self.requests = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._offset >= len(self._buffer):
            if not self._pending:
                return 0
            uri, byterange, what = self._pending.pop(0)
            try:
                data = read_bytes(uri, what=what, byterange=byterange, policy=self._policy, settings=self._settings)
                self._buffer, self._offset = data, 0
            except (UnreadableSourceError, SourceUnavailableError) as exc:
                if self._skip_missing and what == "HLS segment" and isinstance(exc, MediaNotFoundError):
                    self.skipped.append(uri)  # a live stream's lost segment: a gap in its media
                    continue
                if what == "HLS segment" or isinstance(exc, SourceRefusedError):  # a refusal names it
                    raise
                raise type(exc)(f"{what} {exc}") from exc  # "HLS init segment not found (HTTP 404): …"
            self.requests += 1
        n = min(len(target), len(self._buffer) - self._offset)
        target[:n] = self._buffer[self._offset : self._offset + n]
        self._offset += n
        return n


def wait_for_coverage(
    uri: str,
    end_s: float,
    *,
    stall_s: float,
    heartbeat: Callable[[float], None],
    poll_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall: Callable[[], float] = time.time,
    policy: SourcePolicy | None = None,
    settings: Settings | None = None,
    load: Callable[..., Playlist] | None = None,
) -> tuple[Playlist, bool]:
    """Reload a live playlist until it covers `end_s` or ends. Returns it and whether it stalled
    (no new segment for `stall_s`: the stream stopped delivering). A dated playlist stalls only
    once the window's end is `stall_s` in the past, so windows in an outage never run ahead of
    the real time at which media may resume. `load`: how the playlist is loaded (another
    segmented format's `load_playlist`; default: an HLS media playlist)."""
    policy, settings = _rules(policy, settings)
    reload = load if load is not None else load_playlist
    playlist = reload(uri, policy=policy, settings=settings)
    last_growth = clock()
    count = len(playlist.segments)
    while not playlist.ended and playlist.duration_s < end_s - 1e-6:
        if clock() - last_growth >= stall_s and (
            playlist.wall_start is None or wall() >= playlist.wall_start + end_s + stall_s
        ):
            return playlist, True
        heartbeat(playlist.duration_s)
        sleep(poll_s if poll_s is not None else max(0.2, min(playlist.target_duration_s / 2, 2.0)))
        playlist = reload(uri, policy=policy, settings=settings)
        if len(playlist.segments) != count:
            count, last_growth = len(playlist.segments), clock()
    return playlist, False


def open_segments(
    segments: Sequence[HlsSegment], source: str, *, policy: SourcePolicy | None = None, settings: Settings | None = None,
    skip_missing: bool = False,
) -> av.container.InputContainer:
    """`segments` of the playlist `source` opened as one stream (MPEG-TS, or fragmented MP4).
    `skip_missing`: a segment that answers not-found is left out (a live stream's gap); when
    every one does, MediaNotFoundError."""
    if not segments:
        raise SourceUnavailableError(f"the playlist lists no segments yet: {source}")
    policy, settings = _rules(policy, settings)
    # Fragmented MP4 (CMAF): the init segment then the fragments, through the mov demuxer; the
    # stream is not seekable, so it never looks for an index at the end (times: each tfdt).
    fmp4 = segments[0].init is not None
    stream = SegmentStream(segments, policy=policy, settings=settings, skip_missing=skip_missing)
    try:
        return av.open(stream, mode="r", format="mp4" if fmp4 else "mpegts")
    except av.error.FFmpegError as exc:
        if stream.skipped and stream.requests == 0:
            raise MediaNotFoundError(f"every segment of the window answered not found: {', '.join(stream.skipped)}") from exc
        kind = "fragmented MP4" if fmp4 else "MPEG-TS"
        raise UnreadableSourceError(f"HLS segments of {source} are not readable {kind}: {exc.strerror}") from exc


def segments_opener(load: Callable[..., Playlist]) -> Callable[[SourceRequest], av.container.InputContainer]:
    """The opener of a segmented format whose playlist `load` reads: the request's segments
    (default: the first two, what a probe reads), opened as one stream."""

    def open_container(request: SourceRequest) -> av.container.InputContainer:
        segments = request.segments
        if segments is None:
            segments = load(request.url, policy=request.policy, settings=request.settings).segments[:2]
        return open_segments(
            segments, request.url, policy=request.policy, settings=request.settings, skip_missing=request.skip_missing
        )

    return open_container


open_container = segments_opener(load_playlist)
