"""S3 sources and the results sink, against a real S3 server (SeaweedFS) and a real Temporal dev server."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import ActivityEnvironment

from activities import s3 as s3_module
from activities.errors import SourceUnavailableError, UnreadableSourceError
from activities.decode import probe
from activities.offline import analyse_file, window_requests
from activities.results import write_report
from activities.window import analyze_window
from support.seaweedfs import SeaweedFS
from vqa.contracts import StreamReport, StreamRequest, WindowResult, WriteReportRequest, workflow_id_for
from vqa.devserver import free_port
from vqa.settings import Settings
from vqa.synth import ClipSpec, Segment, make_clip
from workflows import StreamMonitorWorkflow

from . import media
from .conftest import REPO, TemporalServer, analyse_stream, python_command, run_async, running_worker, start_stream, worker_subprocess

pytestmark = pytest.mark.integration

# 30 s at 3 Mb/s, about 11 MB: several read blocks per window, so ranged reads show.
BIG = ClipSpec(
    duration_s=30.0,
    bitrate_kbps=3000,
    video=[Segment("black", 12.0, 15.0)],
    audio=[Segment("silence", 20.0, 23.0)],
)


def _bucket(seaweedfs: SeaweedFS, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    seaweedfs.client().create_bucket(Bucket=name)
    return name


def _keys(seaweedfs: SeaweedFS, bucket: str, prefix: str = "") -> dict[str, int]:
    found: dict[str, int] = {}
    for page in seaweedfs.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
    return found


def _read_json(seaweedfs: SeaweedFS, bucket: str, key: str) -> Any:
    return json.loads(seaweedfs.client().get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.mp4"
    make_clip(path, BIG)
    return path


class _S3Calls:
    """Every request this process's S3 client sends, seen through boto3's event hooks."""

    def __init__(self) -> None:
        self.client = s3_module.s3_client()
        self.sent: list[tuple[str, str | None]] = []  # (operation, Range header)
        self.received: list[tuple[str, int]] = []  # (operation, body bytes)

    def _before_send(self, request: Any, **kwargs: Any) -> None:
        operation = kwargs.get("event_name", "").rpartition(".")[2]
        rng = request.headers.get("Range")
        self.sent.append((operation, rng.decode() if isinstance(rng, bytes) else rng))

    def _after_call(self, http_response: Any, model: Any, **kwargs: Any) -> None:
        self.received.append((model.name, int(http_response.headers.get("Content-Length") or 0)))

    def __enter__(self) -> _S3Calls:
        self.client.meta.events.register("before-send.s3", self._before_send)
        self.client.meta.events.register("after-call.s3", self._after_call)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.meta.events.unregister("before-send.s3", self._before_send)
        self.client.meta.events.unregister("after-call.s3", self._after_call)

    def clear(self) -> None:
        self.sent.clear()
        self.received.clear()

    def of(self, operation: str) -> list[tuple[str, str | None]]:
        return [call for call in self.sent if call[0] == operation]

    def bytes_of(self, operation: str) -> list[int]:
        return [n for op, n in self.received if op == operation]


def test_decoding_a_window_makes_a_few_ranged_gets(s3_env: SeaweedFS, big_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = _bucket(s3_env, "media")
    s3_env.client().upload_file(str(big_clip), bucket, "in/big.mp4")
    source = f"s3://{bucket}/in/big.mp4"
    size = big_clip.stat().st_size
    block = Settings().s3_read_block_bytes
    assert size > 4 * block, "the clip spans several read blocks"

    reads = {"n": 0}
    original_read = s3_module.S3ObjectReader.read

    def counted_read(self: s3_module.S3ObjectReader, n: int = -1) -> bytes:
        reads["n"] += 1
        return original_read(self, n)

    monkeypatch.setattr(s3_module.S3ObjectReader, "read", counted_read)
    with _S3Calls() as calls:
        info = probe(source)
        assert info.duration_s == pytest.approx(30.0, abs=0.05) and info.video is not None
        assert len(calls.of("GetObject")) <= 2, calls.sent
        per_window: list[tuple[int, int, int]] = []
        state: dict[str, dict[str, Any]] = {}
        for request in window_requests(source, info, 10.0, stream_id="s3-test"):
            calls.clear()
            reads["n"] = 0
            result = analyze_window(request.model_copy(update={"states": state}))
            state = result.states
            gets = calls.of("GetObject")
            per_window.append((len(gets), sum(calls.bytes_of("GetObject")), reads["n"]))
            assert {op for op, _ in calls.sent} == {"GetObject"}, "decoding only reads: no HEAD, no listing, no write"
            assert all(rng is not None and rng.startswith("bytes=") for _, rng in gets), "every GET is ranged"
            assert all(n <= block for n in calls.bytes_of("GetObject")), "no GET asks for more than one block"
    print(f"\nS3 GETs per 10 s window of an {size / 1e6:.1f} MB object (GETs, bytes, PyAV reads): {per_window}")
    for gets, fetched, pyav_reads in per_window:
        assert 1 <= gets <= 6, per_window
        assert fetched < size, "a window never fetches the whole object"
        assert pyav_reads >= 10 * gets, "PyAV's small reads are served from the read-ahead blocks"
    # The same defects as the local file, window for window.
    assert analyse_file(source, window_s=10.0, media=info) == analyse_file(big_clip, window_s=10.0, media=info)


def test_missing_object_or_bucket_is_a_clear_non_retryable_failure(
    temporal_server: TemporalServer, task_queue: str, s3_env: SeaweedFS
) -> None:
    bucket = _bucket(s3_env, "media")
    s3_env.client().put_object(Bucket=bucket, Key="empty.mp4", Body=b"")
    cases = {
        f"s3://{bucket}/no/such/clip.mp4": f"S3 object not found: s3://{bucket}/no/such/clip.mp4",
        "s3://no-such-bucket-vqa/clip.mp4": "S3 bucket not found: no-such-bucket-vqa",
        f"s3://{bucket}/empty.mp4": f"source is an empty S3 object: s3://{bucket}/empty.mp4",
    }

    async def scenario() -> dict[str, tuple[str, list[int]]]:
        out: dict[str, tuple[str, list[int]]] = {}
        async with running_worker(temporal_server, task_queue) as client:
            for i, source in enumerate(cases):
                request = StreamRequest(stream_id=f"s3-missing-{i}-{uuid.uuid4().hex[:6]}", source=source)
                handle = await client.start_workflow(
                    StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=task_queue
                )
                with pytest.raises(WorkflowFailureError) as failure:
                    await handle.result()
                attempts = []
                async for event in handle.fetch_history_events():
                    if event.HasField("activity_task_started_event_attributes"):
                        attempts.append(event.activity_task_started_event_attributes.attempt)
                out[source] = (str(failure.value.cause), attempts)
        return out

    for source, (message, attempts) in run_async(scenario()).items():
        assert cases[source] in message
        # probe_source failed once and was not retried; write_report (best effort) ran once.
        assert attempts[0] == 1, attempts


def test_an_unreachable_endpoint_is_retryable(monkeypatch: pytest.MonkeyPatch, s3_env: SeaweedFS) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SourceUnavailableError, match="S3 unavailable"):
        probe("s3://media/clip.mp4")


@pytest.mark.parametrize(
    ("status", "code", "unreadable"),
    [(403, "AccessDenied", True), (403, "InvalidAccessKeyId", True), (400, "InvalidRequest", True),
     (500, "InternalError", False), (503, "SlowDown", False), (503, "ServiceUnavailable", False)],
)
def test_s3_error_codes_map_to_permanent_or_transient(status: int, code: str, unreadable: bool) -> None:
    error = botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )
    mapped = s3_module._error(error, "read", "s3://bucket/key.mp4")
    assert isinstance(mapped, UnreadableSourceError if unreadable else SourceUnavailableError)
    assert "s3://bucket/key.mp4" in str(mapped)


def test_s3_source_and_s3_results_end_to_end(
    temporal_server: TemporalServer, task_queue: str, s3_env: SeaweedFS, clips: media.ClipFactory
) -> None:
    """A clip on S3 gives the local file's report; results land under deterministic keys, one per window."""
    path = clips("main")
    bucket = _bucket(s3_env, "media")
    s3_env.client().upload_file(str(path), bucket, "streams/main.mp4")
    results_bucket = _bucket(s3_env, "results")
    sid = f"s3main-{uuid.uuid4().hex[:6]}"
    s3_request = StreamRequest(
        stream_id=sid, source=f"s3://{bucket}/streams/main.mp4", window_seconds=4.0, results=f"s3://{results_bucket}/vqa"
    )
    local_request = StreamRequest(stream_id=f"local-{sid}", source=str(path), window_seconds=4.0)

    async def run(client: Client, request: StreamRequest) -> StreamReport:
        handle = await start_stream(client, task_queue, request)
        return await handle.result()

    async def scenario() -> tuple[StreamReport, StreamReport, int]:
        async with running_worker(temporal_server, task_queue) as client:
            with _S3Calls() as calls:
                from_s3 = await run(client, s3_request)
                puts = len(calls.of("PutObject"))
            return from_s3, await run(client, local_request), puts

    from_s3, local, puts = run_async(scenario())
    assert from_s3.status == "completed" and from_s3.windows == 8
    assert media.without_evidence(from_s3.defects) == media.without_evidence(local.defects) and from_s3.media == local.media
    assert media.match(from_s3.defects, media.MAIN_TRUTH) == []

    keys = _keys(s3_env, results_bucket)
    windows = [f"vqa/{sid}/windows/{i:06d}.json" for i in range(8)]
    evidence = [f"vqa/{sid}/evidence/{d.details['evidence'].rpartition('/')[2]}" for d in from_s3.defects]
    report_keys = [f"vqa/{sid}/report.json", f"vqa/{sid}/report.html"]
    assert sorted(keys) == sorted([*windows, *report_keys, *evidence]), (
        "one object per window plus the report (JSON and page), and one piece of evidence per defect"
    )
    assert puts == 10 + len(from_s3.defects), "exactly one write per window, one per defect, two for the report"
    # The page embeds the evidence; every other document is small.
    assert max(v for k, v in keys.items() if k not in evidence and k != report_keys[1]) < 64 * 1024, (
        "results are small documents, never media"
    )
    assert from_s3.results_uri == f"s3://{results_bucket}/vqa/{sid}/report.json"
    stored = StreamReport.model_validate(_read_json(s3_env, results_bucket, f"vqa/{sid}/report.json"))
    assert stored == from_s3
    third = WindowResult.model_validate(_read_json(s3_env, results_bucket, windows[3]))
    assert (third.index, third.start_s, third.end_s) == (3, 12.0, 16.0)
    # The local stream went to the worker's default location (VQA_RESULTS: the session's directory).
    assert local.results_uri == os.path.join(os.environ["VQA_RESULTS"], local.stream_id, "report.json")
    assert StreamReport.model_validate_json(Path(local.results_uri).read_text()) == local


