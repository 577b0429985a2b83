"""An HLS origin: a clip cut into MPEG-TS or fragmented-MP4 (CMAF) segments, served over HTTP(S) on
127.0.0.1, VOD or growing live; and a stream analysed on a worker while a live playlist grows."""

from __future__ import annotations

import asyncio
import functools
import http.server
import io
import re
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import imageio_ffmpeg
import temporalio.client
from temporalio.client import Client
from temporalio.worker import ActivityInboundInterceptor, ActivityOutboundInterceptor, Interceptor

from cli.worker import build_worker
from vqa.contracts import StreamReport, StreamRequest, StreamStatus, workflow_id_for
from vqa.runtime import Settings, connect
from workflows import StreamMonitorWorkflow


class TemporalServer(Protocol):
    """A Temporal server to run streams on (tests/conftest.py's TemporalServer)."""

    def settings(self, task_queue: str) -> Settings: ...


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


def keyframes_every(clip: Path, target: Path, *, every_s: float) -> Path:
    """`clip` with its video re-encoded by x264 (its default long GOP, preset veryfast) and a
    keyframe forced every `every_s`, as a packager's encode is before it is cut; sound copied."""
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip),
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-force_key_frames", f"expr:gte(t,n_forced*{every_s:g})", "-c:a", "copy", str(target),
        ],
        check=True, capture_output=True, timeout=300,
    )
    return target


def segment_fmp4(clip: Path, directory: Path, *, segment_s: float = 2.0, cmaf: bool = False,
                 single_file: bool = False) -> list[tuple[str, float]]:
    """Cut `clip` into fragmented-MP4 segments (stream copy) with an init segment `init.mp4`
    (#EXT-X-MAP) and a VOD playlist `vod.m3u8`; `cmaf`: CMAF fragments (`-movflags +cmaf`);
    `single_file`: one `media.mp4`, the playlist naming byte ranges of it. Returns (name, duration)s."""
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip),
        "-c", "copy", "-f", "hls", "-hls_time", str(segment_s), "-hls_list_size", "0",
        "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
    ]
    if cmaf:
        cmd += ["-movflags", "+cmaf"]
    if single_file:
        cmd += ["-hls_flags", "single_file", "-hls_segment_filename", str(directory / "media.mp4")]
    else:
        cmd += ["-hls_fmp4_init_filename", "init.mp4", "-hls_segment_filename", str(directory / "seg%03d.m4s")]
    subprocess.run([*cmd, str(directory / "vod.m3u8")], check=True, capture_output=True, timeout=300)
    text = (directory / "vod.m3u8").read_text()
    return [(name, float(d)) for d, name in re.findall(r"#EXTINF:([\d.]+),\s*\n(?:#EXT-X-BYTERANGE:\S+\s*\n)?(\S+)", text)]


def playlist_text(segments: list[tuple[str, float]], *, ended: bool, init: str | None = None) -> str:
    """A media playlist of (name, duration) segments; `ended`: with #EXT-X-ENDLIST; `init`: the
    fragmented-MP4 init segment (#EXT-X-MAP)."""
    target = max((d for _, d in segments), default=1.0)
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{7 if init else 3}", f"#EXT-X-TARGETDURATION:{int(target + 0.999)}",
             "#EXT-X-MEDIA-SEQUENCE:0"]
    if init is not None:
        lines.append(f'#EXT-X-MAP:URI="{init}"')
    for name, duration in segments:
        lines += [f"#EXTINF:{duration:.6f},", name]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def write_playlist(path: Path, segments: list[tuple[str, float]], *, ended: bool, init: str | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(playlist_text(segments, ended=ended, init=init))
    tmp.replace(path)


class LivePlaylist:
    """Publishes one more segment every `pace_s` seconds (real time by default), then #EXT-X-ENDLIST.

    `hold_after`: once that many segments are out, it stops growing until `resume()`.
    `init`: fragmented-MP4 segments, with this init segment (#EXT-X-MAP).
    """

    def __init__(self, directory: Path, segments: list[tuple[str, float]], *, initial: int = 2, pace_s: float | None = None,
                 end: bool = True, hold_after: int | None = None, init: str | None = None) -> None:
        self.path = directory / "live.m3u8"
        self.segments = segments
        self.published = initial
        self.pace_s = pace_s
        self.end = end
        self.hold_after = hold_after
        self.init = init
        self.published_at: list[float] = []
        self._stop = threading.Event()
        self._resumed = threading.Event()
        write_playlist(self.path, segments[:initial], ended=False, init=init)
        self.published_at = [time.monotonic()] * initial
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LivePlaylist:
        self.thread.start()
        return self

    def edge_s(self) -> float:
        return sum(d for _, d in self.segments[: self.published])

    def resume(self) -> None:
        self._resumed.set()

    def _run(self) -> None:
        while self.published < len(self.segments) and not self._stop.is_set():
            if self.published == self.hold_after:
                while not self._resumed.wait(0.05):
                    if self._stop.is_set():
                        return
            pace = self.pace_s if self.pace_s is not None else self.segments[self.published][1]
            if self._stop.wait(pace):
                return
            self.published += 1
            self.published_at.append(time.monotonic())
            write_playlist(self.path, self.segments[: self.published], ended=False, init=self.init)
        if self.end and not self._stop.is_set():
            write_playlist(self.path, self.segments, ended=True, init=self.init)

    def stop(self) -> None:
        self._stop.set()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout=5)


