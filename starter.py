"""Start (or attach to) the monitoring workflow of one stream.

    python starter.py SOURCE [--wait [--json]] [--dev] [--stream-id ID]
                             [--window-seconds S] [--detectors a,b] [--set det.option=value]
                             [--group QUEUE=det,det]
                             [--results DIR|s3://bucket/prefix|none]

    python starter.py status ID [--json]    the stream's status (the workflow's `status` query)
    python starter.py list [--json]         the streams Temporal knows, newest first
    python starter.py stop ID               ask a stream's analysis to stop (status `stopped`)

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
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError, TimeoutError
from temporalio.service import RPCError, RPCStatusCode

import detectors
from vqa.contracts import StreamReport, StreamRequest, StreamStatus, workflow_id_for
from vqa.search_attributes import SEARCH_ATTRIBUTES
from vqa.codec import PayloadKeyError
from vqa.runtime import Settings, SettingsError, build_worker, connect

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
    for name, url in (("source", source), ("--notify", args.notify)):
        if url and "://" in url and "@" in urlparse(url).netloc:
            # What a workflow is started with stays in its history: credentials come from the worker's environment.
            raise UsageError(
                f"invalid {name}: a URL with credentials (user:password@) would be kept in the workflow's "
                "history; give the worker its credentials in its environment instead"
            )
    try:
        names = detectors.resolve([n.strip() for n in args.detectors.split(",") if n.strip()] if args.detectors else [])
        options = _parse_set(args.set or [])
        detectors.parse_options(options)
        groups = _parse_groups(args.group or [])
        return StreamRequest(
            stream_id=args.stream_id or derive_stream_id(source),
            source=source,
            window_seconds=args.window_seconds,
            # With groups, the stream's own group is spelled out: what no group takes.
            detectors=names if args.detectors or groups else [],
            detector_groups=groups,
            options=options,
            windows_per_run=args.windows_per_run,
            results=_normalise_results(args.results),
            notify_url=args.notify,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"invalid {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from exc


def _parse_groups(values: list[str]) -> dict[str, list[str]]:
    """`--group QUEUE=det1,det2` (repeatable) -> {queue: [detectors]}."""
    groups: dict[str, list[str]] = {}
    for value in values:
        queue, sep, names = value.partition("=")
        if not sep or not queue.strip() or not names.strip():
            raise UsageError(f"--group {value!r}: expected TASK_QUEUE=detector[,detector...]")
        if queue.strip() in groups:
            raise UsageError(f"--group {queue.strip()!r} given twice")
        groups[queue.strip()] = detectors.resolve([n.strip() for n in names.split(",") if n.strip()])
    return groups


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
        "--group",
        action="append",
        metavar="QUEUE=DET,DET",
        help="run these detectors on task queue QUEUE, where `worker.py --detectors DET,DET --task-queue QUEUE` "
        "workers serve them (one more activity per window, decoding the window itself); repeatable",
    )
    p.add_argument(
        "--results",
        metavar="URI",
        help="where the report and window results are written: a directory, s3://bucket/prefix or 'none' "
        "(default: the worker's VQA_RESULTS, else $VQA_HOME/results)",
    )
    p.add_argument(
        "--notify",
        metavar="URL",
        help="webhook that receives each defect opened and closed, HMAC-signed with the worker's "
        "VQA_WEBHOOK_SECRET (default: the worker's VQA_NOTIFY_URL, if any)",
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


async def search_attributes_registered(client: Client, namespace: str) -> bool:
    """Whether the namespace has the stream search attributes (SEARCH_ATTRIBUTES); without them the
    streams still run, and are listed by workflow type only."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    try:
        response = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    except RPCError:
        return False  # e.g. a cloud namespace whose key may not use the operator service
    registered = dict(response.custom_attributes)
    missing = [name for name in SEARCH_ATTRIBUTES if name not in registered]
    if missing:
        _info(
            f"search attributes {', '.join(missing)} are not registered in namespace {namespace!r}: "
            "streams run, but cannot be listed by state or defects (see README, Search attributes)"
        )
    return not missing


