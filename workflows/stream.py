"""One durable workflow per stream: probe, then one activity per window.

The workflow never sees media. It hands each window's activity the detectors'
carried state from the previous window, and stitches the returned events: an
event opened in one window and closed several windows later is one defect.
"""


import asyncio
import math
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from vqa.contracts import (
        ANALYZE_WINDOW,
        NOTIFY_DEFECTS,
        PROBE_SOURCE,
        WRITE_REPORT,
        Defect,
        DefectEvent,
        MediaInfo,
        NotifyRequest,
        ProbeRequest,
        StreamProgress,
        StreamReport,
        StreamRequest,
        StreamState,
        StreamStatus,
        WindowRequest,
        WindowResult,
        WriteReportRequest,
    )
    from vqa.stitch import apply_window, report_defects

_NON_RETRYABLE = ["UnreadableSource", "InvalidRequest"]
_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
    non_retryable_error_types=_NON_RETRYABLE,
)
# A report written after the analysis failed is a courtesy: a short try, then give up.
_RETRY_ONCE_MORE = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=2)
# A webhook that is down is asked again for an hour; the analysis never waits on it.
_NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=["NotificationRejected"],
)
ANALYSIS_FAILED = "AnalysisFailed"


def _cause_message(err: BaseException) -> str:
    while isinstance(err, ActivityError) and err.cause is not None:
        err = err.cause
    return getattr(err, "message", None) or str(err)


