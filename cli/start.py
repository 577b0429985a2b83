"""`start` (the SOURCE form): start or attach to a stream's workflow, and with --wait, its report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError, TimeoutError
from temporalio.service import RPCError

from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from vqa.search_attributes import SEARCH_ATTRIBUTES
from vqa.settings import Settings

from .common import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, UsageError, err, info
from .connection import connect_or_start
from .progress import wait_for_report
from .render import format_report
from .request import build_request, derive_stream_id, hashed_id, normalise_source


async def run_start(args: argparse.Namespace, settings: Settings) -> int:
    """The command: validate, connect, start or attach; with --wait, the report and its exit code."""
    if args.json and not args.wait:
        raise UsageError("--json needs --wait")
    request = build_request(args, _source(args, settings))
    try:
        client = await connect_or_start(settings, dev=args.dev)
    except ConnectionError as exc:
        err(f"error: {exc}")
        return EXIT_UNREACHABLE
    handle, request, started = await start_or_attach(client, settings, request)
    info(f"stream {request.stream_id}: {'started' if started else 'attached to'} workflow {handle.id}")
    info(f"Temporal UI: {settings.workflow_url(handle.id)}", always=args.dev)
    if not args.wait:
        if args.dev:
            info("without --wait no worker runs here: the analysis runs on `python worker.py` workers", always=True)
        print(handle.id)
        return EXIT_OK
    report = await _wait(client, handle, request, settings, with_worker=args.dev)
    print(report.model_dump_json() if args.json else format_report(report))
    if report.status == "failed":
        err(f"error: {report.error or 'the analysis failed'}")
        return EXIT_FAILED
    return EXIT_OK


def _source(args: argparse.Namespace, settings: Settings) -> str:
    """SOURCE as the worker will open it; none given: the demo clip (generated once, in $VQA_HOME)."""
    if args.source:
        return normalise_source(args.source)
    from vqa.synth import demo_spec, make_clip

    source = str(settings.home / "demo.mp4")
    if not Path(source).exists():
        info(f"no SOURCE given: generating the demo clip {source} (black, freeze and silence at known times)")
        make_clip(source, demo_spec())
    return source


async def _wait(
    client: Client, handle: WorkflowHandle[Any, Any], request: StreamRequest, settings: Settings, *, with_worker: bool
) -> StreamReport:
    """The stream's report; with `with_worker` (--dev), a worker runs in this process meanwhile.

    A worker seen polling a minute ago may be dead now (the server keeps pollers listed
    for minutes), so --dev always brings its own: another worker on the queue only adds capacity.
    """
    if not with_worker:
        return await _report(client, handle, request)
    from .worker import build_worker

    info(f"running a worker in this process on task queue {settings.task_queue!r}")
    # Expected activity failures (a bad source) are reported once, as the error line.
    logging.getLogger("temporalio").setLevel(logging.CRITICAL)
    async with build_worker(
        client, task_queue=settings.task_queue, max_concurrent_windows=settings.max_concurrent_windows, settings=settings
    ):
        return await _report(client, handle, request)


async def _report(client: Client, handle: WorkflowHandle[Any, Any], request: StreamRequest) -> StreamReport:
    try:
        return await wait_for_report(client, handle)
    except WorkflowFailureError as exc:
        return failed_report(request, exc)


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
        info(
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
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from workflows import StreamMonitorWorkflow
    from workflows.stream import initial_search_attributes

    if not request.search_attributes and await search_attributes_registered(client, settings.namespace):
        request = request.model_copy(update={"search_attributes": True})
    request, existing_source = await _own_stream_id(client, request)
    wid = workflow_id_for(request.stream_id)
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
        return handle, request, existing_source is None
    except WorkflowAlreadyStartedError:
        # Already analysed (completed): attach to that analysis instead of running a second one.
        return client.get_workflow_handle(wid, result_type=StreamReport), request, False


async def _own_stream_id(client: Client, request: StreamRequest) -> tuple[StreamRequest, str | None]:
    """The request with a stream id that is this source's, and the source its workflow already has (if any).

    The same file name of another file gets its own id (the name and a hash); an id given
    with --stream-id that already monitors another source is a usage error.
    """
    if request.stream_id != request.stream_id.strip():  # pragma: no cover - validated by the model
        raise UsageError("invalid stream id")
    for attempt in range(2):
        existing_source = await _existing_source(client, workflow_id_for(request.stream_id))
        if existing_source is not None and existing_source != request.source:
            if attempt == 0 and request.stream_id == derive_stream_id(request.source):
                # Same file name, different file: give this source its own stream id.
                request = request.model_copy(update={"stream_id": hashed_id(request.stream_id, request.source)})
                continue
            raise UsageError(f"stream id {request.stream_id!r} already monitors {existing_source}; choose another --stream-id")
        break
    return request, existing_source


async def _existing_source(client: Client, workflow_id: str) -> str | None:
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return None
    memo = await description.memo()
    source = memo.get("source")
    return str(source) if source is not None else None


def failed_report(request: StreamRequest, error: BaseException) -> StreamReport:
    """The report of an analysis that failed: the workflow's own (in the failure's details), else one saying why."""
    cause = error.cause if isinstance(error, WorkflowFailureError) else error
    if isinstance(cause, ApplicationError) and cause.details:
        try:
            report = StreamReport.model_validate(cause.details[0])
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
        stream_id=request.stream_id, source=request.source, status="failed", error=message,
        window_seconds=request.window_seconds, windows=0,
    )
