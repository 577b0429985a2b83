"""Opening a source: `open_source(url, policy, settings)` checks it against the worker's
allow-list, then hands it to its opener: a playlist format's (HLS, DASH) when the URL names
one, else its scheme's transport (transports.py: file, http(s), s3). `load_playlist` lists
a segmented source's segments, whichever its format.

A new scheme is one module (a `Transport`) and one line in `transports.TRANSPORTS`;
a new playlist format one module and one line in `FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import av.container

from vqa.settings import Settings

from ..policy import SourcePolicy
from . import dash, hls
from .base import Opener, SourceRequest
from .transports import read_bytes, transport_for, unsupported


@dataclass(frozen=True)
class PlaylistFormat:
    """A format that names its media in segments: told by its URL, opened segment by segment."""

    matches: Callable[[str], bool]
    open: Opener
    load: Callable[..., hls.Playlist]  # (url, *, what, policy, settings): its segments as a media playlist


FORMATS: dict[str, PlaylistFormat] = {
    "hls": PlaylistFormat(matches=hls.is_hls, open=hls.open_container, load=hls.load_playlist),
    "dash": PlaylistFormat(matches=dash.is_dash, open=dash.open_container, load=dash.load_playlist),
}


def segmented(url: str) -> PlaylistFormat | None:
    """The playlist format `url` names (HLS, DASH), or None: a plain file or stream."""
    return next((f for f in FORMATS.values() if f.matches(url)), None)


def load_playlist(
    url: str, *, what: str = "source", policy: SourcePolicy | None = None, settings: Settings | None = None
) -> hls.Playlist:
    """The segments of a segmented source (an HLS media playlist, a DASH Representation) as a playlist."""
    playlist = segmented(url)
    if playlist is None:
        raise unsupported(url)
    return playlist.load(url, what=what, policy=policy, settings=settings)


def opener_for(url: str) -> Opener | None:
    """The opener of `url`: its playlist format's, else its scheme's; None for a scheme VQA does not read."""
    playlist = segmented(url)
    if playlist is not None:
        return playlist.open
    transport = transport_for(url)
    return transport.open if transport is not None else None


def open_source(
    url: str, policy: SourcePolicy | None = None, settings: Settings | None = None, *,
    segments: Sequence[Any] | None = None, skip_missing: bool = False,
) -> av.container.InputContainer:
    """`url` opened for PyAV, once the policy allows it (refusals are final). `segments`: for a
    playlist, the segments to read (default: its first two). Default settings: `Settings()` (the
    environment now); default policy: the settings'. Raises the source errors."""
    opener = opener_for(url)
    if opener is None:
        raise unsupported(url)
    settings = settings if settings is not None else Settings()
    policy = policy if policy is not None else SourcePolicy.from_settings(settings)
    policy.check_source(url)  # the worker's allow-list: every source passes here
    return opener(SourceRequest(url=url, policy=policy, settings=settings, segments=segments, skip_missing=skip_missing))


__all__ = [
    "FORMATS", "SourceRequest", "dash", "hls", "load_playlist", "open_source", "opener_for", "read_bytes", "segmented",
]