def test_a_retried_window_overwrites_its_s3_result(s3_env: SeaweedFS, clips: media.ClipFactory) -> None:
    path = clips("clean")
    bucket = _bucket(s3_env, "results")
    location = f"s3://{bucket}/runs"
    info = probe(str(path))
    requests = window_requests(str(path), info, 4.0, stream_id="retried", results=location)
    with _S3Calls() as calls:
        results = [analyze_window(r) for r in requests]
        assert len(calls.of("PutObject")) == len(requests) == 3
        calls.clear()
        again = analyze_window(requests[1])  # the same window, run again as a retry would
        assert len(calls.of("PutObject")) == 1
        uri = write_report(
            WriteReportRequest(
                report=StreamReport(stream_id="retried", source=str(path), status="completed", window_seconds=4.0, windows=3),
                results=location,
            )
        )
    assert uri == f"{location}/retried/report.json"
    keys = _keys(s3_env, bucket)
    assert sorted(keys) == [
        "runs/retried/report.html",
        "runs/retried/report.json",
        "runs/retried/windows/000000.json",
        "runs/retried/windows/000001.json",
        "runs/retried/windows/000002.json",
    ], "the retry replaced window 1's object instead of adding one"
    assert WindowResult.model_validate(_read_json(s3_env, bucket, "runs/retried/windows/000001.json")) == again == results[1]
    assert _read_json(s3_env, bucket, "runs/retried/report.json")["results_uri"] == uri


