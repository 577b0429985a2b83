"""A channel: one child workflow per rendition, their reports merged (deterministic, no media).

The stream workflow hands over here when its source is a master playlist. Each decoded
rendition is a `StreamMonitorWorkflow` of its own (stream id `ID.NAME`), started as a
child: it decodes only itself, windows and notifications as any stream's, and tells the
channel its state by signal when its open defects change. Stopping the channel stops
them; a child that fails is named in the report and the others go on. The channel makes
no per-window activity: its own actions are the probe, the children, and the report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from vqa.channel import merge_defects, selected
    from vqa.contracts import (
        WATCH_MANIFESTS,
        ChannelInfo,
        Defect,
        DefectEvent,
        ManifestWatchRequest,
        ManifestWatchResult,
        PlaylistState,
        RenditionReport,
        RenditionStatus,
        StreamReport,
        StreamRequest,
        StreamStatus,
        workflow_id_for,
    )

STREAM_WORKFLOW = "StreamMonitorWorkflow"
RENDITION_STATUS_SIGNAL = "rendition_status"
# A live channel's manifest watch returns at least this often when nothing changes.
_WATCH_S = 300.0
_DEFECTS_SHOWN = 10
_WATCH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                           maximum_interval=timedelta(seconds=30))


def child_stream_id(channel_id: str, rendition: str) -> str:
    """A rendition's own stream id: the channel's, a dot, the rendition's name."""
    return f"{channel_id}.{rendition}"


