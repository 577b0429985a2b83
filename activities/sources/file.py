"""Local files (plain paths and `file://` URLs), inside the policy's allowed roots."""

from __future__ import annotations

import os
from urllib.parse import unquote, urljoin, urlparse

import av
import av.container

from vqa.settings import Settings

from ..errors import MediaNotFoundError, SourceUnavailableError, UnreadableSourceError
from ..opening import _refused_format, ffmpeg_errors, options
from ..policy import SourcePolicy
from ..store import DirectoryStore
from .base import ByteRange, SourceRequest, Transport


def open_container(request: SourceRequest) -> av.container.InputContainer:
    source = request.url
    parsed = urlparse(source)
    target = unquote(parsed.path) if parsed.scheme.lower() == "file" else source
    real = request.policy.local_path(source)
    if not os.path.exists(real):
        raise UnreadableSourceError(f"source not found: {target}")
    if os.path.isdir(real):
        raise UnreadableSourceError(f"source is a directory, not a media file: {target}")
    if os.path.getsize(real) == 0:
        raise UnreadableSourceError(f"source is an empty file: {target}")
    with ffmpeg_errors(target, timeout_s=request.timeout_s, refused=lambda: _refused_format("", real)):
        return av.open(real, mode="r", options=options() | {"protocol_whitelist": "file"}, timeout=request.timeout_s)


def read(uri: str, *, policy: SourcePolicy, settings: Settings, what: str, byterange: ByteRange | None) -> bytes:
    path = policy.local_path(uri, what=what)
    try:
        return DirectoryStore().read(path, byterange=byterange)
    except FileNotFoundError as exc:
        raise MediaNotFoundError(f"source not found: {path}") from exc
    except OSError as exc:
        raise SourceUnavailableError(f"cannot read {path}: {exc}") from exc


def join(base: str, ref: str) -> str:
    if "://" in base:  # file:///dir/playlist.m3u8
        return urljoin(base, ref)
    if ref.startswith("/"):
        return ref
    return os.path.join(os.path.dirname(base), ref)


TRANSPORT = Transport(open=open_container, read=read, join=join)