class StaticServer:
    """Serves a directory over HTTP on 127.0.0.1 (a free port), honouring `Range: bytes=` as media
    servers and CDNs do; over HTTPS with `tls=(certificate, key)`. `ranges` lists the Range
    header of every file request (None: the whole file). `segment_delay_s`: a slow origin,
    each `.ts` segment is answered that much later."""

    def __init__(self, directory: Path, *, tls: tuple[Path, Path] | None = None, segment_delay_s: float = 0.0) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.ranges: list[str | None] = []
        self.httpd.ranges = self.ranges  # type: ignore[attr-defined]
        self.httpd.segment_delay_s = segment_delay_s  # type: ignore[attr-defined]
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def send_head(self) -> io.BytesIO | None:  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return super().send_head()  # 404, directory listings: as usual
        if path.suffix == ".ts":
            time.sleep(self.server.segment_delay_s)  # type: ignore[attr-defined]
        data = path.read_bytes()  # a whole file at once: the live playlist is replaced atomically
        asked = self.headers.get("Range")
        self.server.ranges.append(asked)  # type: ignore[attr-defined]
        start, end = 0, len(data) - 1
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", (asked or "").strip())
        if ranged and (ranged[1] or ranged[2]):
            if ranged[1]:
                start, end = int(ranged[1]), min(int(ranged[2]), end) if ranged[2] else end
            else:
                start = max(0, len(data) - int(ranged[2]))  # the last N bytes
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return io.BytesIO(data[start : end + 1])

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


class HeartbeatCounter(temporalio.client.Interceptor, Interceptor):
    """Counts the heartbeats activities ask to send, by activity type: an upper bound on those
    the SDK sends (it throttles them), each a billable action."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        counter = self

        class Inbound(ActivityInboundInterceptor):
            def init(self, outbound: ActivityOutboundInterceptor) -> None:
                class Outbound(ActivityOutboundInterceptor):
                    def heartbeat(self, *details: Any) -> None:
                        counter.calls[self.info().activity_type] += 1
                        super().heartbeat(*details)

                super().init(Outbound(outbound))

        return Inbound(next)


def analyse_live(
    server: TemporalServer, task_queue: str, request: StreamRequest, live: LivePlaylist, *,
    on_status: Callable[[StreamStatus], None] | None = None, interceptors: list[Interceptor] | None = None,
    stop_when: Callable[[StreamStatus], bool] | None = None,
) -> tuple[StreamReport, list[tuple[float, StreamStatus]]]:
    """Run the stream on a worker while `live` publishes; returns the report and, about every
    0.25 s, the live edge then and the stream's status (each also handed to `on_status`).
    `stop_when`: the stream gets the `stop` signal once a status satisfies it."""

    async def scenario() -> tuple[StreamReport, list[tuple[float, StreamStatus]]]:
        client = await connect(server.settings(task_queue))
        if interceptors:  # the worker uses the client's worker interceptors
            client = Client(**{**client.config(), "interceptors": interceptors})
        async with build_worker(client, task_queue=task_queue, max_concurrent_windows=2):
            handle = await client.start_workflow(
                StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=task_queue,
                result_type=StreamReport,
            )
            live.start()
            seen: list[tuple[float, StreamStatus]] = []
            result = asyncio.ensure_future(handle.result())
            stopped = False
            while not result.done():
                try:
                    seen.append((live.edge_s(), await handle.query(StreamMonitorWorkflow.status)))
                except Exception:  # noqa: BLE001 - the query may race the workflow's start
                    pass
                else:
                    if on_status is not None:
                        on_status(seen[-1][1])
                    if stop_when is not None and not stopped and stop_when(seen[-1][1]):
                        await handle.signal(StreamMonitorWorkflow.stop)
                        stopped = True
                await asyncio.sleep(0.25)
            return await result, seen

    return asyncio.run(scenario())