def test_a_retried_window_overwrites_its_local_result(tmp_path: Path, clips: media.ClipFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    path = clips("clean")
    info = probe(str(path))
    # No location in the request: inside an activity, the worker's default (VQA_RESULTS) is used.
    monkeypatch.setenv("VQA_RESULTS", str(tmp_path / "default"))
    requests = window_requests(str(path), info, 4.0, stream_id="local-retry")
    env = ActivityEnvironment()
    first = [env.run(analyze_window, r) for r in requests]
    again = env.run(analyze_window, requests[2])
    uri = env.run(
        write_report,
        WriteReportRequest(
            report=StreamReport(stream_id="local-retry", source=str(path), status="completed", window_seconds=4.0, windows=3)
        ),
    )
    root = tmp_path / "default" / "local-retry"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "report.html", "report.json", "windows/000000.json", "windows/000001.json", "windows/000002.json",
    ], "one file per window, the retry replaced its file, nothing else (no temporary files left)"
    assert WindowResult.model_validate_json((root / "windows/000002.json").read_text()) == again == first[2]
    assert uri == str(root / "report.json")
    # Called directly, outside an activity and with no location (offline analysis), nothing is written.
    monkeypatch.setenv("VQA_RESULTS", str(tmp_path / "offline"))
    analyse_file(path, window_s=4.0)
    assert not (tmp_path / "offline").exists()
    # 'none' turns the sink off.
    monkeypatch.setenv("VQA_RESULTS", "none")
    assert env.run(analyze_window, requests[0]) == first[0]
    assert env.run(write_report, WriteReportRequest(report=StreamReport.model_validate_json((root / "report.json").read_text()))) is None


