"""DASH manifests (MPD), VOD and live: one Representation read as the segments of an HLS media playlist.

An MPD is parsed by the `mpegdash` package (from bytes the worker read itself: the package's
own loader would open URLs unchecked). A Representation becomes the `Playlist` hls.py reads
(`HlsSegment`s, each with the Representation's init segment as its `HlsMap`), so a window reads
it exactly as it reads a fragmented-MP4 (CMAF) HLS rendition. Read: SegmentTemplate (on the
Period, AdaptationSet or Representation, the innermost attribute winning) with a SegmentTimeline
(`$Number$` or `$Time$`) or with `@duration`; `$RepresentationID$`, `$Bandwidth$` and `%0Nd`
widths; BaseURL at every level; every Period that lists the Representation with the same init
segment (the first Period at least). A `type="dynamic"` MPD is live: the segments listed that are
available now (availabilityStartTime + Period start + their end), and `ended` False; a static one
is VOD. Not read: SegmentBase (one indexed file), SegmentList, encrypted content.

One Representation of an MPD is addressed `<mpd url>#representation=<Representation@id>` (a URL
fragment: never sent); the MPD alone means its first video Representation (else its first audio
one). Every URI (the MPD, each init segment and segment) passes the worker's policy.
"""

from __future__ import annotations

import math
import re
import time
import xml.parsers.expat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, unquote, urlparse
from xml.dom import minidom

from mpegdash.nodes import MPEGDASH, AdaptationSet, Period, Representation
from mpegdash.utils import parse_child_nodes

from vqa.settings import Settings

from ..errors import UnreadableSourceError
from ..policy import SourcePolicy
from .hls import HlsMap, HlsSegment, Playlist, segments_opener
from .transports import read_bytes, resolve

FRAGMENT = "#representation="
_TEMPLATE_FIELDS = ("timescale", "duration", "start_number", "presentation_time_offset", "media", "initialization")
_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_IDENTIFIER = re.compile(r"\$(RepresentationID|Number|Time|Bandwidth)(%0(\d+)d)?\$|\$\$")


def is_dash(source: str) -> bool:
    """An MPD, or one Representation of one (`...mpd#representation=ID`)."""
    mpd, _ = split_address(source)
    path = urlparse(mpd).path if "://" in mpd else mpd
    return path.lower().endswith(".mpd")


def address(mpd: str, representation_id: str) -> str:
    """How a stream names one Representation of the MPD `mpd`."""
    return f"{mpd}{FRAGMENT}{quote(representation_id, safe='')}"


def split_address(uri: str) -> tuple[str, str | None]:
    """(the MPD's URI, the Representation@id it names, or None)."""
    mpd, found, rid = uri.rpartition(FRAGMENT)
    return (mpd, unquote(rid)) if found else (uri, None)


@dataclass
class DashRepresentation:
    """One Representation as the channel lists it, and its segments (or why they cannot be listed)."""

    id: str
    type: str  # video, audio, or what else the AdaptationSet holds (text, image)
    bandwidth: int | None = None
    width: int | None = None
    height: int | None = None
    language: str | None = None
    codecs: str | None = None
    playlist: Playlist | None = None
    error: str | None = None


@dataclass
class Manifest:
    uri: str
    live: bool
    representations: list[DashRepresentation] = field(default_factory=list)


def load_manifest(
    uri: str, *, what: str = "source", policy: SourcePolicy, settings: Settings, now: Callable[[], float] = time.time
) -> Manifest:
    """Fetch and parse an MPD: every Representation of its first Period, each with its segments listed."""
    mpd = _parse(read_bytes(uri, what=what, policy=policy, settings=settings), uri)
    periods = mpd.periods or []
    if not periods:
        raise UnreadableSourceError(f"the DASH manifest lists no Period: {uri}")
    clock = _Clock.of(mpd, uri, now())
    manifest = Manifest(uri=uri, live=clock.live)
    for adaptation in periods[0].adaptation_sets or []:
        for representation in adaptation.representations or []:
            entry = _describe(adaptation, representation)
            try:
                entry.playlist = _playlist(mpd, representation.id, uri, clock, policy)
            except UnreadableSourceError as exc:
                entry.error = str(exc)
            manifest.representations.append(entry)
    return manifest


