"""S3 objects (`s3://bucket/key`), read by ranged GETs (activities/s3.py; boto3 is loaded when one is read)."""

from __future__ import annotations

import posixpath

import av
import av.container

from vqa.settings import Settings

from ..opening import _refused_format, ffmpeg_errors, options
from ..policy import SourcePolicy
from ..store import S3Store
from .base import ByteRange, SourceRequest, Transport


def open_container(request: SourceRequest) -> av.container.InputContainer:
    from ..s3 import open_object

    s3_object = open_object(request.url, settings=request.settings)  # ranged GETs: never copied whole

    def head(n: int) -> tuple[bytes, str | None]:
        s3_object.seek(0)
        return s3_object.read(n), None

    with ffmpeg_errors(request.url, timeout_s=request.timeout_s, refused=lambda: _refused_format("s3", request.url, head)):
        return av.open(s3_object, mode="r", options=options(), timeout=request.timeout_s)


def read(uri: str, *, policy: SourcePolicy, settings: Settings, what: str, byterange: ByteRange | None) -> bytes:
    return S3Store(settings).read(uri, byterange=byterange)


def join(base: str, ref: str) -> str:
    """urljoin does not know s3://: the key is joined by hand, "/key" from the bucket's root."""
    bucket, _, key = base[5:].partition("/")
    joined = ref.lstrip("/") if ref.startswith("/") else posixpath.join(posixpath.dirname(key), ref)
    return f"s3://{bucket}/{posixpath.normpath(joined)}"


TRANSPORT = Transport(open=open_container, read=read, join=join)