def test_an_unwritable_results_bucket_fails_the_stream_clearly(
    temporal_server: TemporalServer, task_queue: str, s3_env: SeaweedFS, clips: media.ClipFactory
) -> None:
    request = StreamRequest(
        stream_id=f"nosink-{uuid.uuid4().hex[:6]}", source=str(clips("clean")), window_seconds=6.0,
        results="s3://no-such-results-bucket/vqa",
    )

    async def scenario() -> WorkflowFailureError:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await client.start_workflow(
                StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id), task_queue=task_queue
            )
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
            return failure.value

    failure = run_async(scenario())
    assert "results not written" in str(failure.cause) and "no-such-results-bucket" in str(failure.cause)


# --- the starter, as users run it -------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_worker(temporal_server: TemporalServer, seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python worker.py` with the S3 settings in its environment; yields its task queue."""
    queue = f"s3cli-{uuid.uuid4().hex[:10]}"
    with worker_subprocess(temporal_server.env(queue, **seaweedfs.env()), tmp_path_factory.mktemp("s3worker") / "worker.log"):
        yield queue


def _starter(server: TemporalServer, seaweedfs: SeaweedFS, queue: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        python_command("starter.py", *args), env=server.env(queue, **seaweedfs.env()),
        capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL,
    )


def test_starter_with_an_s3_source_and_s3_results(temporal_server: TemporalServer, seaweedfs: SeaweedFS, s3_worker: str, clips: media.ClipFactory) -> None:  # noqa: E501
    bucket = _bucket(seaweedfs, "media")
    seaweedfs.client().upload_file(str(clips("boundary")), bucket, "in/boundary.mp4")
    results_bucket = _bucket(seaweedfs, "results")
    done = _starter(
        temporal_server, seaweedfs, s3_worker, f"s3://{bucket}/in/boundary.mp4",
        "--wait", "--json", "--window-seconds", "5", "--results", f"s3://{results_bucket}/cli",
    )
    assert done.returncode == 0, done.stderr
    report = StreamReport.model_validate_json(done.stdout)
    assert report.stream_id == "boundary" and report.status == "completed" and report.windows == 4
    assert media.match(report.defects, media.BOUNDARY_TRUTH) == []
    assert report.results_uri == f"s3://{results_bucket}/cli/boundary/report.json"
    assert json.loads(done.stdout)["results_uri"] == report.results_uri
    assert sorted(k for k in _keys(seaweedfs, results_bucket) if "/evidence/" not in k) == [
        "cli/boundary/report.html", "cli/boundary/report.json", *(f"cli/boundary/windows/{i:06d}.json" for i in range(4))
    ]
    assert StreamReport.model_validate(_read_json(seaweedfs, results_bucket, "cli/boundary/report.json")) == report