def load_playlist(
    uri: str, *, what: str = "source", policy: SourcePolicy | None = None, settings: Settings | None = None,
    now: Callable[[], float] = time.time,
) -> Playlist:
    """The segments of the Representation `uri` names (the MPD alone: its first video one, else its
    first audio one) as a media playlist. Default settings: `Settings()`; default policy: the settings'."""
    settings = settings if settings is not None else Settings()
    policy = policy if policy is not None else SourcePolicy.from_settings(settings)
    mpd_uri, rid = split_address(uri)
    mpd = _parse(read_bytes(mpd_uri, what=what, policy=policy, settings=settings), mpd_uri)
    if rid is None:
        rid = _default_representation(mpd, mpd_uri)
    playlist = _playlist(mpd, rid, mpd_uri, _Clock.of(mpd, mpd_uri, now()), policy)
    playlist.uri = uri
    return playlist




def _parse(data: bytes, uri: str) -> MPEGDASH:
    try:
        document = minidom.parseString(data)
        found = parse_child_nodes(document, "MPD", MPEGDASH)
    except (xml.parsers.expat.ExpatError, ValueError, TypeError, AttributeError) as exc:
        raise UnreadableSourceError(f"not a readable DASH manifest ({exc}): {uri}") from None
    if not found:
        raise UnreadableSourceError(f"not a DASH manifest (no <MPD>): {uri}")
    return found[0]


@dataclass(frozen=True)
class _Clock:
    """Where the MPD's timeline is in real time: live (dynamic) or not, its availabilityStartTime, now."""

    live: bool
    available_from: float | None  # epoch seconds of presentation time 0 (dynamic MPDs)
    now: float
    duration_s: float | None  # mediaPresentationDuration

    @classmethod
    def of(cls, mpd: MPEGDASH, uri: str, now: float) -> _Clock:
        live = (mpd.type or "static").strip() == "dynamic"
        start = _date(mpd.availability_start_time, uri) if mpd.availability_start_time else None
        if live and start is None:
            raise UnreadableSourceError(f"a dynamic DASH manifest without availabilityStartTime: {uri}")
        return cls(live=live, available_from=start, now=now, duration_s=_seconds(mpd.media_presentation_duration, uri))

    def period_end(self, start_s: float, period: Period, uri: str, next_start: float | None) -> float | None:
        """Where a Period ends on the timeline: its duration, the next Period's start, the presentation's
        end; a live one: now."""
        own = _seconds(period.duration, uri)
        if own is not None:
            return start_s + own
        if next_start is not None:
            return next_start
        if self.live and self.available_from is not None:
            return self.now - self.available_from
        return self.duration_s

    def available(self, end_s: float) -> bool:
        """Whether a segment ending at `end_s` on the timeline is out (always, for VOD)."""
        return not self.live or self.available_from is None or self.available_from + end_s <= self.now + 1e-3


def _describe(adaptation: AdaptationSet, representation: Representation) -> DashRepresentation:
    mime = representation.mime_type or adaptation.mime_type or ""
    kind = adaptation.content_type or mime.split("/")[0] or "other"
    codecs = representation.codecs or adaptation.codecs
    if kind == "application" and codecs:  # some packagers type only the codecs
        kind = "audio" if _audio_codec(codecs) else kind
    return DashRepresentation(
        id=str(representation.id), type=kind, bandwidth=representation.bandwidth,
        width=representation.width or adaptation.width, height=representation.height or adaptation.height,
        language=adaptation.lang, codecs=codecs,
    )


def _audio_codec(codecs: str) -> bool:
    names = [c.strip().split(".")[0].lower() for c in codecs.split(",") if c.strip()]
    return bool(names) and all(n in ("mp4a", "ac-3", "ec-3", "opus", "flac", "alac") for n in names)


def _default_representation(mpd: MPEGDASH, uri: str) -> str:
    """The Representation an MPD given as one stream means: its first video one, else its first audio one."""
    listed = [_describe(a, r) for p in (mpd.periods or [])[:1] for a in (p.adaptation_sets or [])
              for r in (a.representations or [])]
    for kind in ("video", "audio"):
        found = next((r for r in listed if r.type == kind), None)
        if found is not None:
            return found.id
    raise UnreadableSourceError(f"the DASH manifest lists no video or audio Representation: {uri}")