def _static_details(request: StreamRequest) -> str:
    """What the Temporal UI shows as the stream's static details: what it analyses, and how."""
    names = ", ".join(request.detectors) if request.detectors else "all"
    lines = [
        f"**source** {request.source}",
        f"**windows** {request.window_seconds:g} s · **detectors** {names}",
    ]
    for queue, group in request.detector_groups.items():
        lines.append(f"**group** {queue}: {', '.join(group)}")
    if request.options:
        lines.append("**options** " + "; ".join(f"{d}: {o}" for d, o in request.options.items()))
    return "\n\n".join(lines)


async def start_or_attach(client: Client, settings: Settings, request: StreamRequest) -> tuple[WorkflowHandle[Any, Any], StreamRequest, bool]:
    """Start the stream's workflow, or attach to the one already started for this stream id.

    Returns the handle, the request in force, and whether this call started it.
    """
    from workflows import StreamMonitorWorkflow
    from workflows.stream import initial_search_attributes

    if not request.search_attributes and await search_attributes_registered(client, settings.namespace):
        request = request.model_copy(update={"search_attributes": True})
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
            static_details=_static_details(request),
            search_attributes=(
                initial_search_attributes(request, with_source=settings.payload_codec is None)
                if request.search_attributes
                else None
            ),
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
    if report.report_html_uri:
        lines.append(f"html    {report.report_html_uri}")
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
    # Progress follows the latest run of the workflow id (continue-as-new starts new runs).
    latest = handle._client.get_workflow_handle(handle.id)  # noqa: SLF001 - the SDK exposes no public accessor
    progress = asyncio.create_task(_show_progress(latest)) if sys.stderr.isatty() else None
    try:
        return await handle.result()
    except WorkflowFailureError as exc:
        return _failed_report(request, exc)
    finally:
        if progress is not None:
            progress.cancel()
            # The last line stays on the terminal: where the stream ended, even when it ended
            # between two polls.
            final = await _query_status(latest)
            sys.stderr.write("\r\033[K" + (_progress_line(final) + "\n" if final is not None else ""))
            sys.stderr.flush()


async def _query_status(handle: WorkflowHandle[Any, Any]) -> StreamStatus | None:
    try:
        return await asyncio.wait_for(handle.query("status", result_type=StreamStatus), timeout=5.0)
    except Exception:  # noqa: BLE001 - progress is a courtesy; the result says what happened
        return None


def _progress_line(status: StreamStatus, *, width: int = 30) -> str:
    defects = f"{len(status.defects) + len(status.open_defects)} defect(s)"
    if status.live or not status.duration_s:
        lag = f"  lag {status.lag_s:.1f} s" if status.lag_s is not None else ""
        return f"{status.state} {status.position_s:.1f} s  {status.windows_done} windows{lag}  {defects}"
    fraction = min(1.0, status.position_s / status.duration_s)
    bar = "#" * round(fraction * width)
    total = f"/{status.windows_total}" if status.windows_total is not None else ""
    return (
        f"[{bar:<{width}}] {fraction:4.0%} {status.position_s:.1f}/{status.duration_s:.1f} s  "
        f"{status.windows_done}{total} windows  {defects}"
    )


async def _show_progress(handle: WorkflowHandle[Any, Any]) -> None:
    """A progress line on the terminal's stderr, from the `status` query about once a second."""
    while True:
        status = await _query_status(handle)
        if status is not None:
            sys.stderr.write("\r\033[K" + _progress_line(status))
            sys.stderr.flush()
        await asyncio.sleep(1.0)


_ADMIN_COMMANDS = ("status", "list", "stop")


def _is_admin_command(argv: list[str]) -> bool:
    """`status ID`, `stop ID`, `list`: the SOURCE form keeps every other first word."""
    if not argv or argv[0] not in _ADMIN_COMMANDS:
        return False
    if argv[0] == "list":
        return not Path("list").exists()
    return any(not a.startswith("-") for a in argv[1:])


