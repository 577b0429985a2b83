"""S3 objects through boto3: read as seekable files for PyAV, read and written whole for documents.

A source object is read with ranged GETs of `settings.s3_read_block_bytes`, a few
blocks kept in memory, so a window costs a handful of requests and never a copy on
disk. Credentials come from the standard AWS chain; `AWS_ENDPOINT_URL` (read by
boto3 itself) or `VQA_S3_ENDPOINT_URL` points the client at an S3-compatible server.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
import botocore.exceptions
from botocore.config import Config

from vqa.settings import Settings

from .errors import MediaNotFoundError, SourceUnavailableError, UnreadableSourceError

# The first GET, for the header: an MP4's index is as often at the end as here.
HEAD_BYTES = 256 * 1024
# Blocks one open object keeps: the header, the index (often at the end of an
# MP4) and the media being read (audio and video may lie apart) stay cached together.
CACHED_BLOCKS = 6
_ENDPOINT_FIELDS = ("s3_endpoint_url", "aws_endpoint_url_s3", "aws_endpoint_url")
# A change of any of these settings (tests, mostly) gets a new client.
_CLIENT_FIELDS = (
    *_ENDPOINT_FIELDS, "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
    "aws_profile", "aws_region", "network_timeout_s",
)
# Codes that say the request itself can never succeed (anything else 4xx is treated alike).
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}

_clients: dict[tuple[object, ...], Any] = {}
_clients_lock = threading.Lock()


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> ("bucket", "some/key"); the key may be empty."""
    parsed = urlparse(uri)
    if parsed.scheme.lower() != "s3" or not parsed.netloc:
        raise UnreadableSourceError(f"not an S3 URL (s3://bucket/key): {uri}")
    return parsed.netloc, unquote(parsed.path.lstrip("/"))


def s3_client(settings: Settings | None = None) -> Any:
    """The S3 client for these AWS settings (default: `Settings()`, the environment now); one per
    process for each (boto3 clients are thread-safe)."""
    settings = settings if settings is not None else Settings()
    key = tuple(settings.secret(name) for name in _CLIENT_FIELDS)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            custom_endpoint = any(getattr(settings, name) for name in _ENDPOINT_FIELDS)
            config = Config(
                # As FFmpeg's network reads: a server silent this long fails the call (retryably).
                connect_timeout=settings.network_timeout_s,
                read_timeout=settings.network_timeout_s,
                # The window activity is retried by Temporal too: a short retry here is enough.
                retries={"mode": "standard", "max_attempts": 3},
                max_pool_connections=32,
                # S3-compatible servers behind a plain host name have no per-bucket DNS names.
                s3={"addressing_style": "path"} if custom_endpoint else None,
            )
            # A session per client: boto3's default session is not thread-safe.
            client = boto3.session.Session().client("s3", endpoint_url=settings.s3_endpoint_url or None, config=config)
            _clients[key] = client
        return client