def _playlist(mpd: MPEGDASH, rid: str, uri: str, clock: _Clock, policy: SourcePolicy) -> Playlist:
    """The Representation `rid` over every Period that lists it with the same init segment (the first at least)."""
    playlist = Playlist(uri=address(uri, rid), ended=not clock.live)
    periods = mpd.periods or []
    starts = _period_starts(periods, uri)
    init: HlsMap | None = None
    found = False
    for i, period in enumerate(periods):
        placed = _find(period, rid)
        if placed is None:
            if not found:
                continue
            break
        end = clock.period_end(starts[i], period, uri, starts[i + 1] if i + 1 < len(starts) else None)
        base = _base(_base(_base(_base(uri, mpd.base_urls), period.base_urls), placed[0].base_urls), placed[1].base_urls)
        number, segments = _segments(period, *placed, base=base, period_s=(starts[i], end), clock=clock, uri=uri)
        playlist.media_sequence = number if not found else playlist.media_sequence
        if found and (segments and segments[0].init != init):
            break  # another init segment: a window reads one movie header
        for segment in segments:
            policy.check_reference(segment.uri, referrer=uri, what="DASH segment")
            if segment.init is not None:
                policy.check_reference(segment.init.uri, referrer=uri, what="DASH init segment")
        init = segments[0].init if segments else init
        playlist.segments += segments
        found = True
    if not found:
        raise UnreadableSourceError(f"the DASH manifest has no Representation {rid!r}: {uri}")
    _finish(playlist, mpd, clock, uri)
    return playlist


def _finish(playlist: Playlist, mpd: MPEGDASH, clock: _Clock, uri: str) -> None:
    """The playlist's target duration (the MPD's maxSegmentDuration, which a live MPD keeps while it
    grows, else its longest segment) and wall clock."""
    longest = max((s.duration_s for s in playlist.segments), default=0.0)
    playlist.target_duration_s = _seconds(mpd.max_segment_duration, uri) or longest or 2.0
    if clock.live:
        playlist.wall_start = clock.available_from


def _find(period: Period, rid: str) -> tuple[AdaptationSet, Representation] | None:
    for adaptation in period.adaptation_sets or []:
        for representation in adaptation.representations or []:
            if str(representation.id) == rid:
                return adaptation, representation
    return None


def _period_starts(periods: list[Period], uri: str) -> list[float]:
    """Each Period's start on the timeline: its @start, else where the one before ended."""
    starts: list[float] = []
    for period in periods:
        own = _seconds(period.start, uri)
        if own is None and starts:
            before = _seconds(periods[len(starts) - 1].duration, uri)
            own = starts[-1] + before if before is not None else None
        starts.append(own if own is not None else (starts[-1] if starts else 0.0))
    return starts


def _base(base: str, urls: list[Any] | None) -> str:
    """`base` with the first BaseURL of a level applied (a directory keeps its trailing slash)."""
    ref = (urls[0].base_url_value or "").strip() if urls else ""
    if not ref:
        return base
    joined = resolve(base, ref)
    return joined + "/" if ref.endswith("/") and not joined.endswith("/") else joined


def _template(period: Period, adaptation: AdaptationSet, representation: Representation) -> dict[str, Any]:
    """The SegmentTemplate in force: each attribute from the innermost level that sets it."""
    levels = [(n.segment_templates or [None])[0] for n in (period, adaptation, representation)]
    merged: dict[str, Any] = {"timeline": None}
    for level in levels:
        if level is None:
            continue
        for name in _TEMPLATE_FIELDS:
            if getattr(level, name) is not None:
                merged[name] = getattr(level, name)
        if level.segment_timelines:
            merged["timeline"] = level.segment_timelines[0]
    if not any(levels):
        kind = "SegmentList" if representation.segment_lists or adaptation.segment_lists else "SegmentBase"
        raise UnreadableSourceError(
            f"DASH Representation {representation.id!r} is addressed by {kind}, which VQA does not read (only SegmentTemplate)"
        )
    return merged


