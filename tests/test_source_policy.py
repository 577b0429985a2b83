"""The worker's source allow-list (activities/policy.py): what an untrusted starter may make a
worker read or POST to. Real files, real HTTP servers on 127.0.0.1, a real Temporal server."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.errors import UnreadableSourceError
from activities.decode import probe
from activities.notify import notify_defects
from activities.policy import SourcePolicy, SourceRefusedError
from support import hls
from vqa.contracts import Defect, DefectEvent, NotifyRequest, StreamReport, StreamRequest

from . import media
from .conftest import TemporalServer, run_async, run_starter, running_worker, start_stream

METADATA = "http://169.254.169.254/latest/meta-data"
_POLICY_VARIABLES = ("VQA_ALLOWED_SCHEMES", "VQA_ALLOWED_ROOTS", "VQA_ALLOW_PRIVATE_URLS", "VQA_REFUSE_PRIVATE_URLS")


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the defaults, whatever the environment running the suite sets."""
    for name in _POLICY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Server:
    """An HTTP server on 127.0.0.1: `routes` maps a path to (status, headers, body); records each request."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)  # the Host header of each request
    url: str = ""

    def serve(self, path: str, body: bytes, status: int = 200, **headers: str) -> str:
        self.routes[path] = (status, headers, body)
        return self.url + path

    def redirect(self, path: str, location: str) -> str:
        return self.serve(path, b"", 302, Location=location)


@pytest.fixture
def servers() -> Iterator[Callable[[], Server]]:
    started: list[http.server.ThreadingHTTPServer] = []

    def start() -> Server:
        state = Server()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, send_body: bool) -> None:
                state.hits.append(self.path)
                state.hosts.append(self.headers.get("Host", ""))
                status, headers, body = state.routes.get(self.path, (404, {}, b""))
                length = len(body)
                start_at = 0
                ranged = self.headers.get("Range", "")
                if status == 200 and ranged.startswith("bytes="):  # FFmpeg seeks with ranges
                    first, _, last = ranged[6:].partition("-")
                    start_at = int(first or 0)
                    end = min(int(last) if last else length - 1, length - 1)
                    status, body = 206, body[start_at : end + 1]
                    headers = {**headers, "Content-Range": f"bytes {start_at}-{end}/{length}"}
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer(True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path in state.routes:
                    self._answer(True)
                    return
                state.hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return state

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def _refused(source: str, *pattern: str) -> str:
    """Probe `source`; it must be refused at once, with a message matching every pattern."""
    began = time.monotonic()
    with pytest.raises(SourceRefusedError) as err:
        probe(source)
    assert time.monotonic() - began < 2.0, "refused before any connection, not after a timeout"
    message = str(err.value)
    for p in pattern:
        assert p in message, message
    return message


# -- local files ---------------------------------------------------------------------------


def test_local_files_must_lie_in_the_allowed_roots(clips, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    clip = clips("clean")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(clip.read_bytes())
    root = tmp_path / "media"
    root.mkdir()
    (root / "inside.mp4").write_bytes(clip.read_bytes())
    (root / "link.mp4").symlink_to(outside)
    monkeypatch.setenv("VQA_ALLOWED_ROOTS", os.pathsep.join([str(root), str(tmp_path / "elsewhere")]))

    assert probe(str(root / "inside.mp4")).video is not None
    assert probe(f"file://{root / 'inside.mp4'}").video is not None
    _refused("/etc/passwd", "source refused: /etc/passwd is outside the allowed roots (VQA_ALLOWED_ROOTS)")
    _refused(str(outside), "outside the allowed roots")
    _refused(str(root / "link.mp4"), "outside the allowed roots")  # a symlink out of the root
    _refused(f"{root}/../outside.mp4", "outside the allowed roots")  # `..` out of the root
    _refused(f"file://{outside}", "outside the allowed roots")
    _refused(f"file://otherhost{root / 'inside.mp4'}", "names another host")
    # Not even whether a file exists outside the roots is told.
    _refused(str(tmp_path / "no-such-file.mp4"), "outside the allowed roots")

    monkeypatch.delenv("VQA_ALLOWED_ROOTS")  # the default: any local path
    assert probe(str(outside)).video is not None


def test_schemes_can_be_restricted(clips, servers, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    url = server.serve("/clip.mp4", clips("clean").read_bytes())
    monkeypatch.setenv("VQA_ALLOWED_SCHEMES", "s3,https")
    _refused(str(clips("clean")), "local files are not allowed (VQA_ALLOWED_SCHEMES=https,s3)")
    _refused(url, "http:// URLs are not allowed")
    assert server.hits == []
    monkeypatch.setenv("VQA_ALLOWED_SCHEMES", "http")
    assert probe(url).video is not None


# -- addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, why",
    [
        (f"{METADATA}/clip.mp4", "link-local"),
        (f"{METADATA}/live.m3u8", "link-local"),
        ("http://[fe80::1]/clip.mp4", "link-local"),
        ("http://[::ffff:169.254.169.254]/clip.mp4", "link-local"),
        ("http://metadata.google.internal/computeMetadata/v1/x.mp4", "cloud metadata service"),
        ("http://0.0.0.0:9/clip.mp4", "unspecified or multicast"),
        ("http://224.0.0.1/clip.mp4", "unspecified or multicast"),
    ],
)
def test_link_local_metadata_and_unspecified_addresses_are_refused(url: str, why: str) -> None:
    message = _refused(url, "source refused:", why, "VQA_ALLOW_PRIVATE_URLS=1")
    assert message.startswith("source refused: http://")


def test_loopback_is_allowed_by_default_and_refused_on_request(clips, servers, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    url = server.serve("/clip.mp4", clips("clean").read_bytes())
    assert probe(url).video is not None
    server.hosts.clear()
    named = url.replace("127.0.0.1", "localhost")
    assert probe(named).video is not None
    # FFmpeg connected to the address checked, and still named the host (virtual hosting works).
    assert set(server.hosts) == {named.split("/")[2]}
    server.hits.clear()

    monkeypatch.setenv("VQA_REFUSE_PRIVATE_URLS", "1")
    _refused(url, "is not a public address, and VQA_REFUSE_PRIVATE_URLS is set")
    _refused(url.replace("127.0.0.1", "localhost"), "http://localhost:", "not a public address")  # checked after DNS
    assert server.hits == []


def test_allowing_private_urls_lifts_the_link_local_rule(clips, servers, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    url = server.serve("/clip.mp4", clips("clean").read_bytes()).replace("127.0.0.1", "0.0.0.0")
    _refused(url, "unspecified")
    monkeypatch.setenv("VQA_ALLOW_PRIVATE_URLS", "1")
    assert probe(url).video is not None  # 0.0.0.0 reaches this machine on Linux


def test_the_connected_address_is_checked_not_only_the_resolved_one(servers) -> None:  # type: ignore[no-untyped-def]
    """What DNS rebinding would slip past a check of the name: the socket's own peer is refused."""
    server = servers()
    url = server.serve("/x", b"hello")
    with pytest.raises(SourceRefusedError, match=r"127\.0\.0\.1.*not a public address"):
        SourcePolicy(refuse_private=True).urlopen(url, timeout=5, what="source")
    assert server.hits == [], "refused once connected, before the request was sent"
    with SourcePolicy().urlopen(url, timeout=5, what="source") as response:
        assert response.read() == b"hello"


