"""HLS fixtures: a clip cut into MPEG-TS segments, served over HTTP on 127.0.0.1, VOD or growing live."""

from __future__ import annotations

import asyncio
import functools
import http.server
import re
import subprocess
import threading
import time
from pathlib import Path

import imageio_ffmpeg

from vqa.contracts import StreamReport, StreamRequest, StreamStatus, workflow_id_for
from workflows import StreamMonitorWorkflow

from .conftest import TemporalServer, run_async, running_worker


def segment(clip: Path, directory: Path, *, segment_s: float = 1.0) -> list[tuple[str, float]]:
    """Cut `clip` into TS segments (stream copy) and a VOD playlist `vod.m3u8`; returns (name, duration)s."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip),
            "-c", "copy", "-f", "hls", "-hls_time", str(segment_s), "-hls_list_size", "0",
            "-hls_playlist_type", "vod", "-hls_segment_filename", str(directory / "seg%03d.ts"),
            str(directory / "vod.m3u8"),
        ],
        check=True,
    )
    text = (directory / "vod.m3u8").read_text()
    return [(name, float(d)) for d, name in re.findall(r"#EXTINF:([\d.]+),\s*\n(\S+)", text)]


def playlist_text(segments: list[tuple[str, float]], *, ended: bool) -> str:
    """A media playlist of (name, duration) segments; `ended`: with #EXT-X-ENDLIST."""
    target = max((d for _, d in segments), default=1.0)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(target + 0.999)}", "#EXT-X-MEDIA-SEQUENCE:0"]
    for name, duration in segments:
        lines += [f"#EXTINF:{duration:.6f},", name]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def write_playlist(path: Path, segments: list[tuple[str, float]], *, ended: bool) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(playlist_text(segments, ended=ended))
    tmp.replace(path)


class LivePlaylist:
    """Publishes one more segment every `pace_s` seconds (real time by default), then #EXT-X-ENDLIST."""

    def __init__(self, directory: Path, segments: list[tuple[str, float]], *, initial: int = 2, pace_s: float | None = None,
                 end: bool = True) -> None:
        self.path = directory / "live.m3u8"
        self.segments = segments
        self.published = initial
        self.pace_s = pace_s
        self.end = end
        self.published_at: list[float] = []
        self._stop = threading.Event()
        write_playlist(self.path, segments[:initial], ended=False)
        self.published_at = [time.monotonic()] * initial
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LivePlaylist:
        self.thread.start()
        return self

    def edge_s(self) -> float:
        return sum(d for _, d in self.segments[: self.published])

    def _run(self) -> None:
        while self.published < len(self.segments) and not self._stop.is_set():
            pace = self.pace_s if self.pace_s is not None else self.segments[self.published][1]
            if self._stop.wait(pace):
                return
            self.published += 1
            self.published_at.append(time.monotonic())
            write_playlist(self.path, self.segments[: self.published], ended=False)
        if self.end and not self._stop.is_set():
            write_playlist(self.path, self.segments, ended=True)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


class StaticServer:
    """Serves a directory over HTTP on 127.0.0.1 (a free port)."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


def analyse_live(
    server: TemporalServer, task_queue: str, request: StreamRequest, live: LivePlaylist
) -> tuple[StreamReport, list[tuple[float, StreamStatus]]]:
    """Run the stream on a worker while `live` publishes; returns the report and, about every
    0.25 s, the live edge then and the stream's status."""

    async def scenario() -> tuple[StreamReport, list[tuple[float, StreamStatus]]]:
        async with running_worker(server, task_queue) as client:
            handle = await client.start_workflow(
                StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=task_queue,
                result_type=StreamReport,
            )
            live.start()
            seen: list[tuple[float, StreamStatus]] = []
            result = asyncio.ensure_future(handle.result())
            while not result.done():
                try:
                    seen.append((live.edge_s(), await handle.query(StreamMonitorWorkflow.status)))
                except Exception:  # noqa: BLE001 - the query may race the workflow's start
                    pass
                await asyncio.sleep(0.25)
            return await result, seen

    return run_async(scenario())