@workflow.defn
class StreamMonitorWorkflow:
    @workflow.init
    def __init__(self, request: StreamRequest) -> None:
        self.request = request.model_copy(update={"resume": None})
        progress = request.resume
        self.progress = progress
        self.state: StreamState = "running" if progress is not None else "probing"
        self.stop_requested = progress.stop_requested if progress is not None else False
        self.window_in_flight: workflow.ActivityHandle[WindowResult] | None = None
        self.notifying: set[asyncio.Task[None]] = set()
        self.notifications_failed = 0

    @workflow.run
    async def run(self, request: StreamRequest) -> StreamReport:
        if self.progress is None:
            media = await self._probe()
            self.progress = StreamProgress(media=media)
            self.state = "running"
        p = self.progress
        total = self._windows_total(p.media)
        started_at = p.next_index
        while not p.ended and not self.stop_requested and (total is None or p.next_index < total):
            if p.next_index - started_at >= self.request.windows_per_run or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._notifications_settled()  # pending deliveries do not survive continue-as-new
                p.runs += 1
                p.stop_requested = self.stop_requested
                workflow.continue_as_new(self.request.model_copy(update={"resume": p}))
            result = await self._analyze(p, total)
            if result is None:
                break  # stopped while a live window waited for media
            self._notify(self._new_events(p, result))
            apply_window(p, result)
        if p.media.live:
            p.media = p.media.model_copy(update={"duration_s": p.position_s})
        self.state = "completed" if p.ended or (total is not None and p.next_index >= total) else "stopped"
        report = self._report()
        # Events still open are closed by the report (a stopped stream): say so too.
        self._notify([DefectEvent(id=d_id, phase="closed", defect=d) for d_id, d in self._report_events(report)])
        report = await self._store(report)
        await self._notifications_settled()
        return report

    @workflow.query
    def status(self) -> StreamStatus:
        p = self.progress
        return StreamStatus(
            stream_id=self.request.stream_id,
            source=self.request.source,
            state=self.state,
            position_s=self._position(),
            duration_s=p.media.duration_s if p else None,
            windows_done=p.windows_done if p else 0,
            windows_total=self._windows_total(p.media) if p else None,
            runs=p.runs if p else 1,
            defects=sorted(p.defects, key=lambda d: d.start_s) if p else [],
            open_defects=[e.defect for e in p.open_events] if p else [],
            live=bool(p and p.media.live),
            live_edge_s=p.live_edge_s if p else None,
            lag_s=round(max(0.0, p.live_edge_s - p.position_s), 3) if p and p.live_edge_s is not None else None,
        )

    @workflow.signal
    def stop(self) -> None:
        """End the analysis with status `stopped`: a file's window in progress is finished,
        a live window still waiting for media is cancelled."""
        self.stop_requested = True
        if self.progress is not None and self.progress.media.live and self.window_in_flight is not None:
            self.window_in_flight.cancel()

    async def _probe(self) -> MediaInfo:
        try:
            return await workflow.execute_activity(
                PROBE_SOURCE,
                ProbeRequest(source=self.request.source),
                result_type=MediaInfo,
                start_to_close_timeout=timedelta(seconds=120),
                retry_policy=_RETRY,
            )
        except ActivityError as err:
            self.state = "failed"
            report = await self._store(self._report(error=_cause_message(err)), best_effort=True)
            raise ApplicationError(_cause_message(err), report, type=ANALYSIS_FAILED, non_retryable=True) from err

    async def _analyze(self, p: StreamProgress, total: int | None) -> WindowResult | None:
        w = self.request.window_seconds
        index = p.next_index
        end = (index + 1) * w if total is None else min((index + 1) * w, p.media.duration_s)
        window = WindowRequest(
            stream_id=self.request.stream_id,
            source=self.request.source,
            index=index,
            start_s=round(index * w, 6),
            end_s=round(end, 6),
            is_last=index == total - 1 if total is not None else False,
            media=p.media,
            detectors=self.request.detectors,
            options=self.request.options,
            states=p.states,
            results=self.request.results,
            open_event_ids=[e.id for e in p.open_events],
        )
        try:
            self.window_in_flight = workflow.start_activity(
                ANALYZE_WINDOW,
                window,
                result_type=WindowResult,
                start_to_close_timeout=timedelta(seconds=max(120.0, 30.0 * w)),
                heartbeat_timeout=timedelta(seconds=self.request.heartbeat_timeout_s),
                retry_policy=_RETRY,
                summary=f"window {index} · {window.start_s:g}–{window.end_s:g} s",
            )
            return await self.window_in_flight
        except ActivityError as err:
            if self.stop_requested and isinstance(err.cause, CancelledError):
                return None
            self.state = "failed"
            message = f"window {index} ({window.start_s:g}-{window.end_s:g} s): {_cause_message(err)}"
            report = await self._store(self._report(error=message), best_effort=True)
            raise ApplicationError(message, report, type=ANALYSIS_FAILED, non_retryable=True) from err

    def _new_events(self, p: StreamProgress, result: WindowResult) -> list[DefectEvent]:
        """What a window changed: events opened for the first time, and events closed.
        An event opened and closed within one window is announced as both."""
        known = {e.id for e in p.open_events}
        events: list[DefectEvent] = []
        for event in result.events:
            if event.id not in known:
                events.append(event if event.phase == "opened" else event.model_copy(update={"phase": "opened"}))
                known.add(event.id)
            if event.phase == "closed":
                events.append(event)
        return events

    def _report_events(self, report: StreamReport) -> list[tuple[str, Defect]]:
        """The report's defects that are still open events, with their event ids."""
        p = self.progress
        assert p is not None
        by_start = {(e.defect.kind, e.defect.track, e.defect.start_s): e.id for e in p.open_events}
        return [
            (by_start[(d.kind, d.track, d.start_s)], d)
            for d in report.defects
            if (d.kind, d.track, d.start_s) in by_start
        ]

    def _notify(self, events: list[DefectEvent]) -> None:
        """Start delivering `events` without waiting: nothing happened, nothing is scheduled."""
        if not events:
            return
        request = NotifyRequest(
            stream_id=self.request.stream_id, source=self.request.source, url=self.request.notify_url, events=events
        )
        task = asyncio.create_task(self._deliver(request))
        self.notifying.add(task)
        task.add_done_callback(self.notifying.discard)

    async def _deliver(self, request: NotifyRequest) -> None:
        try:
            await workflow.execute_activity(
                NOTIFY_DEFECTS,
                request,
                result_type=int,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(hours=1),
                retry_policy=_NOTIFY_RETRY,
                summary=", ".join(f"{e.defect.kind} {e.phase}" for e in request.events)[:200],
            )
        except ActivityError as err:
            # Notifications are a courtesy to receivers: they never fail the analysis.
            self.notifications_failed += 1
            workflow.logger.warning("defect notification not delivered: %s", _cause_message(err))

    async def _notifications_settled(self) -> None:
        """Give deliveries still being retried up to `notify_wait_s`, then go on without them."""
        if not self.notifying or self.request.notify_wait_s <= 0:
            return
        try:
            await workflow.wait_condition(
                lambda: not self.notifying, timeout=timedelta(seconds=self.request.notify_wait_s)
            )
        except asyncio.TimeoutError:
            workflow.logger.warning("%d defect notifications still undelivered", len(self.notifying))

    async def _store(self, report: StreamReport, *, best_effort: bool = False) -> StreamReport:
        """Write the report to the stream's results location; the copy returned says where."""
        try:
            uri = await workflow.execute_activity(
                WRITE_REPORT,
                WriteReportRequest(report=report, results=self.request.results),
                result_type=str,  # None when the results sink is off
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=_RETRY_ONCE_MORE if best_effort else _RETRY,
                summary="report",
            )
        except ActivityError as err:
            if best_effort:
                return report  # the analysis already failed; that failure is the one to report
            self.state = "failed"
            message = _cause_message(err)
            raise ApplicationError(message, self._report(error=message), type=ANALYSIS_FAILED, non_retryable=True) from err
        return report.model_copy(update={"results_uri": uri})

    def _windows_total(self, media: MediaInfo) -> int | None:
        """Windows in a file or VOD playlist; None for a live stream (it ends when its playlist does)."""
        if media.live:
            return None
        return max(1, math.ceil(media.duration_s / self.request.window_seconds - 1e-9))

    def _position(self) -> float:
        p = self.progress
        return round(p.position_s, 6) if p is not None else 0.0

    def _report(self, *, error: str | None = None) -> StreamReport:
        p = self.progress
        # Stopped (or failed) with events still open: they end where the analysis ended.
        defects = report_defects(p, position_s=self._position()) if p else []
        status = "failed" if error is not None else ("stopped" if self.state == "stopped" else "completed")
        return StreamReport(
            stream_id=self.request.stream_id,
            source=self.request.source,
            status=status,
            error=error,
            media=p.media if p else None,
            window_seconds=self.request.window_seconds,
            windows=p.windows_done if p else 0,
            defects=defects,
        )

