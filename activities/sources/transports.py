"""The transports by URL scheme (the one table of them), and the byte reads of playlists and
segments, each URI checked by the policy first."""

from __future__ import annotations

from vqa.settings import Settings

from ..errors import UnreadableSourceError
from ..policy import SourcePolicy, scheme_of
from . import file, http, s3
from .base import ByteRange, Transport

TRANSPORTS: dict[str, Transport] = {
    "file": file.TRANSPORT,
    "http": http.TRANSPORT,
    "https": http.TRANSPORT,
    "s3": s3.TRANSPORT,
}


def transport_for(url: str) -> Transport | None:
    """How `url` is reached; None for a scheme VQA does not read."""
    return TRANSPORTS.get(scheme_of(url))


def unsupported(url: str) -> UnreadableSourceError:
    return UnreadableSourceError(f"unsupported source scheme {scheme_of(url)!r} in {url}")


def read_bytes(
    uri: str, *, what: str = "source", byterange: ByteRange | None = None,
    policy: SourcePolicy | None = None, settings: Settings | None = None,
) -> bytes:
    """GET an http(s) URL or an `s3://` object, or read a local file/`file://` URL, once the
    worker's policy allows it; `byterange`: only (offset, length) of it. Default settings:
    `Settings()` (the environment now); default policy: the settings'."""
    settings = settings if settings is not None else Settings()
    policy = policy if policy is not None else SourcePolicy.from_settings(settings)
    policy.check_source(uri, what=what)
    transport = transport_for(uri)
    if transport is None:
        raise unsupported(uri)
    return transport.read(uri, policy=policy, settings=settings, what=what, byterange=byterange)


def resolve(base: str, ref: str) -> str:
    """A playlist's reference `ref` made absolute against the playlist's own URI."""
    if "://" in ref:
        return ref
    transport = transport_for(base)
    if transport is None:
        raise unsupported(base)
    return transport.join(base, ref)
