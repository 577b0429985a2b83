"""What an opener is given (`SourceRequest`) and what a transport offers (`Transport`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import av.container

from vqa.settings import Settings

from ..policy import SourcePolicy

ByteRange = tuple[int, int]  # (offset, length)


@dataclass(frozen=True)
class SourceRequest:
    """A source to open, already allowed by the policy (which its opener still applies to
    every address it reaches), with the worker's settings."""

    url: str
    policy: SourcePolicy
    settings: Settings
    segments: Sequence[Any] | None = None  # a playlist's segments to read (None: from its start)
    skip_missing: bool = False  # a live window: a segment that answers not-found is a gap, not a failure

    @property
    def timeout_s(self) -> float:
        """How long a network source may stay silent before a read fails (retryably)."""
        return int(self.settings.network_timeout_s * 1_000_000) / 1e6


Opener = Callable[[SourceRequest], av.container.InputContainer]
# A reference in a playlist at `base`, made absolute.
Joiner = Callable[[str, str], str]


class Reader(Protocol):
    """Reads `uri` whole, or (offset, length) of it, once the policy allowed it; `what` names it."""

    def __call__(
        self, uri: str, *, policy: SourcePolicy, settings: Settings, what: str, byterange: ByteRange | None
    ) -> bytes: ...


@dataclass(frozen=True)
class Transport:
    """How one URL scheme is reached: opened for FFmpeg, read as bytes (playlists, segments),
    and how a playlist's relative references join onto it."""

    open: Opener
    read: Reader
    join: Joiner