def test_starter_with_a_missing_s3_object_exits_1_with_one_line(temporal_server: TemporalServer, seaweedfs: SeaweedFS, s3_worker: str) -> None:  # noqa: E501
    bucket = _bucket(seaweedfs, "media")
    done = _starter(temporal_server, seaweedfs, s3_worker, f"s3://{bucket}/gone.mp4", "--wait", "--json", "--stream-id", f"gone-{uuid.uuid4().hex[:6]}")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: S3 object not found: s3://{bucket}/gone.mp4"]
    assert StreamReport.model_validate_json(done.stdout).status == "failed"


@pytest.mark.parametrize("results", ["ftp://host/dir", "s3://"])
def test_starter_rejects_a_bad_results_location(temporal_server: TemporalServer, seaweedfs: SeaweedFS, clips: media.ClipFactory, results: str) -> None:  # noqa: E501
    done = _starter(temporal_server, seaweedfs, "unused", str(clips("clean")), "--wait", "--results", results)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error:")


def test_wrong_credentials_are_a_clear_non_retryable_failure(s3_env: SeaweedFS, clips: media.ClipFactory, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: E501
    bucket = _bucket(s3_env, "media")
    s3_env.client().upload_file(str(clips("clean")), bucket, "clean.mp4")
    assert probe(f"s3://{bucket}/clean.mp4").duration_s == pytest.approx(12.0, abs=0.05)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(UnreadableSourceError, match=f"S3 access denied: read s3://{bucket}/clean.mp4"):
        probe(f"s3://{bucket}/clean.mp4")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(UnreadableSourceError, match=f"S3 access denied: read s3://{bucket}/clean.mp4"):
        probe(f"s3://{bucket}/clean.mp4")


def test_results_none_writes_nothing(temporal_server: TemporalServer, task_queue: str, clips: media.ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: E501
    monkeypatch.setenv("VQA_RESULTS", str(tmp_path / "default"))
    request = StreamRequest(stream_id=f"nowrite-{uuid.uuid4().hex[:6]}", source=str(clips("clean")), window_seconds=6.0, results="none")

    report = analyse_stream(temporal_server, task_queue, request)
    assert report.status == "completed" and report.windows == 2
    assert report.results_uri is None and not (tmp_path / "default").exists()


def test_vqa_s3_endpoint_url_alone_reaches_the_s3_server(
    temporal_server: TemporalServer, task_queue: str, s3_env: SeaweedFS, clips: media.ClipFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VQA_S3_ENDPOINT_URL, for S3 only (README): sources and results reach the server with AWS_ENDPOINT_URL unset."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("VQA_S3_ENDPOINT_URL", s3_env.endpoint_url)
    bucket, results_bucket = _bucket(s3_env, "media"), _bucket(s3_env, "results")
    s3_env.client().upload_file(str(clips("main")), bucket, "main.mp4")
    sid = f"vqa-endpoint-{uuid.uuid4().hex[:6]}"
    request = StreamRequest(stream_id=sid, source=f"s3://{bucket}/main.mp4", window_seconds=8.0, results=f"s3://{results_bucket}/vqa")

    report = analyse_stream(temporal_server, task_queue, request)
    assert report.status == "completed", report.error
    assert media.match(report.defects, media.MAIN_TRUTH) == []
    assert report.results_uri == f"s3://{results_bucket}/vqa/{sid}/report.json"
    assert StreamReport.model_validate(_read_json(s3_env, results_bucket, f"vqa/{sid}/report.json")) == report


def test_results_default_to_vqa_home(
    temporal_server: TemporalServer, task_queue: str, clips: media.ClipFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without VQA_RESULTS, a worker writes under $VQA_HOME/results (README)."""
    monkeypatch.delenv("VQA_RESULTS", raising=False)
    monkeypatch.setenv("VQA_HOME", str(tmp_path / "home"))
    sid = f"home-{uuid.uuid4().hex[:6]}"
    request = StreamRequest(stream_id=sid, source=str(clips("main")), window_seconds=8.0)

    report = analyse_stream(temporal_server, task_queue, request)
    where = tmp_path / "home" / "results" / sid
    assert report.status == "completed" and report.results_uri == str(where / "report.json")
    assert StreamReport.model_validate_json((where / "report.json").read_text()) == report
    assert sorted(p.name for p in (where / "windows").iterdir()) == [f"{i:06d}.json" for i in range(report.windows)]
