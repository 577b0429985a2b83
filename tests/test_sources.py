"""The one I/O layer (activities/sources/, activities/store.py): a source is opened through the
registry of its scheme after one policy check, and documents are read, written and listed the
same way in a directory and in S3 (a real SeaweedFS server)."""

from __future__ import annotations

import uuid
from pathlib import Path

import av
import av.container
import pytest

from activities import sources
from activities.errors import UnreadableSourceError
from activities.policy import SourcePolicy, SourceRefusedError
from activities.sources import transports
from activities.sources.base import SourceRequest, Transport
from activities.store import DirectoryStore, S3Store, join, normalise, store_for
from support.seaweedfs import SeaweedFS
from vqa.settings import Settings

from .media import ClipFactory


def _memory_transport(clip: Path, opened: list[str]) -> Transport:
    """A scheme that serves one clip from memory: what adding a scheme takes (a Transport)."""

    def open_container(request: SourceRequest) -> av.container.InputContainer:
        opened.append(request.url)
        return av.open(str(clip), mode="r")

    def read(uri: str, **_: object) -> bytes:
        opened.append(uri)
        return clip.read_bytes()

    return Transport(open=open_container, read=read, join=lambda base, ref: f"{base.rsplit('/', 1)[0]}/{ref}")


def test_a_new_scheme_is_one_registry_line_and_passes_the_policy_first(
    clips: ClipFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    monkeypatch.setitem(transports.TRANSPORTS, "memory", _memory_transport(clips("clean"), opened))

    allowed = Settings(allowed_schemes="memory,file")
    with sources.open_source("memory://clip.mp4", settings=allowed) as container:
        assert container.streams.video, "the registered opener's container comes back"
    assert sources.read_bytes("memory://clip.mp4", settings=allowed)[4:8] == b"ftyp"
    assert transports.resolve("memory://dir/a.m3u8", "seg.ts") == "memory://dir/seg.ts"
    assert opened == ["memory://clip.mp4", "memory://clip.mp4"]

    # Not in the worker's allowed schemes: refused in the one place, before the opener runs.
    default = Settings(allowed_schemes="file,http,https,s3")
    with pytest.raises(SourceRefusedError, match="memory:// URLs are not allowed"):
        sources.open_source("memory://clip.mp4", settings=default)
    with pytest.raises(SourceRefusedError, match="memory:// URLs are not allowed"):
        sources.read_bytes("memory://clip.mp4", settings=default)
    assert opened == ["memory://clip.mp4", "memory://clip.mp4"]


def test_a_scheme_without_a_transport_is_a_clear_error(clips: ClipFactory) -> None:
    allowed = Settings(allowed_schemes="ftp,file")
    with pytest.raises(UnreadableSourceError, match="unsupported source scheme 'ftp'"):
        sources.open_source("ftp://host/clip.mp4", settings=allowed)
    assert sources.opener_for("ftp://host/clip.mp4") is None
    assert sources.opener_for("https://host/live.m3u8") is sources.FORMATS["hls"].open
    assert sources.opener_for(str(clips("clean"))) is transports.TRANSPORTS["file"].open


def test_every_reader_is_checked_by_the_policy(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    policy = SourcePolicy.from_settings(Settings(allowed_roots=str(tmp_path / "media")))
    with pytest.raises(SourceRefusedError, match="outside the allowed roots"):
        sources.read_bytes(str(outside), policy=policy)


def _exercise(store: DirectoryStore | S3Store, location: str) -> None:
    """Write, read (whole and a range), replace and list documents under `location`."""
    first, second = join(location, "s", "windows", "00000.json"), join(location, "s", "windows", "00001.json")
    store.write(first, b'{"index": 0}')
    store.write(second, b'{"index": 1}', content_type="application/json")
    assert store.read(first) == b'{"index": 0}'
    assert store.read(second, byterange=(2, 5)) == b"index"
    store.write(first, b'{"index": 0, "again": true}')  # a write replaces: retries never double
    assert store.read(first) == b'{"index": 0, "again": true}'
    assert store.list(join(location, "s", "windows")) == [first, second]
    assert store.list(join(location, "s", "nothing-here")) == []


def test_a_directory_store(tmp_path: Path) -> None:
    location = normalise(str(tmp_path / "results"))
    store = store_for(location, Settings(results=location))
    assert isinstance(store, DirectoryStore)
    _exercise(store, location)
    assert not list((tmp_path / "results").rglob(".*.tmp")), "no half-written document is left beside"
    with pytest.raises(FileNotFoundError):
        store.read(join(location, "s", "missing.json"))


def test_an_s3_store_behaves_as_a_directory(s3_env: SeaweedFS) -> None:
    bucket = f"store-{uuid.uuid4().hex[:8]}"
    s3_env.client().create_bucket(Bucket=bucket)
    location = normalise(f"s3://{bucket}/results/")
    store = store_for(location, Settings())
    assert isinstance(store, S3Store)
    _exercise(store, location)
    with pytest.raises(UnreadableSourceError, match="not found"):
        store.read(join(location, "s", "missing.json"))


def test_results_go_to_a_directory_or_s3_only() -> None:
    with pytest.raises(UnreadableSourceError, match="unsupported results location"):
        store_for("https://example.invalid/results")