class ChannelRun:
    """The orchestration of one channel, owned by its `StreamMonitorWorkflow`."""

    def __init__(
        self, request: StreamRequest, info: ChannelInfo, *, attributes: Callable[[StreamRequest], Any] | None = None
    ) -> None:
        self.request = request
        self.info = info
        self.attributes = attributes
        self.decoded = selected(info.renditions, request.renditions)
        self.status_of: dict[str, RenditionStatus] = {
            r.name: RenditionStatus(name=r.name, type=r.type, decoded=r.name in self.decoded,
                                    state="pending" if r.name in self.decoded else "skipped")
            for r in info.renditions
        }
        self.children: dict[str, workflow.ChildWorkflowHandle[Any, StreamReport]] = {}
        self.reports: dict[str, StreamReport] = {}
        self.errors: dict[str, str] = {}
        self.stop_requested = False
        self.manifest_open: dict[str, DefectEvent] = {}
        self.manifest_closed: list[Defect] = []
        self.playlists: list[PlaylistState] = []
        missing = {n for d in info.defects if d.details.get("check") == "rendition_missing" for n in d.details["renditions"]}
        for name in missing:
            self.status_of[name].state = "failed"
            self.status_of[name].error = "the master playlist lists it, but it cannot be loaded"
        self.decoded = [n for n in self.decoded if n not in missing]

    def child_request(self, name: str) -> StreamRequest:
        rendition = next(r for r in self.info.renditions if r.name == name)
        return self.request.model_copy(update={
            "stream_id": child_stream_id(self.request.stream_id, name), "source": rendition.uri,
            "channel": self.request.stream_id, "renditions": [], "resume": None,
        })

    async def run(self, store: Callable[[StreamReport], Awaitable[StreamReport]]) -> StreamReport:
        """Start every decoded rendition's child, wait for all of them, merge, store the report."""
        for name in self.decoded:
            if self.stop_requested:
                break
            child = self.child_request(name)
            self.children[name] = await workflow.start_child_workflow(
                STREAM_WORKFLOW, child, id=workflow_id_for(child.stream_id), result_type=StreamReport,
                search_attributes=self.attributes(child) if self.attributes and child.search_attributes else None,
                static_summary=f"rendition {name} of channel {self.request.stream_id}",
                memo={"source": child.source, "channel": self.request.stream_id},  # `list` shows them
            )
            self.status_of[name].state = "probing"
            self.publish()
        watch = asyncio.create_task(self._watch()) if self.info.live else None
        await asyncio.gather(*(self._finished(name, handle) for name, handle in self.children.items()))
        if watch is not None and not watch.done():
            watch.cancel()
        if watch is not None:
            await workflow.wait([watch])
        report = self.report()
        self.publish(report)
        return await store(report)

    async def _finished(self, name: str, handle: workflow.ChildWorkflowHandle[Any, StreamReport]) -> None:
        try:
            report = await handle
        except ChildWorkflowError as err:
            status = self.status_of[name]  # as the child's last signal left it
            cause = err.cause
            details = getattr(cause, "details", None) or ()
            failed = details[0] if details else None
            status.state, status.error = "failed", getattr(cause, "message", None) or str(err)
            self.errors[name] = status.error
            if isinstance(failed, (dict, StreamReport)):
                self.reports[name] = StreamReport.model_validate(failed)
        else:
            status = self.status_of[name]
            self.reports[name] = report
            status.state, status.position_s = report.status, report.analysed_s or 0.0
            status.open_defects = []
        self.publish()

    async def _watch(self) -> None:
        """A live channel's manifest checks, one long activity after another until its playlists end."""
        while True:
            request = ManifestWatchRequest(
                channel_id=self.request.stream_id, renditions=self.info.renditions,
                target_duration_s=self.info.target_duration_s or 6.0, playlists=self.playlists,
                open_events=list(self.manifest_open.values()), watch_s=_WATCH_S,
            )
            try:
                result = await workflow.execute_activity(
                    WATCH_MANIFESTS, request, result_type=ManifestWatchResult,
                    start_to_close_timeout=timedelta(seconds=_WATCH_S + 120), heartbeat_timeout=timedelta(seconds=30),
                    retry_policy=_WATCH_RETRY, summary="manifest watch",
                )
            except ActivityError as err:
                workflow.logger.warning("manifest watch failed: %s", err)
                return
            self.playlists = result.playlists
            for event in result.events:
                if event.phase == "opened":
                    self.manifest_open[event.id] = event
                else:
                    self.manifest_open.pop(event.id, None)
                    self.manifest_closed.append(event.defect)
            if result.events:
                self.publish()
            if result.ended:
                return

    def manifest_defects(self) -> list[Defect]:
        """The probe's, the watch's closed ones, and those still open, ending at their rendition's
        live edge when the watch last looked (the channel ended, or was stopped, with them open)."""
        edges = {p.name: p.edge_s for p in self.playlists}
        still_open = []
        for event in self.manifest_open.values():
            d = event.defect
            end = max([d.end_s] + [edges[n] for n in d.details.get("renditions", []) if n in edges])
            still_open.append(d.model_copy(update={"end_s": end, "duration_s": round(end - d.start_s, 3)}))
        return [*self.info.defects, *self.manifest_closed, *still_open]

    def stop(self) -> None:
        """Stop the channel: every rendition still running is told to stop (and reports)."""
        self.stop_requested = True
        for name, handle in self.children.items():
            if name not in self.reports and name not in self.errors:
                asyncio.create_task(handle.signal("stop"))

    def rendition_status(self, update: RenditionStatus) -> None:
        """A child's news: its state, position and open defects (kept unless it has ended)."""
        if update.name in self.status_of and self.status_of[update.name].state not in ("completed", "stopped", "failed"):
            self.status_of[update.name] = update
            self.publish()

    def entries(self) -> list[RenditionReport]:
        return [
            RenditionReport(**r.model_dump(), report=self.reports.get(r.name), error=self.status_of[r.name].error)
            for r in self.info.renditions
        ]

    def report(self) -> StreamReport:
        entries = self.entries()
        analysed = [r for r in self.reports.values()]
        failed_all = bool(self.decoded) and all(name in self.errors for name in self.decoded)
        status = "stopped" if self.stop_requested else ("failed" if failed_all or not self.decoded else "completed")
        error = None
        if status == "failed":
            error = "every rendition failed: " + "; ".join(f"{n}: {e}" for n, e in self.errors.items()) if self.errors \
                else "no rendition of the channel could be loaded"
        return StreamReport(
            stream_id=self.request.stream_id, source=self.request.source, status=status, error=error,
            window_seconds=self.request.window_seconds, windows=sum(r.windows for r in analysed),
            analysed_s=max((r.analysed_s or 0.0 for r in analysed), default=None),
            defects=merge_defects(entries, self.manifest_defects()), renditions=entries,
            live_edge_s=max((r.live_edge_s for r in analysed if r.live_edge_s is not None), default=None),
        )

    def state(self) -> str:
        states = [self.status_of[n].state for n in self.decoded]
        if any(s in ("pending", "probing", "running") for s in states):
            return "running"
        return self.report().status

    def status(self) -> StreamStatus:
        open_entries = [
            RenditionReport(**r.model_dump(), report=_open_report(self.request, self.status_of[r.name].open_defects))
            for r in self.info.renditions
        ]
        done = merge_defects(self.entries(), [*self.info.defects, *self.manifest_closed])
        positions = [s.position_s for s in self.status_of.values() if s.decoded]
        return StreamStatus(
            stream_id=self.request.stream_id, source=self.request.source, state=self.state(),  # type: ignore[arg-type]
            position_s=min(positions, default=0.0), duration_s=None, windows_done=sum(r.windows for r in self.reports.values()),
            windows_total=None, runs=1, defects=done,
            open_defects=merge_defects(open_entries, [e.defect for e in self.manifest_open.values()]),
            live=self.info.live, renditions=list(self.status_of.values()),
        )

    def publish(self, report: StreamReport | None = None) -> None:
        """The channel's current details in the Temporal UI: one row per rendition."""
        rows = ["| rendition | type | state | position s | open defects |", "|---|---|---|---|---|"]
        for s in self.status_of.values():
            opened = ", ".join(sorted({d.kind for d in s.open_defects})) or ("" if s.error is None else f"error: {s.error}")
            name = f"{s.name} (`{workflow_id_for(child_stream_id(self.request.stream_id, s.name))}`)" if s.decoded else s.name
            rows.append(f"| {name} | {s.type} | {s.state} | {s.position_s:.1f} | {opened} |")
        state = report.status if report is not None else self.state()
        status = None if report is not None else self.status()
        defects = report.defects if report is not None else status.defects  # type: ignore[union-attr]
        opened = [] if status is None else status.open_defects
        parts = [f"**{state}** · channel · {self.request.source}", "\n".join(rows),
                 f"{len(defects) + len(opened)} channel defect(s)" + (f", {len(opened)} open" if opened else "")]
        shown = [("open", d) for d in opened] + [("closed", d) for d in defects[-_DEFECTS_SHOWN:]]
        if shown:
            table = ["| defect | track | start s | scope | renditions | |", "|---|---|---|---|---|---|"]
            for phase, d in shown:
                what = d.details.get("check", d.kind) if d.kind == "manifest_error" else d.kind
                table.append(f"| {what} | {d.track} | {d.start_s:.2f} | {d.details.get('scope', '')} | "
                             f"{', '.join(d.details.get('renditions', []))} | {phase} |")
            parts.append("\n".join(table))
        workflow.set_current_details("\n\n".join(parts))


def _open_report(request: StreamRequest, defects: list[Defect]) -> StreamReport:
    """A stand-in report holding a rendition's open defects, to merge them as the final ones are."""
    return StreamReport(stream_id=request.stream_id, source=request.source, status="completed",
                        window_seconds=request.window_seconds, windows=0, defects=defects)