def _segments(
    period: Period, adaptation: AdaptationSet, representation: Representation, *, base: str,
    period_s: tuple[float, float | None], clock: _Clock, uri: str,
) -> tuple[int, list[HlsSegment]]:
    """The Representation's segments in one Period, on the presentation timeline, and the number of the first."""
    template = _template(period, adaptation, representation)
    if not template.get("media"):
        raise UnreadableSourceError(f"DASH Representation {representation.id!r} has a SegmentTemplate without @media: {uri}")
    rid, bandwidth = str(representation.id), representation.bandwidth
    init = None
    if template.get("initialization"):
        init = HlsMap(uri=resolve(base, _fill(template["initialization"], rid=rid, bandwidth=bandwidth)))
    timescale = template.get("timescale") or 1
    offset = template.get("presentation_time_offset") or 0
    number = template.get("start_number") if template.get("start_number") is not None else 1
    if template["timeline"] is not None:
        timed = _timeline(template["timeline"], period_s, timescale, offset, uri)
    elif template.get("duration"):
        timed = _fixed(template["duration"], period_s, timescale, offset, clock, uri)
    else:
        raise UnreadableSourceError(f"DASH Representation {rid!r} has neither a SegmentTimeline nor @duration: {uri}")
    segments = []
    for index, (t, d) in enumerate(timed):
        start = period_s[0] + (t - offset) / timescale
        if not clock.available(start + d / timescale):
            break
        media = _fill(template["media"], rid=rid, bandwidth=bandwidth, number=number + index, time=t)
        segments.append(HlsSegment(uri=resolve(base, media), start_s=start, duration_s=d / timescale, init=init))
    return number, segments


def _timeline(timeline: Any, period_s: tuple[float, float | None], timescale: int, offset: int, uri: str) -> list[tuple[int, int]]:
    """(t, d) of every segment a SegmentTimeline lists, in its timescale; `r="-1"` repeats up to the
    next S or the Period's end."""
    entries = timeline.Ss or []
    out: list[tuple[int, int]] = []
    t = 0
    for i, s in enumerate(entries):
        if s.d is None or s.d <= 0:
            raise UnreadableSourceError(f"a SegmentTimeline S without a positive @d in {uri}")
        t = s.t if s.t is not None else t
        repeat = s.r or 0
        if repeat < 0:
            following = entries[i + 1].t if i + 1 < len(entries) else None
            if following is None and period_s[1] is not None:
                following = offset + round((period_s[1] - period_s[0]) * timescale)
            repeat = max(0, math.ceil((following - t) / s.d) - 1) if following is not None else 0
        for _ in range(repeat + 1):
            out.append((t, s.d))
            t += s.d
    return out


def _fixed(duration: int, period_s: tuple[float, float | None], timescale: int, offset: int, clock: _Clock, uri: str) -> list[tuple[int, int]]:
    """(t, d) of the segments of a SegmentTemplate@duration, up to the Period's end (live: now)."""
    if period_s[1] is None:
        raise UnreadableSourceError(f"cannot tell how many segments a SegmentTemplate@duration has: {uri}")
    count = math.ceil((period_s[1] - period_s[0]) * timescale / duration - 1e-6)
    if clock.live:
        count = math.floor((period_s[1] - period_s[0]) * timescale / duration + 1e-6)
    return [(offset + n * duration, duration) for n in range(max(0, count))]


def _fill(template: str, *, rid: str, bandwidth: int | None, number: int | None = None, time: int | None = None) -> str:
    """A SegmentTemplate's `$Identifier$`s replaced (`%0Nd` pads a number)."""
    values = {"RepresentationID": rid, "Bandwidth": bandwidth, "Number": number, "Time": time}

    def one(m: re.Match[str]) -> str:
        if m[0] == "$$":
            return "$"
        value = values[m[1]]
        if value is None:
            return m[0]
        return str(value).zfill(int(m[3])) if m[3] and m[1] != "RepresentationID" else str(value)

    return _IDENTIFIER.sub(one, template)


def _seconds(value: str | None, uri: str) -> float | None:
    """An xs:duration (`PT20.0S`, `P1DT2H`) in seconds; None when absent."""
    if value is None or not value.strip():
        return None
    m = _DURATION.match(value.strip())
    if m is None:
        raise UnreadableSourceError(f"unreadable duration {value!r} in {uri}")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _date(value: str, uri: str) -> float:
    """An xs:dateTime in epoch seconds; one without a zone is UTC (what DASH clocks are)."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UnreadableSourceError(f"unreadable date {value!r} in {uri}") from None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)).timestamp()


# The opener: a Representation's segments, read as HLS reads a CMAF rendition's.
open_container = segments_opener(load_playlist)
