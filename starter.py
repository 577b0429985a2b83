"""Start (or attach to) the monitoring workflow of one stream.

    python starter.py SOURCE [--wait [--json]] [--dev] [--stream-id ID]
                             [--window-seconds S] [--detectors a,b] [--set det.option=value]
                             [--results DIR|s3://bucket/prefix|none]

With no SOURCE, a demo clip with known defects is generated and analysed.
Exit status with --wait: 0 analysed (defects or not), 1 could not be analysed,
2 invalid command line, 3 Temporal unreachable.
"""

from __future__ import annotations

import os

# Windows already run in parallel; BLAS threads on top only contend for the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import hashlib
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError, TimeoutError
from temporalio.service import RPCError

import detectors
from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from vqa.runtime import Settings, build_worker, connect

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


class UsageError(Exception):
    pass


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _info(message: str, *, always: bool = False) -> None:
    """Progress for people: on a terminal, or when --dev asks for it (the UI link).

    Scripts reading stderr then see only the one line that says why a stream failed.
    """
    if always or sys.stderr.isatty():
        _err(message)


def _parse_set(values: list[str]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        name, dot, field = key.partition(".")
        if not sep or not dot or not name or not field:
            raise UsageError(f"--set takes DETECTOR.OPTION=VALUE, got {item!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(name, {})[field] = value
    return options


def derive_stream_id(source: str) -> str:
    """A readable stream id from the source's file name, e.g. /data/talk60.mp4 -> talk60."""
    path = urlparse(source).path if "://" in source else source
    stem = Path(path.rstrip("/")).stem or "stream"
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:80]
    return cleaned or "stream"


def _hashed_id(stream_id: str, source: str) -> str:
    return f"{stream_id}-{hashlib.sha1(source.encode()).hexdigest()[:8]}"


def _normalise_source(source: str) -> str:
    if "://" in source:
        return source
    return os.path.abspath(source)


def _normalise_results(results: str | None) -> str | None:
    """A local results directory is made absolute here: the worker may run elsewhere."""
    if results is None or "://" in results or results.strip().lower() == "none":
        return results
    return os.path.abspath(results)


def build_request(args: argparse.Namespace, source: str) -> StreamRequest:
    """Validate everything the user typed before anything starts."""
    try:
        names = detectors.resolve([n.strip() for n in args.detectors.split(",") if n.strip()] if args.detectors else [])
        options = _parse_set(args.set or [])
        detectors.parse_options(options)
        return StreamRequest(
            stream_id=args.stream_id or derive_stream_id(source),
            source=source,
            window_seconds=args.window_seconds,
            detectors=names if args.detectors else [],
            options=options,
            windows_per_run=args.windows_per_run,
            results=_normalise_results(args.results),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"invalid {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from exc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Start (or attach to) the monitoring workflow of one stream.")
    p.add_argument("source", nargs="?", help="file path, file://, http(s):// or s3://bucket/key URL; omitted: a generated demo clip")
    p.add_argument("--wait", action="store_true", help="wait for the end and print the defects")
    p.add_argument("--json", action="store_true", help="with --wait: print exactly one StreamReport JSON on stdout")
    p.add_argument("--dev", action="store_true", help="start a local Temporal dev server and a worker if none run")
    p.add_argument("--stream-id", help="the stream's id (default: from SOURCE's file name)")
    p.add_argument("--window-seconds", type=float, default=10.0, help="window length in seconds (default 10)")
    p.add_argument("--detectors", help="comma-separated detectors to run (default: all): " + ",".join(detectors.REGISTRY))
    p.add_argument("--set", action="append", metavar="DET.OPTION=VALUE", help="a detector option, repeatable")
    p.add_argument(
        "--results",
        metavar="URI",
        help="where the report and window results are written: a directory, s3://bucket/prefix or 'none' "
        "(default: the worker's VQA_RESULTS, else $VQA_HOME/results)",
    )
    p.add_argument("--windows-per-run", type=int, default=500, help=argparse.SUPPRESS)
    return p


async def _connect(settings: Settings, *, dev: bool) -> Client:
    try:
        return await connect(settings)
    except RuntimeError as exc:
        host, port = settings.host_port
        if not dev:
            raise ConnectionError(
                f"cannot reach Temporal at {settings.address} ({str(exc).splitlines()[0]}); "
                "start it with `temporal server start-dev`, or pass --dev"
            ) from exc
        if host not in _LOCAL_HOSTS:
            raise ConnectionError(f"cannot reach Temporal at {settings.address}; --dev only starts a local server") from exc
    from vqa.devserver import DevServerError, start_dev_server

    _info(f"no Temporal server at {settings.address}: starting the local dev server (state in {settings.home})", always=True)
    try:
        proc = start_dev_server(
            port=port,
            ui_port=port + 1000,
            db_path=settings.home / "temporal.db",
            log_path=settings.home / "temporal.log",
            namespace=settings.namespace,
            detach=True,
        )
    except DevServerError as exc:
        raise ConnectionError(str(exc)) from exc
    (settings.home / "temporal.pid").write_text(str(proc.pid))
    _info(
        f"Temporal dev server running (pid {proc.pid}, UI {settings.ui_base()}); it keeps running after this command",
        always=True,
    )
    for _ in range(50):
        try:
            return await connect(settings)
        except RuntimeError:
            await asyncio.sleep(0.2)
    return await connect(settings)


async def start_or_attach(client: Client, settings: Settings, request: StreamRequest) -> tuple[WorkflowHandle[Any, Any], StreamRequest, bool]:
    """Start the stream's workflow, or attach to the one already started for this stream id.

    Returns the handle, the request in force, and whether this call started it.
    """
    from workflows import StreamMonitorWorkflow

    if request.stream_id != request.stream_id.strip():  # pragma: no cover - validated by the model
        raise UsageError("invalid stream id")
    for attempt in range(2):
        wid = workflow_id_for(request.stream_id)
        existing_source = await _existing_source(client, wid)
        if existing_source is not None and existing_source != request.source:
            if attempt == 0 and request.stream_id == derive_stream_id(request.source):
                # Same file name, different file: give this source its own stream id.
                request = request.model_copy(update={"stream_id": _hashed_id(request.stream_id, request.source)})
                continue
            raise UsageError(f"stream id {request.stream_id!r} already monitors {existing_source}; choose another --stream-id")
        break
    try:
        handle = await client.start_workflow(
            StreamMonitorWorkflow.run,
            request,
            id=wid,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            memo={"source": request.source},
            static_summary=f"{request.stream_id}: {request.source}",
            result_type=StreamReport,
        )
        started = existing_source is None
        return handle, request, started
    except Exception as exc:  # noqa: BLE001 - narrowed below
        from temporalio.exceptions import WorkflowAlreadyStartedError

        if not isinstance(exc, WorkflowAlreadyStartedError):
            raise
        # Already analysed (completed): attach to that analysis instead of running a second one.
        return client.get_workflow_handle(wid, result_type=StreamReport), request, False


async def _existing_source(client: Client, workflow_id: str) -> str | None:
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return None
    memo = await description.memo()
    source = memo.get("source")
    return str(source) if source is not None else None


def _failed_report(request: StreamRequest, error: BaseException) -> StreamReport:
    cause = error.cause if isinstance(error, WorkflowFailureError) else error
    if isinstance(cause, ApplicationError) and cause.details:
        detail = cause.details[0]
        try:
            report = StreamReport.model_validate(detail)
            return report if report.error else report.model_copy(update={"error": cause.message})
        except ValidationError:
            pass
    if isinstance(cause, CancelledError):
        message = "the analysis was cancelled"
    elif isinstance(cause, TerminatedError):
        message = f"the analysis was terminated: {cause.message}"
    elif isinstance(cause, TimeoutError):
        message = "the analysis timed out"
    else:
        message = getattr(cause, "message", None) or str(cause)
    return StreamReport(
        stream_id=request.stream_id,
        source=request.source,
        status="failed",
        error=message,
        window_seconds=request.window_seconds,
        windows=0,
    )


def format_table(report: StreamReport) -> str:
    media = report.media
    lines = [
        f"stream {report.stream_id}  status {report.status}"
        + (f"  {media.duration_s:.1f} s" if media else "")
        + f"  {report.windows} windows of {report.window_seconds:g} s",
        f"source {report.source}",
    ]
    if report.error:
        lines.append(f"error  {report.error}")
    if report.results_uri:
        lines.append(f"results {report.results_uri}")
    if not report.defects:
        lines.append("no defects found")
        return "\n".join(lines)
    header = f"{'KIND':<12} {'TRACK':<6} {'START':>9} {'END':>9} {'DURATION':>9} {'VALUE':>10}"
    lines += ["", header, "-" * len(header)]
    for d in report.defects:
        value = "" if d.value is None else f"{d.value:.4g}"
        lines.append(
            f"{d.kind:<12} {d.track:<6} {d.start_s:>9.2f} {d.end_s:>9.2f} {d.duration_s:>9.2f} {value:>10}"
        )
    lines.append(f"{len(report.defects)} defect(s)")
    return "\n".join(lines)


async def _wait(handle: WorkflowHandle[Any, Any], request: StreamRequest) -> StreamReport:
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        return _failed_report(request, exc)


async def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.json and not args.wait:
        raise UsageError("--json needs --wait")
    if args.source:
        source = _normalise_source(args.source)
    else:
        from vqa.synth import demo_spec, make_clip

        source = str(settings.home / "demo.mp4")
        if not Path(source).exists():
            _info(f"no SOURCE given: generating the demo clip {source} (black, freeze and silence at known times)")
            make_clip(source, demo_spec())
    request = build_request(args, source)

    try:
        client = await _connect(settings, dev=args.dev)
    except ConnectionError as exc:
        _err(f"error: {exc}")
        return EXIT_UNREACHABLE

    # A worker seen polling a minute ago may be dead now (the server keeps pollers
    # listed for minutes), so --dev always brings its own: another worker on the
    # same queue only adds capacity.
    run_worker = args.dev
    handle, request, started = await start_or_attach(client, settings, request)
    _info(f"stream {request.stream_id}: {'started' if started else 'attached to'} workflow {handle.id}")
    _info(f"Temporal UI: {settings.workflow_url(handle.id)}", always=args.dev)
    if not args.wait:
        if run_worker:
            _info("without --wait no worker runs here: the analysis runs on `python worker.py` workers", always=True)
        print(handle.id)
        return EXIT_OK

    if run_worker:
        _info(f"running a worker in this process on task queue {settings.task_queue!r}")
        # Expected activity failures (a bad source) are reported once, as the error line.
        logging.getLogger("temporalio").setLevel(logging.CRITICAL)
        async with build_worker(
            client, task_queue=settings.task_queue, max_concurrent_windows=settings.max_concurrent_windows
        ):
            report = await _wait(handle, request)
    else:
        report = await _wait(handle, request)

    if args.json:
        print(report.model_dump_json())
    else:
        print(format_table(report))
    if report.status == "failed":
        _err(f"error: {report.error or 'the analysis failed'}")
        return EXIT_FAILED
    return EXIT_OK


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        code = asyncio.run(run(args))
    except UsageError as exc:
        _err(f"error: {exc}")
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    # Avoid the temporalio interpreter-exit abort (sdk-python #300): exit without finalizers.
    os._exit(code)


if __name__ == "__main__":
    main()
