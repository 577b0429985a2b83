"""Where documents are kept: a local directory or an S3 prefix, behind one interface (read, write, list).

Results, the report page, evidence, and the byte reads of local and S3 sources go
through it; `store_for` is the one place that tells the two kinds apart.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol
from urllib.parse import unquote, urlparse

from vqa.settings import Settings

from .errors import SourceUnavailableError, UnreadableSourceError
from .policy import SourcePolicy

ByteRange = tuple[int, int]  # (offset, length)


class Store(Protocol):
    """Documents under a location. Reads of a missing document raise FileNotFoundError (a
    directory) or UnreadableSourceError (S3); writes raise the source errors, permanent or transient."""

    parallel_reads: ClassVar[bool]  # many small reads are worth a thread pool (S3: a request each)

    def read(self, uri: str, *, byterange: ByteRange | None = None) -> bytes: ...

    def write(self, uri: str, body: bytes, *, content_type: str = "application/json") -> None: ...

    def list(self, directory: str) -> list[str]: ...

    def delete(self, uri: str) -> None: ...


def local_path(uri: str) -> Path:
    """The path of a plain path or a `file://` URL."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)


@dataclass(frozen=True)
class DirectoryStore:
    """Documents as files. With a policy, writes outside its results roots (other than the
    worker's own default location) are refused."""

    policy: SourcePolicy | None = None
    default_location: str | None = None
    parallel_reads: ClassVar[bool] = False

    def read(self, uri: str, *, byterange: ByteRange | None = None) -> bytes:
        with open(local_path(uri), "rb") as file:
            if byterange is None:
                return file.read()
            file.seek(byterange[0])
            return file.read(byterange[1])

    def write(self, uri: str, body: bytes, *, content_type: str = "application/json") -> None:
        path = local_path(uri)
        if self.policy is not None:
            self.policy.check_results_path(str(path), default_location=self.default_location)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written beside, then renamed over: a reader never sees half a document.
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                tmp.write_bytes(body)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
            raise UnreadableSourceError(f"cannot write results to {path}: {exc.strerror or exc}") from exc
        except OSError as exc:
            raise SourceUnavailableError(f"cannot write results to {path}: {exc.strerror or exc}") from exc

    def delete(self, uri: str) -> None:
        try:
            local_path(uri).unlink(missing_ok=True)
        except OSError as exc:
            raise SourceUnavailableError(f"cannot remove {uri}: {exc.strerror or exc}") from exc

    def list(self, directory: str) -> list[str]:
        path = local_path(directory)
        if not path.is_dir():
            return []
        return [str(p) for p in sorted(path.iterdir()) if p.is_file()]


@dataclass(frozen=True)
class S3Store:
    """Documents as S3 objects (boto3 is loaded when one is first read or written)."""

    settings: Settings
    parallel_reads: ClassVar[bool] = True

    def read(self, uri: str, *, byterange: ByteRange | None = None) -> bytes:
        from .s3 import get_object

        return get_object(uri, byterange=byterange, settings=self.settings)

    def write(self, uri: str, body: bytes, *, content_type: str = "application/json") -> None:
        from .s3 import put_object

        put_object(uri, body, content_type=content_type, settings=self.settings)

    def delete(self, uri: str) -> None:
        from .s3 import delete_object

        delete_object(uri, settings=self.settings)

    def list(self, directory: str) -> list[str]:
        from .s3 import list_objects

        return list_objects(directory.rstrip("/") + "/", settings=self.settings)


def store_for(uri: str, settings: Settings | None = None) -> Store:
    """The store holding `uri` (a directory, a `file://` URL or `s3://bucket/prefix`), with the
    worker's results rules (default settings: `Settings()`, the environment now)."""
    settings = settings if settings is not None else Settings()
    if uri.lower().startswith("s3://"):
        return S3Store(settings)
    if urlparse(uri).scheme not in ("", "file"):
        raise UnreadableSourceError(f"unsupported results location {uri} (a directory or s3://bucket/prefix)")
    default = settings.default_results()
    return DirectoryStore(SourcePolicy.from_settings(settings), default if "://" not in default else None)


def normalise(location: str) -> str:
    """A location as documents are named under it: a directory made absolute, a URL without its last `/`."""
    if "://" not in location:
        return os.path.abspath(os.path.expanduser(location))
    return location.rstrip("/")


def join(location: str, *parts: str) -> str:
    """A document's name under `location`."""
    if "://" in location:
        return "/".join((location.rstrip("/"), *parts))
    return os.path.join(location, *parts)
