"""HLS playlists (VOD and live): parse, pick the segments a window needs, read them as one stream.

A window decodes only the segments that overlap it (plus the one before, for
pre-roll), concatenated in memory as they are read; nothing is stored. Segments are
MPEG-TS, or fragmented MP4 (CMAF): then the playlist's `#EXT-X-MAP` init segment (the
movie header) is read once before the window's media segments, and their timestamps
come from each fragment's `tfdt`, absolute across the playlist. `BYTERANGE` on
`#EXT-X-MAP` and `#EXT-X-BYTERANGE` on segments (one file, sub-ranges) are read as
ranges. Every URI, the init segment's too, is checked by the worker's policy. A live
playlist grows while the stream runs: a window waits (in its activity,
heartbeating) until the playlist covers it, the playlist ends, or no new segment
has come for `stall_s` — then it analyses what there is.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urljoin, urlparse

from . import policy
from .errors import SourceUnavailableError, UnreadableSourceError

HTTP_TIMEOUT_S = float(os.environ.get("VQA_NETWORK_TIMEOUT_S", "15"))
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
    wall_start: float | None = None  # epoch seconds of the timeline's 0 (#EXT-X-PROGRAM-DATE-TIME), if dated

    @property
    def duration_s(self) -> float:
        return self.segments[-1].end_s if self.segments else 0.0


def read_bytes(uri: str, *, what: str = "source", byterange: tuple[int, int] | None = None) -> bytes:
    """GET an http(s) URL or an `s3://` object, or read a local file/`file://` URL,
    once the worker's policy (activities/policy.py) allows it. `byterange`: only
    (offset, length) of it (an HTTP or S3 range request)."""
    checks = policy.current()
    checks.check_source(uri, what=what)
    parsed = urlparse(uri)
    if parsed.scheme.lower() == "s3":
        from .s3 import get_object  # boto3 is loaded where S3 is read

        return get_object(uri) if byterange is None else get_object(uri, byterange=byterange)
    if parsed.scheme in ("http", "https"):
        request: urllib.request.Request | str = uri
        if byterange is not None:
            offset, length = byterange
            request = urllib.request.Request(uri, headers={"Range": f"bytes={offset}-{offset + length - 1}"})
        try:
            with checks.urlopen(request, timeout=HTTP_TIMEOUT_S, what=what) as response:
                data = bytes(response.read())
                if byterange is not None and response.status != 206:  # a server that ignores ranges
                    data = data[byterange[0] : byterange[0] + byterange[1]]
                return data
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                raise UnreadableSourceError(f"not found (HTTP {exc.code}): {uri}") from exc
            if 400 <= exc.code < 500:
                raise UnreadableSourceError(f"refused (HTTP {exc.code}): {uri}") from exc
            raise SourceUnavailableError(f"server error (HTTP {exc.code}): {uri}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise SourceUnavailableError(f"cannot reach {uri}: {getattr(exc, 'reason', exc)}") from exc
    path = checks.local_path(uri, what=what)
    try:
        with open(path, "rb") as f:
            if byterange is None:
                return f.read()
            f.seek(byterange[0])
            return f.read(byterange[1])
    except FileNotFoundError as exc:
        raise UnreadableSourceError(f"source not found: {path}") from exc
    except OSError as exc:
        raise SourceUnavailableError(f"cannot read {path}: {exc}") from exc


def _resolve(base: str, ref: str) -> str:
    if "://" in ref:
        return ref
    if base.lower().startswith("s3://"):
        # urljoin does not know s3://: join the key by hand, "/key" from the bucket's root.
        bucket, _, key = base[5:].partition("/")
        joined = ref.lstrip("/") if ref.startswith("/") else posixpath.join(posixpath.dirname(key), ref)
        return f"s3://{bucket}/{posixpath.normpath(joined)}"
    if "://" in base:  # "/seg.ts" in an http playlist is on the playlist's server
        return urljoin(base, ref)
    if ref.startswith("/"):
        return ref
    return os.path.join(os.path.dirname(base), ref)


def load_playlist(uri: str, *, what: str = "source") -> Playlist:
    """Fetch and parse a media playlist (a master playlist: its first variant)."""
    text = read_bytes(uri, what=what).decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("#EXTM3U"):
        raise UnreadableSourceError(f"not an HLS playlist (no #EXTM3U): {uri}")
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF") and i + 1 < len(lines):
            variant = _resolve(uri, lines[i + 1])
            policy.current().check_reference(variant, referrer=uri, what="HLS variant playlist")
            return load_playlist(variant, what="HLS variant playlist")
    playlist = Playlist(uri=uri)
    checks = policy.current()
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
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif line.startswith("#EXT-X-ENDLIST"):
            playlist.ended = True
        elif line.startswith("#EXT-X-MAP:"):
            attributes = _attributes(line.split(":", 1)[1])
            if not attributes.get("URI"):
                raise UnreadableSourceError(f"#EXT-X-MAP without a URI in {uri}")
            init_uri = _resolve(uri, attributes["URI"])
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
            segment_uri = _resolve(uri, line)
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


def segments_for(playlist: Playlist, start_s: float, end_s: float, preroll_s: float) -> list[HlsSegment]:
    """The segments overlapping [start_s - preroll_s, end_s) on the nominal timeline."""
    begin = max(0.0, start_s - preroll_s)
    return [s for s in playlist.segments if s.end_s > begin and s.start_s < end_s]


class SegmentStream(io.RawIOBase):
    """The listed segments, read one after another as a single non-seekable byte stream;
    fragmented MP4: the first segment's init segment first (FFmpeg's mov demuxer keeps the
    first movie header it reads, so a window is read with one)."""

    def __init__(self, segments: list[HlsSegment]) -> None:
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
                self._buffer, self._offset = read_bytes(uri, what=what, byterange=byterange), 0
            except (UnreadableSourceError, SourceUnavailableError) as exc:
                if what == "HLS segment" or isinstance(exc, policy.SourceRefusedError):  # a refusal names it
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
) -> tuple[Playlist, bool]:
    """Reload a live playlist until it covers `end_s` or ends. Returns it and whether it stalled
    (no new segment for `stall_s`: the stream stopped delivering). A dated playlist stalls only
    once the window's end is `stall_s` in the past, so windows in an outage never run ahead of
    the real time at which media may resume."""
    playlist = load_playlist(uri)
    last_growth = clock()
    count = len(playlist.segments)
    while not playlist.ended and playlist.duration_s < end_s - 1e-6:
        if clock() - last_growth >= stall_s and (
            playlist.wall_start is None or wall() >= playlist.wall_start + end_s + stall_s
        ):
            return playlist, True
        heartbeat(playlist.duration_s)
        sleep(poll_s if poll_s is not None else max(0.2, min(playlist.target_duration_s / 2, 2.0)))
        playlist = load_playlist(uri)
        if len(playlist.segments) != count:
            count, last_growth = len(playlist.segments), clock()
    return playlist, False
