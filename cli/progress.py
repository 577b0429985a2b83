"""Waiting for a stream's report, with a progress line on the terminal's stderr meanwhile."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from temporalio.client import Client, WorkflowHandle

from vqa.contracts import StreamReport, StreamStatus

from .render import progress_line


async def wait_for_report(client: Client, handle: WorkflowHandle[Any, Any]) -> StreamReport:
    """The workflow's result (WorkflowFailureError when it failed). On a terminal, a progress line is
    drawn from the `status` query, and the last one stays: where the stream ended."""
    # Progress follows the latest run of the workflow id (continue-as-new starts new runs).
    latest = client.get_workflow_handle(handle.id)
    progress = asyncio.create_task(_show_progress(latest)) if sys.stderr.isatty() else None
    try:
        return await handle.result()
    finally:
        if progress is not None:
            progress.cancel()
            # The last line stays on the terminal, even when the stream ended between two polls.
            final = await query_status(latest)
            sys.stderr.write("\r\033[K" + (progress_line(final) + "\n" if final is not None else ""))
            sys.stderr.flush()


async def query_status(handle: WorkflowHandle[Any, Any]) -> StreamStatus | None:
    """The `status` query's answer, or None: progress is a courtesy; the result says what happened."""
    try:
        return await asyncio.wait_for(handle.query("status", result_type=StreamStatus), timeout=5.0)
    except Exception:  # noqa: BLE001
        return None


async def _show_progress(handle: WorkflowHandle[Any, Any]) -> None:
    """A progress line on the terminal's stderr, from the `status` query about once a second."""
    while True:
        status = await query_status(handle)
        if status is not None:
            sys.stderr.write("\r\033[K" + progress_line(status))
            sys.stderr.flush()
        await asyncio.sleep(1.0)