def _admin_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="starter.py", description="Inspect and stop streams.")
    commands = p.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="the stream's status: position, windows, defects so far")
    status.add_argument("stream_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print the StreamStatus JSON")
    listing = commands.add_parser("list", help="the streams Temporal knows, newest first")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.add_argument("--limit", type=int, default=100, help="at most this many streams (default 100)")
    listing.add_argument("--open-defects", action="store_true", help="only streams with a defect going on now")
    listing.add_argument("--source", help="only streams of this source (as started)")
    listing.add_argument("--state", help="only streams in this state: probing, running, completed, failed, stopped")
    listing.add_argument("--defect-kind", help="only streams that had a defect of this kind (e.g. freeze)")
    listing.add_argument("--query", help="a Temporal visibility query added to the others (AND)")
    stop = commands.add_parser("stop", help="stop the stream's analysis (status `stopped`)")
    stop.add_argument("stream_id", metavar="ID")
    return p


class StreamNotFound(Exception):
    pass


async def _describe(client: Client, stream_id: str) -> Any:
    try:
        return await client.get_workflow_handle(workflow_id_for(stream_id)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise StreamNotFound(f"no stream {stream_id!r} (no workflow {workflow_id_for(stream_id)})") from exc
        raise


async def _status(client: Client, stream_id: str) -> StreamStatus:
    description = await _describe(client, stream_id)
    handle = client.get_workflow_handle(workflow_id_for(stream_id), result_type=StreamReport)
    if description.status == WorkflowExecutionStatus.COMPLETED:
        # A finished stream's status is its report: no worker needs to replay it for a query.
        report = await handle.result()
        duration = report.media.duration_s if report.media else None
        return StreamStatus(
            stream_id=report.stream_id, source=report.source, state=report.status,
            position_s=duration if duration is not None else 0.0, duration_s=duration,
            windows_done=report.windows, windows_total=report.windows, runs=report.runs,
            defects=report.defects, open_defects=[], live=bool(report.media and report.media.live),
        )
    return await handle.query("status", result_type=StreamStatus)


def format_status(status: StreamStatus) -> str:
    total = f"/{status.windows_total}" if status.windows_total is not None else ""
    duration = f"/{status.duration_s:.1f}" if status.duration_s is not None and not status.live else ""
    lines = [
        f"stream {status.stream_id}  state {status.state}  position {status.position_s:.1f}{duration} s  "
        f"{status.windows_done}{total} windows",
        f"source {status.source}",
    ]
    if status.live:
        edge = f"{status.live_edge_s:.1f} s" if status.live_edge_s is not None else "unknown"
        lag = f"{status.lag_s:.1f} s" if status.lag_s is not None else "unknown"
        lines.append(f"live   edge {edge}  lag {lag}")
    rows = [(d, "") for d in status.defects] + [(d, "open") for d in status.open_defects]
    if not rows:
        lines.append("no defects so far")
        return "\n".join(lines)
    header = f"{'KIND':<12} {'TRACK':<6} {'START':>9} {'END':>9} {'DURATION':>9} {'VALUE':>10}"
    lines += ["", header, "-" * len(header)]
    for d, note in sorted(rows, key=lambda r: r[0].start_s):
        value = "" if d.value is None else f"{d.value:.4g}"
        lines.append(
            f"{d.kind:<12} {d.track:<6} {d.start_s:>9.2f} {d.end_s:>9.2f} {d.duration_s:>9.2f} {value:>10} {note}".rstrip()
        )
    lines.append(f"{len(status.defects)} defect(s) so far, {len(status.open_defects)} open")
    return "\n".join(lines)


_WORKFLOW_PREFIX = workflow_id_for("")


def _attributes(attributes: Any) -> dict[str, Any]:
    """The stream's search attributes, where the namespace has them: state, defects, open defects."""
    values = {pair.key.name: pair.value for pair in attributes}
    out: dict[str, Any] = {}
    if "VqaState" in values:
        out["state"] = values["VqaState"]
    if "VqaDefects" in values:
        out["defects"] = values["VqaDefects"]
    if "VqaOpenDefects" in values:
        out["open_defects"] = values["VqaOpenDefects"]
    if "VqaDefectKinds" in values:
        out["defect_kinds"] = list(values["VqaDefectKinds"])
    return out


def list_query(args: argparse.Namespace) -> str:
    """The visibility query for `list`: stream workflows, narrowed by the search attributes asked for."""
    def quoted(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    clauses = ["WorkflowType = 'StreamMonitorWorkflow'"]
    if getattr(args, "open_defects", False):
        clauses.append("VqaOpenDefects > 0")
    if getattr(args, "source", None):
        clauses.append(f"VqaSource = {quoted(_normalise_source(args.source))}")
    if getattr(args, "state", None):
        clauses.append(f"VqaState = {quoted(args.state)}")
    if getattr(args, "defect_kind", None):
        clauses.append(f"VqaDefectKinds = {quoted(args.defect_kind)}")
    if getattr(args, "query", None):
        clauses.append(f"({args.query})")
    return " AND ".join(clauses)


async def _list(client: Client, *, limit: int, query: str = "WorkflowType = 'StreamMonitorWorkflow'") -> list[dict[str, Any]]:
    streams: dict[str, dict[str, Any]] = {}
    async for execution in client.list_workflows(query, limit=limit * 4):
        if execution.id in streams:
            continue  # an earlier run of the same stream (continue-as-new); the newest comes first
        memo = await execution.memo()
        streams[execution.id] = {
            "stream_id": execution.id.removeprefix(_WORKFLOW_PREFIX),
            "workflow_id": execution.id,
            "status": execution.status.name.lower() if execution.status else "unknown",
            "start_time": execution.start_time.isoformat(),
            "close_time": execution.close_time.isoformat() if execution.close_time else None,
            "source": memo.get("source"),
            **_attributes(execution.typed_search_attributes),
        }
        if len(streams) >= limit:
            break
    return list(streams.values())


async def run_admin(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        client = await _connect(settings, dev=False)
    except ConnectionError as exc:
        _err(f"error: {exc}")
        return EXIT_UNREACHABLE
    try:
        if args.command == "status":
            status = await _status(client, args.stream_id)
            print(status.model_dump_json() if args.json else format_status(status))
        elif args.command == "list":
            streams = await _list(client, limit=args.limit, query=list_query(args))
            if args.json:
                print(json.dumps(streams))
            else:
                for s in streams:
                    defects = f"{s['defects']} defect(s), {s['open_defects']} open" if "defects" in s else ""
                    print(
                        f"{s['stream_id']:<32} {s['status']:<16} {s['start_time']}  {defects:<24} {s['source'] or ''}".rstrip()
                    )
        else:
            description = await _describe(client, args.stream_id)
            if description.status != WorkflowExecutionStatus.RUNNING:
                state = description.status.name.lower() if description.status else "unknown"
                _info(f"stream {args.stream_id} has already ended ({state})", always=True)
                return EXIT_OK
            await client.get_workflow_handle(workflow_id_for(args.stream_id)).signal("stop")
            print(f"stop requested for stream {args.stream_id}")
    except StreamNotFound as exc:
        _err(f"error: {exc}")
        return EXIT_FAILED
    except RPCError as exc:
        _err(f"error: {exc.message.splitlines()[0] if exc.message else exc.status.name}")
        return EXIT_FAILED
    except WorkflowQueryFailedError as exc:
        _err(f"error: the status query failed: {str(exc).splitlines()[0]}")
        return EXIT_FAILED
    return EXIT_OK


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
    argv = sys.argv[1:] if argv is None else argv
    admin = _is_admin_command(argv)
    args = (_admin_parser() if admin else _parser()).parse_args(argv)
    try:
        code = asyncio.run(run_admin(args) if admin else run(args))
    except (UsageError, SettingsError) as exc:
        _err(f"error: {exc}")
        code = EXIT_USAGE
    except PayloadKeyError as exc:  # the stream's payloads are encrypted with a key this process lacks
        _err(f"error: {exc}")
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    # Avoid the temporalio interpreter-exit abort (sdk-python #300): exit without finalizers.
    os._exit(code)


if __name__ == "__main__":
    main()