# -- what a source leads to ------------------------------------------------------------------


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory, clips: media.ClipFactory) -> tuple[Path, list[tuple[str, float]]]:
    directory = tmp_path_factory.mktemp("policy-hls")
    return directory, hls.segment(clips("clean"), directory, segment_s=2.0)


def _playlist(entries: list[tuple[str, float]]) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
    for uri, duration in entries:
        lines += [f"#EXTINF:{duration:.6f},", uri]
    return ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode()


def _serve_hls(server: Server, directory: Path, entries: list[tuple[str, float]]) -> None:
    for name, _ in entries:
        server.serve(f"/{name}", (directory / name).read_bytes())


def test_every_hls_segment_and_variant_is_checked(segments, servers, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    directory, entries = segments
    server = servers()
    _serve_hls(server, directory, entries)
    good = server.serve("/vod.m3u8", _playlist(entries))
    assert probe(good).duration_s > 0
    # Root-relative segment URIs are on the playlist's server (not local files).
    assert probe(server.serve("/rooted.m3u8", _playlist([(f"/{n}", d) for n, d in entries]))).duration_s > 0

    # A playlist that points its segments at the metadata service.
    evil = server.serve("/evil.m3u8", _playlist([(f"{METADATA}/{n}", d) for n, d in entries]))
    _refused(evil, f"HLS segment refused: {METADATA}/seg", "is a link-local address")
    # ... or its variant.
    master = server.serve("/master.m3u8", f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{METADATA}/v.m3u8\n".encode())
    _refused(master, f"HLS variant playlist refused: {METADATA}/v.m3u8 is a link-local address")
    # ... or at the worker's own files.
    local = server.serve("/local.m3u8", _playlist([("file:///etc/passwd", 2.0)] + entries[1:]))
    _refused(local, "HLS segment refused: file:///etc/passwd is a local file named by a remote playlist")
    # Loopback refused on request: the playlist itself.
    monkeypatch.setenv("VQA_REFUSE_PRIVATE_URLS", "1")
    _refused(good, "source refused", "not a public address")


def test_redirects_are_followed_only_where_allowed(clips, servers) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    clip = server.serve("/clip.mp4", clips("clean").read_bytes())
    assert probe(server.redirect("/moved.mp4", clip)).video is not None, "an allowed redirect still works"
    _refused(server.redirect("/evil.mp4", f"{METADATA}/x.mp4"), "redirected from", f"{METADATA}/x.mp4", "link-local")
    _refused(server.redirect("/evil.m3u8", f"{METADATA}/x.m3u8"), "redirected from", "link-local")
    _refused(server.redirect("/local.mp4", "file:///etc/passwd"), "not an http(s) URL")
    _refused(server.redirect("/local.m3u8", "file:///etc/passwd"), "not an http(s) URL")


def test_ffmpeg_never_follows_a_playlist_disguised_as_media(segments, servers) -> None:  # type: ignore[no-untyped-def]
    """FFmpeg's own HLS reader would fetch whatever a playlist names, unchecked: it is never used."""
    directory, entries = segments
    target = servers()
    _serve_hls(target, directory, entries)
    server = servers()
    body = _playlist([(f"{target.url}/{n}", d) for n, d in entries])
    for disguised in (
        server.serve("/clip.mp4", body),
        server.serve("/typed.mp4", body, **{"Content-Type": "application/vnd.apple.mpegurl"}),
    ):
        with pytest.raises(UnreadableSourceError, match="not a readable media file"):
            probe(disguised)
    assert target.hits == [], "no segment named inside the 'media' was fetched"


# -- credentials -----------------------------------------------------------------------------


def test_urls_with_credentials_are_refused_without_repeating_them(clips) -> None:  # type: ignore[no-untyped-def]
    message = _refused("https://monitor:hunter2@media.example.com/show.mp4", "carries credentials", "***@media.example.com")
    assert "hunter2" not in message and "monitor" not in message

    from starter import UsageError, _parser, build_request

    for argv in (["https://monitor:hunter2@media.example.com/show.mp4"], [str(clips("clean")), "--notify", "https://u:hunter2@hooks.example.com/x"]):
        parsed = _parser().parse_args(argv)
        with pytest.raises(UsageError, match="credentials") as err:
            build_request(parsed, parsed.source)
        assert "hunter2" not in str(err.value)


# -- the webhook -------------------------------------------------------------------------------


def _notify(url: str) -> NotifyRequest:
    defect = Defect(kind="black", track="video", start_s=1.0, end_s=3.0, duration_s=2.0, value=1.0)
    return NotifyRequest(stream_id="s", source="/x.mp4", url=url, events=[DefectEvent(id="e", phase="closed", defect=defect)])


@pytest.mark.parametrize(
    "url, why",
    [
        (f"{METADATA}/iam/security-credentials/", "link-local"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata service"),
        ("https://u:p@hooks.example.com/x", "carries credentials"),
    ],
)
def test_the_webhook_is_checked_like_a_source(url: str, why: str) -> None:
    with pytest.raises(ApplicationError) as err:
        notify_defects(_notify(url))
    assert err.value.type == "WebhookRefused" and err.value.non_retryable
    assert err.value.message.startswith("webhook refused:") and why in err.value.message


def test_a_refused_webhook_receives_nothing(servers, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    monkeypatch.setenv("VQA_REFUSE_PRIVATE_URLS", "1")
    with pytest.raises(ApplicationError, match="webhook refused: .* not a public address"):
        notify_defects(_notify(server.url + "/hook"))
    assert server.hits == []
    monkeypatch.delenv("VQA_REFUSE_PRIVATE_URLS")
    assert notify_defects(_notify(server.url + "/hook")) == 1 and server.hits == ["/hook"]
    # A receiver that redirects to the metadata service: the redirect is refused, not followed.
    with pytest.raises(ApplicationError, match="redirected from .* link-local") as err:
        notify_defects(_notify(server.redirect("/moved", f"{METADATA}/iam/")))
    assert err.value.non_retryable


# -- through Temporal -------------------------------------------------------------------------


@pytest.mark.integration
def test_a_refused_source_fails_its_stream_and_the_worker_goes_on(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, segments, servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, entries = segments
    server = servers()
    _serve_hls(server, directory, entries)
    # The first window's segments are fine; a later one points at the metadata service.
    poisoned = entries[:2] + [(f"{METADATA}/{name}", d) for name, d in entries[2:]]
    playlist = server.serve("/poisoned.m3u8", _playlist(poisoned))
    monkeypatch.setenv("VQA_ALLOWED_ROOTS", str(clips("clean").parent))  # the in-process worker's environment

    async def run(client, name: str, source: str) -> StreamReport:  # type: ignore[no-untyped-def]
        request = StreamRequest(stream_id=f"{name}-{os.urandom(4).hex()}", source=source, window_seconds=4.0)
        handle = await start_stream(client, task_queue, request)
        try:
            return await handle.result()
        except WorkflowFailureError as err:
            assert isinstance(err.cause, ApplicationError) and err.cause.details
            attempts = [
                e.activity_task_started_event_attributes.attempt
                async for e in handle.fetch_history_events()
                if e.HasField("activity_task_started_event_attributes")
            ]
            assert max(attempts) == 1, "a refusal is not retried"
            return StreamReport.model_validate(err.cause.details[0])

    async def scenario() -> tuple[StreamReport, StreamReport, StreamReport]:
        async with running_worker(temporal_server, task_queue) as client:
            passwd = await run(client, "passwd", "/etc/passwd")
            poisoned_report = await run(client, "poisoned", playlist)
            return passwd, poisoned_report, await run(client, "good", str(clips("main")))

    passwd, poisoned_report, good = run_async(scenario())
    assert passwd.status == "failed"
    assert passwd.error == "source refused: /etc/passwd is outside the allowed roots (VQA_ALLOWED_ROOTS)"
    assert poisoned_report.status == "failed" and poisoned_report.windows == 1
    assert poisoned_report.error is not None and "HLS segment refused" in poisoned_report.error
    # Window 1 reads the segments that overlap it: the first poisoned one it reaches is named.
    assert any(f"{METADATA}/{name} is a link-local address" in poisoned_report.error for name, _ in entries[2:])
    assert good.status == "completed" and media.match(good.defects, media.MAIN_TRUTH) == []


@pytest.mark.integration
def test_the_starter_reports_a_refusal_as_a_failed_stream(temporal_server: TemporalServer, task_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VQA_ALLOWED_ROOTS", str(tmp_path))

    async def scenario() -> object:
        async with running_worker(temporal_server, task_queue):
            return await asyncio.to_thread(
                run_starter, temporal_server, task_queue, "/etc/passwd", "--wait", "--json", "--stream-id",
                f"passwd-{os.urandom(4).hex()}",
            )

    done = run_async(scenario())
    assert done.returncode == 1, done.stderr
    report = StreamReport.model_validate(json.loads(done.stdout))
    assert report.status == "failed" and report.error is not None
    assert report.error.startswith("source refused: /etc/passwd is outside the allowed roots")
    assert done.stderr.strip().splitlines()[-1] == f"error: {report.error}"


@pytest.mark.integration
def test_a_stream_whose_webhook_is_refused_is_analysed_and_nothing_is_posted(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips
) -> None:
    """Notifications never fail an analysis (README, Notifications): the refusal is recorded in the
    history, once (not retried), and the report is the stream's."""
    request = StreamRequest(
        stream_id=f"hook-{os.urandom(4).hex()}", source=str(clips("main")), window_seconds=4.0,
        notify_url=f"{METADATA}/iam/security-credentials/", notify_wait_s=5.0,
    )

    async def scenario() -> tuple[StreamReport, list[tuple[int, str]]]:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, request)
            report = await handle.result()
            notify_ids: set[int] = set()
            outcomes: list[tuple[int, str]] = []
            async for e in handle.fetch_history_events():
                if e.HasField("activity_task_scheduled_event_attributes"):
                    if e.activity_task_scheduled_event_attributes.activity_type.name == "notify_defects":
                        notify_ids.add(e.event_id)
                elif e.HasField("activity_task_started_event_attributes"):
                    if e.activity_task_started_event_attributes.scheduled_event_id in notify_ids:
                        outcomes.append((e.activity_task_started_event_attributes.attempt, ""))
                elif e.HasField("activity_task_failed_event_attributes"):
                    if e.activity_task_failed_event_attributes.scheduled_event_id in notify_ids:
                        outcomes.append((0, e.activity_task_failed_event_attributes.failure.message))
            return report, outcomes

    report, outcomes = run_async(scenario())
    assert report.status == "completed" and media.match(report.defects, media.MAIN_TRUTH) == []
    attempts = [a for a, _ in outcomes if a]
    failures = [m for a, m in outcomes if not a]
    assert attempts and set(attempts) == {1}, "each delivery tried once: a refusal is final"
    assert len(failures) == len(attempts)
    assert all(m.startswith(f"webhook refused: {METADATA}/iam/security-credentials/ is a link-local address") for m in failures)


@pytest.mark.integration
def test_results_go_only_where_the_worker_allows(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A starter's --results cannot make the worker write outside VQA_ALLOWED_RESULTS_ROOTS;
    inside them, and in the worker's own default location, it can."""
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    monkeypatch.setenv("VQA_ALLOWED_RESULTS_ROOTS", str(allowed))
    source = str(clips("clean"))

    async def scenario() -> tuple[object, object, object]:
        async with running_worker(temporal_server, task_queue):
            def start(*args: str) -> object:
                return run_starter(temporal_server, task_queue, source, "--wait", "--json", "--window-seconds", "6",
                                   "--stream-id", f"res-{os.urandom(4).hex()}", *args)
            refused = await asyncio.to_thread(start, "--results", str(elsewhere))
            inside = await asyncio.to_thread(start, "--results", str(allowed / "streams"))
            default = await asyncio.to_thread(start)
            return refused, inside, default

    refused, inside, default = run_async(scenario())
    assert refused.returncode == 1, refused.stderr  # type: ignore[attr-defined]
    report = StreamReport.model_validate(json.loads(refused.stdout))  # type: ignore[attr-defined]
    assert report.status == "failed"
    assert "outside the allowed results roots (VQA_ALLOWED_RESULTS_ROOTS)" in (report.error or "")
    assert not elsewhere.exists(), "nothing was written there"
    for done in (inside, default):
        assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
        assert StreamReport.model_validate(json.loads(done.stdout)).status == "completed"  # type: ignore[attr-defined]
    assert any((allowed / "streams").rglob("report.json"))
