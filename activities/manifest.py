"""A live channel's manifest health (`manifest_error`, track `manifest`), every rendition, decoded
or not: one activity reloads every rendition's playlist about twice per target duration and
returns as soon as a check opens or closes (or after `watch_s`, heartbeating meanwhile), so
a healthy channel costs one activity every few minutes, not one per poll.

Checks (`details.check`), each naming its rendition(s):
- `stale_playlist`: not updated for more than 1.5x the target duration; closes when it grows.
- `media_sequence`: `#EXT-X-MEDIA-SEQUENCE` going backwards, or skipping segments never listed.
- `target_duration`: a new segment longer than the target duration (rounded, RFC 8216).
- `segment_unavailable`: the newest segment answers 4xx/5xx or times out (a 1-byte range read);
  closes when a later one answers.
- `rendition_missing`: the playlist itself cannot be loaded; closes when it loads again.
- `rendition_drift`: live edges further apart than a target duration; closes when back within.
Times are on the rendition's playlist timeline (its live edge when the check opened).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import CancelledError

from vqa.contracts import DefectEvent, ManifestWatchRequest, ManifestWatchResult, PlaylistState, RenditionInfo
from vqa.settings import Settings

from .channel import manifest_error
from .errors import SourceUnavailableError, UnreadableSourceError
from .policy import SourcePolicy
from .sources import load_playlist
from .sources.hls import Playlist
from .sources.transports import read_bytes

STALE_FACTOR = 1.5


def event(check: str, name: str, start_s: float, end_s: float, phase: str, **details: object) -> DefectEvent:
    """A manifest event; its id names the check and the rendition (several can open at one time)."""
    defect = manifest_error(check, start_s, end_s, renditions=[name], **details)
    return DefectEvent(id=f"manifest_error:{check}:{name}:{round(start_s * 1000)}", phase=phase, defect=defect)  # type: ignore[arg-type]


class Watch:
    """One activity's watch over the channel's playlists; `poll()` is one round of reloads."""

    def __init__(self, request: ManifestWatchRequest, settings: Settings, *, wall: Callable[[], float] = time.time) -> None:
        self.request, self.settings, self.wall = request, settings, wall
        self.policy = SourcePolicy.from_settings(settings)
        known = {p.name: p for p in request.playlists}
        self.playlists = {r.name: known.get(r.name, PlaylistState(name=r.name)) for r in request.renditions}
        self.open = {e.id: e for e in request.open_events}
        self.events: list[DefectEvent] = []

    def _opened(self, check: str, name: str) -> DefectEvent | None:
        return next((e for e in self.open.values() if e.defect.details.get("check") == check
                     and e.defect.details.get("renditions") == [name]), None)

    def _open(self, check: str, name: str, start_s: float, value: float | None = None, **details: object) -> None:
        if self._opened(check, name) is None:
            e = event(check, name, start_s, start_s, "opened", **details)
            e.defect.value = value
            self.open[e.id] = e
            self.events.append(e)

    def _close(self, check: str, name: str, end_s: float, value: float | None = None) -> None:
        e = self._opened(check, name)
        if e is not None:
            del self.open[e.id]
            d = e.defect
            closed = d.model_copy(update={"end_s": round(max(end_s, d.start_s), 3),
                                          "duration_s": round(max(0.0, end_s - d.start_s), 3),
                                          "value": value if value is not None else d.value})
            self.events.append(DefectEvent(id=e.id, phase="closed", defect=closed))

    def _instant(self, check: str, name: str, at_s: float, value: float, **details: object) -> None:
        for phase in ("opened", "closed"):
            e = event(check, name, at_s, at_s, phase, **details)
            e.defect.value = value
            self.events.append(e)

    def poll(self) -> None:
        now = self.wall()
        for rendition in self.request.renditions:
            self._check(rendition, now)
        self._drift()

    def _check(self, rendition: RenditionInfo, now: float) -> None:
        state = self.playlists[rendition.name]
        if state.ended:
            return
        try:
            playlist = load_playlist(rendition.uri, what="HLS rendition playlist", policy=self.policy, settings=self.settings)
        except (UnreadableSourceError, SourceUnavailableError) as exc:
            self._open("rendition_missing", rendition.name, state.edge_s, error=str(exc))
            return
        self._close("rendition_missing", rendition.name, state.edge_s)
        self._sequence(rendition.name, state, playlist)
        changed = (playlist.media_sequence, len(playlist.segments)) != (state.media_sequence, state.segments)
        if changed or state.changed_at is None:
            self._close("stale_playlist", rendition.name, playlist.duration_s,
                        value=None if state.changed_at is None else round(now - state.changed_at, 3))
            state.changed_at = now
        elif now - state.changed_at > STALE_FACTOR * playlist.target_duration_s and not playlist.ended:
            self._open("stale_playlist", rendition.name, state.edge_s, value=round(now - state.changed_at, 3),
                       target_duration_s=playlist.target_duration_s)
        self._availability(rendition.name, state, playlist)
        state.media_sequence, state.segments, state.edge_s = playlist.media_sequence, len(playlist.segments), playlist.duration_s
        state.dated_edge = playlist.wall_start + playlist.duration_s if playlist.wall_start is not None else None
        state.ended = playlist.ended

    def _sequence(self, name: str, state: PlaylistState, playlist: Playlist) -> None:
        """Media sequence backwards or skipping; new segments longer than the target duration."""
        if state.media_sequence is None:
            return
        before_end = state.media_sequence + state.segments  # the number the next new segment gets
        if playlist.media_sequence < state.media_sequence:
            self._instant("media_sequence", name, state.edge_s, float(playlist.media_sequence - state.media_sequence),
                          direction="backwards", previous=state.media_sequence, now=playlist.media_sequence)
        elif playlist.media_sequence > before_end:
            self._instant("media_sequence", name, state.edge_s, float(playlist.media_sequence - before_end),
                          direction="skipped", previous=state.media_sequence, now=playlist.media_sequence)
        new = playlist.segments[max(0, before_end - playlist.media_sequence):]
        for segment in new:
            if round(segment.duration_s) > playlist.target_duration_s:
                self._instant("target_duration", name, segment.start_s, segment.duration_s,
                              target_duration_s=playlist.target_duration_s)

    def _availability(self, name: str, state: PlaylistState, playlist: Playlist) -> None:
        """The newest segment, once: its first byte read (a CDN that lost it answers 404)."""
        if not playlist.segments or playlist.segments[-1].uri == state.checked_segment:
            return
        newest = playlist.segments[-1]
        state.checked_segment = newest.uri
        try:
            read_bytes(newest.uri, what="HLS segment", byterange=(0, 1), policy=self.policy, settings=self.settings)
        except (UnreadableSourceError, SourceUnavailableError) as exc:
            self._open("segment_unavailable", name, newest.start_s, error=str(exc), segment=newest.uri)
            return
        self._close("segment_unavailable", name, newest.start_s)

    def _drift(self) -> None:
        """Live edges (dated: by the clock; else by media sequence) more than a target duration apart."""
        live = [s for s in self.playlists.values() if not s.ended and s.media_sequence is not None]
        target = self.request.target_duration_s
        edges = {s.name: (s.dated_edge if s.dated_edge is not None else s.edge_s) for s in live}
        if len(edges) < 2:
            return
        lead = max(edges.values())
        for name, edge in edges.items():
            if lead - edge > target:
                self._open("rendition_drift", name, self.playlists[name].edge_s, value=round(lead - edge, 3))
            else:
                self._close("rendition_drift", name, self.playlists[name].edge_s)

    def result(self) -> ManifestWatchResult:
        states = list(self.playlists.values())
        return ManifestWatchResult(playlists=states, events=self.events, ended=all(s.ended for s in states))


def watch_manifests(
    request: ManifestWatchRequest, *, settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
) -> ManifestWatchResult:
    """Reload every rendition's playlist until a check opens or closes, all have ended, or `watch_s`."""
    settings = settings if settings is not None else Settings()
    watch = Watch(request, settings)
    poll = request.poll_s if request.poll_s is not None else max(0.5, min(request.target_duration_s / 2, 2.0))
    started = clock()
    while True:
        watch.poll()
        result = watch.result()
        if result.events or result.ended or clock() - started >= request.watch_s:
            return result
        if activity.in_activity():
            activity.heartbeat()
            if activity.is_cancelled():  # the channel ended: its renditions are done
                raise CancelledError("manifest watch cancelled")
        sleep(poll)
