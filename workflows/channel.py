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
from temporalio.workflow import ParentClosePolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from vqa import search_attributes as sa
    from vqa.channel import merge_defects, selected
    from vqa.contracts import (
        WATCH_MANIFESTS,
        ChannelInfo,
        ChannelProgress,
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
_ENDED = ("completed", "stopped", "failed", "skipped")
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
    """The orchestration of one channel, owned by its `StreamMonitorWorkflow`. Its renditions are
    children that outlive the channel's runs (ParentClosePolicy.ABANDON), so the channel can
    continue-as-new while they go on: each tells it its state by signal, its report at its end."""

    def __init__(
        self, request: StreamRequest, progress: ChannelProgress, *,
        attributes: Callable[[StreamRequest], Any] | None = None,
    ) -> None:
        self.request = request
        self.p = progress
        self.info = progress.info
        self.attributes = attributes
        self.status_of: dict[str, RenditionStatus] = {s.name: s for s in progress.renditions}
        self.published_attributes: tuple[object, ...] | None = None

    @classmethod
    def start(cls, request: StreamRequest, info: ChannelInfo, **kw: Any) -> ChannelRun:
        """A new channel: its ladder as probed; raises ValueError when --renditions names what it lacks."""
        decoded = selected(info.renditions, request.renditions)
        missing = {n for d in info.defects if d.details.get("check") == "rendition_missing" for n in d.details["renditions"]}
        statuses = [
            RenditionStatus(name=r.name, type=r.type, decoded=r.name in decoded,
                            state="pending" if r.name in decoded else "skipped")
            for r in info.renditions
        ]
        for status in statuses:
            if status.name in missing:
                status.state, status.error = "failed", "the master playlist lists it, but it cannot be loaded"
        progress = ChannelProgress(info=info, decoded=[n for n in decoded if n not in missing], renditions=statuses)
        return cls(request, progress, **kw)

    @property
    def decoded(self) -> list[str]:
        return self.p.decoded

    @property
    def stop_requested(self) -> bool:
        return self.p.stop_requested

    @property
    def reports(self) -> dict[str, StreamReport]:
        return {s.name: s.report for s in self.status_of.values() if s.report is not None}

    @property
    def errors(self) -> dict[str, str]:
        return {s.name: s.error for s in self.status_of.values() if s.state == "failed" and s.error and s.decoded}

    def _ended(self, name: str) -> bool:
        return self.status_of[name].state in _ENDED

    def _all_ended(self) -> bool:
        """Every rendition started has ended (one never started, the channel stopped first, has too)."""
        return all(self._ended(n) for n in self.p.started) and (
            self.p.stop_requested or len(self.p.started) == len(self.p.decoded)
        )

    def child_request(self, name: str) -> StreamRequest:
        rendition = next(r for r in self.info.renditions if r.name == name)
        return self.request.model_copy(update={
            "stream_id": child_stream_id(self.request.stream_id, name), "source": rendition.uri,
            "channel": self.request.stream_id, "renditions": [], "resume": None, "channel_resume": None,
        })

    async def run(self, store: Callable[[StreamReport], Awaitable[StreamReport]]) -> StreamReport:
        """Start the decoded renditions' children (those not started by an earlier run), wait for
        all of them to end, continuing-as-new when Temporal suggests it; merge, store the report."""
        watching: list[asyncio.Task[None]] = []
        for name in [n for n in self.p.decoded if n not in self.p.started]:
            if self.p.stop_requested:
                break
            child = self.child_request(name)
            handle = await workflow.start_child_workflow(
                STREAM_WORKFLOW, child, id=workflow_id_for(child.stream_id), result_type=StreamReport,
                parent_close_policy=ParentClosePolicy.ABANDON,  # renditions outlive the channel's runs
                search_attributes=self.attributes(child) if self.attributes and child.search_attributes else None,
                static_summary=f"rendition {name} of channel {self.request.stream_id}",
                memo={"source": child.source, "channel": self.request.stream_id},  # `list` shows them
            )
            self.p.started.append(name)
            self.status_of[name].state = "probing"
            watching.append(asyncio.create_task(self._finished(name, handle)))
            self.publish()
        watch = asyncio.create_task(self._watch()) if self.info.live else None
        await workflow.wait_condition(lambda: self._all_ended() or workflow.info().is_continue_as_new_suggested())
        if watch is not None and not watch.done():
            watch.cancel()
        if watch is not None:
            await workflow.wait([watch])
        if not self._all_ended():
            await workflow.wait_condition(workflow.all_handlers_finished)
            self.p.runs += 1
            self.p.renditions = list(self.status_of.values())
            workflow.continue_as_new(self.request.model_copy(update={"channel_resume": self.p}))
        report = self.report()
        self.publish(report)
        return await store(report)

    async def _finished(self, name: str, handle: workflow.ChildWorkflowHandle[Any, StreamReport]) -> None:
        """The run that started a child also sees it end: a failure the child could not signal
        (terminated, timed out) still ends the rendition. Its last signal, if any, came first."""
        try:
            report = await handle
        except ChildWorkflowError as err:
            if self._ended(name):
                return
            cause = err.cause
            details = getattr(cause, "details", None) or ()
            failed = details[0] if details else None
            status = self.status_of[name]
            status.state, status.error = "failed", getattr(cause, "message", None) or str(err)
            if isinstance(failed, (dict, StreamReport)):
                status.report = StreamReport.model_validate(failed)
        else:
            if self._ended(name):
                return
            self.rendition_status(_ended_status(self.status_of[name], report))
        self.publish()

    async def _watch(self) -> None:
        """A live channel's manifest checks, one long activity after another until its playlists end."""
        while True:
            request = ManifestWatchRequest(
                channel_id=self.request.stream_id, renditions=self.info.renditions,
                target_duration_s=self.info.target_duration_s or 6.0, playlists=self.p.playlists,
                open_events=self.p.manifest_open, watch_s=_WATCH_S,
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
            self.p.playlists = result.playlists
            for event in result.events:
                self.p.manifest_open = [e for e in self.p.manifest_open if e.id != event.id]
                if event.phase == "opened":
                    self.p.manifest_open.append(event)
                else:
                    self.p.manifest_closed.append(event.defect)
            if result.events:
                self.publish()
            if result.ended:
                return

    def manifest_defects(self) -> list[Defect]:
        """The probe's, the watch's closed ones, and those still open, ending at their rendition's
        live edge when the watch last looked (the channel ended, or was stopped, with them open)."""
        edges = {p.name: p.edge_s for p in self.p.playlists}
        still_open = []
        for event in self.p.manifest_open:
            d = event.defect
            end = max([d.end_s] + [edges[n] for n in d.details.get("renditions", []) if n in edges])
            still_open.append(d.model_copy(update={"end_s": end, "duration_s": round(end - d.start_s, 3)}))
        return [*self.info.defects, *self.p.manifest_closed, *still_open]

    def stop(self) -> None:
        """Stop the channel: every rendition still running is told to stop (and reports)."""
        self.p.stop_requested = True
        for name in self.p.started:
            if not self._ended(name):
                child = workflow.get_external_workflow_handle(workflow_id_for(child_stream_id(self.request.stream_id, name)))
                asyncio.create_task(_signal_stop(child))

    def rendition_status(self, update: RenditionStatus) -> None:
        """A child's news: its state, position and open defects; at its end, its report too. A
        rendition that has ended stays so."""
        if update.name not in self.status_of or self._ended(update.name):
            return
        update.decoded, update.type = True, self.status_of[update.name].type
        if update.report is not None and update.state not in _ENDED:
            update.state = update.report.status
        self.status_of[update.name] = update
        self.publish()

    def entries(self) -> list[RenditionReport]:
        return [
            RenditionReport(**r.model_dump(), report=self.status_of[r.name].report, error=self.status_of[r.name].error)
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
            runs=self.p.runs,
        )

    def state(self) -> str:
        if not self._all_ended():
            return "running"
        return self.report().status

    def status(self) -> StreamStatus:
        open_entries = [
            RenditionReport(**r.model_dump(), report=_open_report(self.request, self.status_of[r.name].open_defects))
            for r in self.info.renditions
        ]
        done = merge_defects(self.entries(), [*self.info.defects, *self.p.manifest_closed])
        positions = [s.position_s for s in self.status_of.values() if s.decoded]
        return StreamStatus(
            stream_id=self.request.stream_id, source=self.request.source, state=self.state(),  # type: ignore[arg-type]
            position_s=min(positions, default=0.0), duration_s=None, windows_done=sum(r.windows for r in self.reports.values()),
            windows_total=None, runs=self.p.runs, defects=done,
            open_defects=merge_defects(open_entries, [e.defect for e in self.p.manifest_open]),
            live=self.info.live, renditions=[s.model_copy(update={"report": None}) for s in self.status_of.values()],
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
        self._upsert(state, defects, opened)

    def _upsert(self, state: str, defects: list[Defect], opened: list[Defect]) -> None:
        """The channel's search attributes (state, defects, open ones, kinds), as a stream keeps
        its own, so `list --state running` or `--open-defects` finds channels too."""
        if not self.request.search_attributes:
            return
        kinds = sorted({d.kind for d in defects} | {d.kind for d in opened})
        values = (state, len(opened), len(defects), tuple(kinds))
        if values == self.published_attributes:
            return
        self.published_attributes = values
        workflow.upsert_search_attributes([
            sa.STATE.value_set(state), sa.OPEN_DEFECTS.value_set(len(opened)),
            sa.DEFECTS.value_set(len(defects)), sa.DEFECT_KINDS.value_set(kinds),
        ])


async def _signal_stop(child: workflow.ExternalWorkflowHandle[Any]) -> None:
    try:
        await child.signal("stop")
    except Exception as err:  # it has just ended: nothing to stop
        workflow.logger.info("stop not delivered to a rendition: %s", err)


def _ended_status(status: RenditionStatus, report: StreamReport) -> RenditionStatus:
    """A rendition's status once its report is in."""
    return status.model_copy(update={
        "state": report.status, "position_s": report.analysed_s or 0.0, "live_edge_s": report.live_edge_s,
        "open_defects": [], "error": report.error, "report": report,
    })


def _open_report(request: StreamRequest, defects: list[Defect]) -> StreamReport:
    """A stand-in report holding a rendition's open defects, to merge them as the final ones are."""
    return StreamReport(stream_id=request.stream_id, source=request.source, status="completed",
                        window_seconds=request.window_seconds, windows=0, defects=defects)
