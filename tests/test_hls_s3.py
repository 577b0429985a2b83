"""HLS playlists and segments stored on the S3 server (SeaweedFS): VOD and a live playlist that grows."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import pytest

from activities.decode import probe
from activities.offline import analyse_file
from support import hls
from support.seaweedfs import SeaweedFS
from vqa.contracts import StreamReport, StreamRequest, StreamStatus
from workflows import StreamMonitorWorkflow

from . import media
from .conftest import TemporalServer, run_async, running_worker, start_stream
from .test_hls import LIVE_TRUTH, main_vod, segmented  # noqa: F401 - module fixtures shared with the HTTP tests

pytestmark = pytest.mark.integration


def _bucket(seaweedfs: SeaweedFS) -> str:
    name = f"hls-{uuid.uuid4().hex[:10]}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


def _start(temporal_server: TemporalServer, task_queue: str, request: StreamRequest, on_started=None):  # type: ignore[no-untyped-def]
    """Runs one stream through Temporal; returns its report and the status answers seen while it ran."""

    async def scenario() -> tuple[StreamReport, list[tuple[float, StreamStatus]]]:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, request)
            edge = on_started() if on_started else (lambda: 0.0)
            seen: list[tuple[float, StreamStatus]] = []
            result = asyncio.ensure_future(handle.result())
            while not result.done():
                try:
                    seen.append((edge(), await handle.query(StreamMonitorWorkflow.status)))
                except Exception:  # noqa: BLE001 - the query may race the workflow's start
                    pass
                await asyncio.sleep(0.25)
            return await result, seen

    return run_async(scenario())


def test_vod_playlist_on_s3_matches_the_local_playlist(
    temporal_server: TemporalServer, task_queue: str, s3_env: SeaweedFS, main_vod: Path  # noqa: F811
) -> None:
    bucket = _bucket(s3_env)
    for path in main_vod.iterdir():
        if path.suffix in (".ts", ".m3u8"):
            s3_env.client().upload_file(str(path), bucket, f"shows/main/{path.name}")
    source = f"s3://{bucket}/shows/main/vod.m3u8"
    assert "://" not in (main_vod / "vod.m3u8").read_text(), "segment URIs are relative to the playlist"
    info = probe(source)
    assert info == probe(str(main_vod / "vod.m3u8"))
    request = StreamRequest(stream_id=f"s3-vod-{uuid.uuid4().hex[:6]}", source=source, window_seconds=4.0)
    report, _ = _start(temporal_server, task_queue, request)
    assert report.status == "completed" and report.windows == 8, report.error
    # The stream ran windows in parallel (the default): the same analysis of the local playlist.
    assert media.without_evidence(report.defects) == analyse_file(main_vod / "vod.m3u8", window_s=4.0, self_contained=True)
    assert all("/evidence/" in d.details["evidence"] for d in report.defects)
    assert media.match(report.defects, media.MAIN_TRUTH) == []


class _S3LivePlaylist:
    """Segments uploaded first; the playlist object re-uploaded with one more segment every segment's duration."""

    def __init__(self, seaweedfs: SeaweedFS, bucket: str, key: str, segments: list[tuple[str, float]], *, initial: int = 2) -> None:
        self.client, self.bucket, self.key, self.segments = seaweedfs.client(), bucket, key, segments
        self.published = initial
        self._stop = threading.Event()
        self._put(ended=False)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _put(self, *, ended: bool) -> None:
        body = hls.playlist_text(self.segments[: self.published], ended=ended).encode()
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/vnd.apple.mpegurl")

    def start(self):  # type: ignore[no-untyped-def]
        self.thread.start()
        return self.edge_s

    def edge_s(self) -> float:
        return sum(d for _, d in self.segments[: self.published])

    def _run(self) -> None:
        while self.published < len(self.segments):
            if self._stop.wait(self.segments[self.published][1]):
                return
            self.published += 1
            self._put(ended=False)
        self._put(ended=True)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


def test_live_playlist_on_s3_is_analysed_as_it_grows(
    temporal_server: TemporalServer, task_queue: str, s3_env: SeaweedFS,
    segmented: tuple[Path, list[tuple[str, float]]],  # noqa: F811
) -> None:
    directory, segments = segmented
    bucket = _bucket(s3_env)
    for name, _ in segments:
        s3_env.client().upload_file(str(directory / name), bucket, f"live/{name}")
    live = _S3LivePlaylist(s3_env, bucket, "live/live.m3u8", segments, initial=2)
    window_s = 2.0
    request = StreamRequest(stream_id=f"s3-live-{uuid.uuid4().hex[:6]}", source=f"s3://{bucket}/live/live.m3u8",
                            window_seconds=window_s)
    started = time.monotonic()
    try:
        report, seen = _start(temporal_server, task_queue, request, on_started=live.start)
    finally:
        live.stop()
    assert report.status == "completed", report.error
    assert report.media is not None and report.media.duration_s == pytest.approx(12.0, abs=0.2)
    assert media.match(report.defects, LIVE_TRUTH) == []
    assert time.monotonic() - started >= 9.0, "the playlist was followed in real time, not read once"
    statuses = [s for _, s in seen]
    assert any(s.live and s.state == "running" and s.windows_done for s in statuses)
    for want in LIVE_TRUTH:
        first = next((edge for edge, s in seen if any(d.kind == want.kind for d in s.defects + s.open_defects)), None)
        assert first is not None, f"{want.kind} never showed up while live"
        assert first <= want.start_s + 2.0 + window_s + 1.0 + 1e-6, (want, first)
