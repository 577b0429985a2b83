"""`status ID`, `list` and `stop ID`: what Temporal knows of the streams, and the `stop` signal."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from vqa import search_attributes as sa
from vqa.codec import PayloadKeyError
from vqa.contracts import StreamReport, StreamStatus, workflow_id_for
from vqa.settings import Settings

from .common import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, err, info
from .connection import connect_or_start
from .render import format_listing, format_status, rendition_statuses
from .request import normalise_source

_WORKFLOW_PREFIX = workflow_id_for("")
_STREAM_WORKFLOWS = "WorkflowType = 'StreamMonitorWorkflow'"

# What `list --json` calls each search attribute, where the namespace has them.
_LISTED_ATTRIBUTES = {"state": sa.STATE, "defects": sa.DEFECTS, "open_defects": sa.OPEN_DEFECTS, "defect_kinds": sa.DEFECT_KINDS}


class StreamNotFound(Exception):
    pass


Command = Callable[[Client, argparse.Namespace], Awaitable[int]]


async def run_admin(command: Command, args: argparse.Namespace, settings: Settings) -> int:
    """Connect (no --dev here), run `command`; its failures are one line on stderr and exit 1."""
    try:
        client = await connect_or_start(settings, dev=False)
    except ConnectionError as exc:
        err(f"error: {exc}")
        return EXIT_UNREACHABLE
    try:
        return await command(client, args)
    except StreamNotFound as exc:
        err(f"error: {exc}")
    except RPCError as exc:
        err(f"error: {exc.message.splitlines()[0] if exc.message else exc.status.name}")
    except WorkflowQueryFailedError as exc:
        err(f"error: the status query failed: {str(exc).splitlines()[0]}")
    return EXIT_FAILED


async def status_command(client: Client, args: argparse.Namespace) -> int:
    status = await stream_status(client, args.stream_id)
    print(status.model_dump_json() if args.json else format_status(status))
    return EXIT_OK


async def list_command(client: Client, args: argparse.Namespace) -> int:
    streams = await list_streams(client, limit=args.limit, query=list_query(args))
    if args.json:
        print(json.dumps(streams))
    elif streams:
        print(format_listing(streams))
    return EXIT_OK


async def stop_command(client: Client, args: argparse.Namespace) -> int:
    description = await _describe(client, args.stream_id)
    if description.status != WorkflowExecutionStatus.RUNNING:
        state = description.status.name.lower() if description.status else "unknown"
        info(f"stream {args.stream_id} has already ended ({state})", always=True)
        return EXIT_OK
    await client.get_workflow_handle(workflow_id_for(args.stream_id)).signal("stop")
    print(f"stop requested for stream {args.stream_id}")
    return EXIT_OK


async def _describe(client: Client, stream_id: str) -> WorkflowExecutionDescription:
    try:
        return await client.get_workflow_handle(workflow_id_for(stream_id)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise StreamNotFound(f"no stream {stream_id!r} (no workflow {workflow_id_for(stream_id)})") from exc
        raise


async def stream_status(client: Client, stream_id: str) -> StreamStatus:
    """The workflow's `status` query; a finished stream's status is its report (no worker replays it)."""
    description = await _describe(client, stream_id)
    handle = client.get_workflow_handle(workflow_id_for(stream_id), result_type=StreamReport)
    if description.status != WorkflowExecutionStatus.COMPLETED:
        return await handle.query("status", result_type=StreamStatus)
    report = await handle.result()
    duration = report.media.duration_s if report.media else None
    return StreamStatus(
        stream_id=report.stream_id, source=report.source, state=report.status,
        position_s=duration if duration is not None else (report.analysed_s or 0.0), duration_s=duration,
        windows_done=report.windows, windows_total=report.windows, runs=report.runs,
        defects=report.defects, open_defects=[], live=bool(report.media and report.media.live),
        renditions=rendition_statuses(report),
    )


def _attributes(attributes: Any) -> dict[str, Any]:
    """The stream's search attributes, where the namespace has them: state, defects, open defects, kinds."""
    values = {pair.key.name: pair.value for pair in attributes}
    out: dict[str, Any] = {}
    for field, key in _LISTED_ATTRIBUTES.items():
        if key.name in values:
            out[field] = list(values[key.name]) if key is sa.DEFECT_KINDS else values[key.name]
    return out


def list_query(args: argparse.Namespace) -> str:
    """The visibility query for `list`: stream workflows, narrowed by the search attributes asked for."""
    def quoted(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    clauses = [_STREAM_WORKFLOWS]
    if getattr(args, "open_defects", False):
        clauses.append(f"{sa.OPEN_DEFECTS.name} > 0")
    if getattr(args, "source", None):
        clauses.append(f"{sa.SOURCE.name} = {quoted(normalise_source(args.source))}")
    if getattr(args, "state", None):
        clauses.append(f"{sa.STATE.name} = {quoted(args.state)}")
    if getattr(args, "defect_kind", None):
        clauses.append(f"{sa.DEFECT_KINDS.name} = {quoted(args.defect_kind)}")
    if getattr(args, "query", None):
        clauses.append(f"({args.query})")
    return " AND ".join(clauses)


async def list_streams(client: Client, *, limit: int, query: str = _STREAM_WORKFLOWS) -> list[dict[str, Any]]:
    """The streams `query` finds, newest first, one entry per stream id (its latest run)."""
    streams: dict[str, dict[str, Any]] = {}
    async for execution in client.list_workflows(query, limit=limit * 4):
        if execution.id in streams:
            continue  # an earlier run of the same stream (continue-as-new); the newest comes first
        source, unreadable = await _listed_source(execution)
        streams[execution.id] = {
            "stream_id": execution.id.removeprefix(_WORKFLOW_PREFIX),
            "workflow_id": execution.id,
            "status": execution.status.name.lower() if execution.status else "unknown",
            "start_time": execution.start_time.isoformat(),
            "close_time": execution.close_time.isoformat() if execution.close_time else None,
            "source": source,
            **({"channel": execution.parent_id.removeprefix(_WORKFLOW_PREFIX)} if execution.parent_id else {}),
            **({"source_error": unreadable} if unreadable else {}),
            **_attributes(execution.typed_search_attributes),
        }
        if len(streams) >= limit:
            break
    return list(streams.values())


async def _listed_source(execution: Any) -> tuple[str | None, str | None]:
    """The stream's source from its memo, or why it cannot be read here: a stream encrypted with a
    key this process lacks is still listed (its id, status and search attributes are in clear)."""
    try:
        return (await execution.memo()).get("source"), None
    except PayloadKeyError as exc:
        return None, str(exc)