def _error(exc: Exception, action: str, uri: str) -> Exception:
    """The source error for a failed S3 call: permanent (4xx) or worth retrying (5xx, network).

    Raised `from None`: its message says what failed, and botocore's and urllib3's chained
    tracebacks would make the activity's failure bigger than the 4 KiB Temporal keeps of
    a retrying activity's last failure, which then reads only "Failure exceeds size limit.".
    """
    if isinstance(exc, botocore.exceptions.ClientError):
        info = exc.response.get("Error", {})
        code = str(info.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        bucket, _ = split_uri(uri)
        if code == "NoSuchBucket":
            return UnreadableSourceError(f"S3 bucket not found: {bucket} ({action} {uri})")
        if code in _NOT_FOUND:
            return MediaNotFoundError(f"S3 object not found: {uri}")
        if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return UnreadableSourceError(f"S3 access denied: {action} {uri} ({code})")
        if 400 <= status < 500 and code not in ("SlowDown", "RequestTimeout", "Throttling"):
            return UnreadableSourceError(f"S3 refused to {action} {uri}: {code} {info.get('Message', '')}".rstrip())
        return SourceUnavailableError(f"S3 unavailable: {action} {uri}: {code or status} {info.get('Message', '')}".rstrip())
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return UnreadableSourceError(f"no AWS credentials found to {action} {uri} (environment, profile or role)")
    return SourceUnavailableError(f"S3 unavailable: {action} {uri}: {exc}")


class S3ObjectReader(io.RawIOBase):
    """A read-only, seekable file over one S3 object, read by ranged GETs.

    A read the cache cannot serve fetches a block from where it starts, so a
    window read from its seek point onwards costs one GET per block; the first
    GET is a short one, for the container's header and the object's size.
    """

    def __init__(
        self, uri: str, *, client: Any = None, block_bytes: int | None = None, settings: Settings | None = None
    ) -> None:
        super().__init__()
        self.uri = uri
        self.bucket, self.key = split_uri(uri)
        if not self.key:
            raise UnreadableSourceError(f"S3 URL names a bucket but no object: {uri}")
        settings = settings if settings is not None else Settings()
        self._client = client or s3_client(settings)
        # Decoding asks for 32 KiB at a time: reading ahead a block (VQA_S3_READ_BLOCK_BYTES)
        # turns a window's thousands of small reads into a few requests.
        self._block = max(64 * 1024, block_bytes or settings.s3_read_block_bytes)
        self._ranges: OrderedDict[int, bytes] = OrderedDict()  # start offset -> bytes, least recent first
        self._pos = 0
        # The first GET also tells the object's size (Content-Range), and whether it exists.
        self.size = -1
        self._fetch(0, min(self._block, HEAD_BYTES))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        parts: list[bytes] = []
        while self._pos < end:
            start, data = self._cached(self._pos) or self._fetch(self._pos, self._block)
            piece = data[self._pos - start : end - start]
            if not piece:
                break
            parts.append(piece)
            self._pos += len(piece)
        return b"".join(parts)

    def readinto(self, target: Any) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def _cached(self, pos: int) -> tuple[int, bytes] | None:
        for start, data in reversed(self._ranges.items()):
            if start <= pos < start + len(data):
                self._ranges.move_to_end(start)
                return start, data
        return None

    def _fetch(self, first: int, length: int) -> tuple[int, bytes]:
        last = first + length - 1 if self.size < 0 else min(first + length, self.size) - 1
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={first}-{last}")
            data = response["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange" and first == 0:
                raise UnreadableSourceError(f"source is an empty S3 object: {self.uri}") from exc
            raise _error(exc, "read", self.uri) from None
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise _error(exc, "read", self.uri) from None
        if self.size < 0:
            total = str(response.get("ContentRange", "")).rpartition("/")[2]
            self.size = int(total) if total.isdigit() else int(response.get("ContentLength", len(data)))
            if self.size == 0:
                raise UnreadableSourceError(f"source is an empty S3 object: {self.uri}")
        self._ranges[first] = data
        self._ranges.move_to_end(first)
        while len(self._ranges) > CACHED_BLOCKS:
            self._ranges.popitem(last=False)
        return first, data

    def close(self) -> None:
        self._ranges.clear()
        super().close()


def open_object(uri: str, *, settings: Settings | None = None) -> S3ObjectReader:
    """Open an S3 object for reading; raises the source errors with a message naming it."""
    return S3ObjectReader(uri, settings=settings)


def put_object(
    uri: str, body: bytes, *, content_type: str = "application/json", settings: Settings | None = None
) -> None:
    """Write one object whole (a PUT replaces what the key held: writes are idempotent)."""
    bucket, key = split_uri(uri)
    try:
        s3_client(settings).put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, OSError) as exc:
        raise _error(exc, "write", uri) from None


def delete_object(uri: str, *, settings: Settings | None = None) -> None:
    """Remove one object (S3 answers success for a key that is not there)."""
    bucket, key = split_uri(uri)
    try:
        s3_client(settings).delete_object(Bucket=bucket, Key=key)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, OSError) as exc:
        raise _error(exc, "delete", uri) from None


def get_object(uri: str, *, byterange: tuple[int, int] | None = None, settings: Settings | None = None) -> bytes:
    """Read one small object whole (an HLS playlist or segment), or (offset, length) of it;
    raises the source errors naming it."""
    bucket, key = split_uri(uri)
    if not key:
        raise UnreadableSourceError(f"S3 URL names a bucket but no object: {uri}")
    ranged = {} if byterange is None else {"Range": f"bytes={byterange[0]}-{byterange[0] + byterange[1] - 1}"}
    try:
        return bytes(s3_client(settings).get_object(Bucket=bucket, Key=key, **ranged)["Body"].read())
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, OSError) as exc:
        raise _error(exc, "read", uri) from None


def list_objects(prefix_uri: str, *, settings: Settings | None = None) -> list[str]:
    """The URIs of the objects under `s3://bucket/prefix` (every page); raises the source errors naming it."""
    bucket, prefix = split_uri(prefix_uri)
    try:
        pages = s3_client(settings).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [f"s3://{bucket}/{item['Key']}" for page in pages for item in page.get("Contents", [])]
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, OSError) as exc:
        raise _error(exc, "list", prefix_uri) from None
