"""One durable workflow per stream: probe, then one activity per window.

The workflow never sees media. It hands each window's activity the detectors'
carried state from the previous window, and stitches the returned events: an
event opened in one window and closed several windows later is one defect.
"""


import math
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from vqa.contracts import (
        ANALYZE_WINDOW,
        PROBE_SOURCE,
        MediaInfo,
        ProbeRequest,
        StreamProgress,
        StreamReport,
        StreamRequest,
        StreamState,
        StreamStatus,
        WindowRequest,
        WindowResult,
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

    @workflow.run
    async def run(self, request: StreamRequest) -> StreamReport:
        if self.progress is None:
            media = await self._probe()
            self.progress = StreamProgress(media=media)
            self.state = "running"
        p = self.progress
        total = self._windows_total(p.media)
        started_at = p.next_index
        while p.next_index < total and not self.stop_requested:
            if p.next_index - started_at >= self.request.windows_per_run or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                p.runs += 1
                p.stop_requested = self.stop_requested
                workflow.continue_as_new(self.request.model_copy(update={"resume": p}))
            result = await self._analyze(p, total)
            apply_window(p, result)
        self.state = "stopped" if p.next_index < total else "completed"
        return self._report()

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
        )

    @workflow.signal
    def stop(self) -> None:
        """Finish the window in progress, then end the analysis with status `stopped`."""
        self.stop_requested = True

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
            raise ApplicationError(
                _cause_message(err), self._report(error=_cause_message(err)), type=ANALYSIS_FAILED, non_retryable=True
            ) from err

    async def _analyze(self, p: StreamProgress, total: int) -> WindowResult:
        w = self.request.window_seconds
        index = p.next_index
        window = WindowRequest(
            stream_id=self.request.stream_id,
            source=self.request.source,
            index=index,
            start_s=round(index * w, 6),
            end_s=round(min((index + 1) * w, p.media.duration_s), 6),
            is_last=index == total - 1,
            media=p.media,
            detectors=self.request.detectors,
            options=self.request.options,
            states=p.states,
        )
        try:
            return await workflow.execute_activity(
                ANALYZE_WINDOW,
                window,
                result_type=WindowResult,
                start_to_close_timeout=timedelta(seconds=max(120.0, 30.0 * w)),
                heartbeat_timeout=timedelta(seconds=self.request.heartbeat_timeout_s),
                retry_policy=_RETRY,
                summary=f"window {index} · {window.start_s:g}–{window.end_s:g} s",
            )
        except ActivityError as err:
            self.state = "failed"
            message = f"window {index} ({window.start_s:g}-{window.end_s:g} s): {_cause_message(err)}"
            raise ApplicationError(
                message, self._report(error=message), type=ANALYSIS_FAILED, non_retryable=True
            ) from err

    def _windows_total(self, media: MediaInfo) -> int:
        return max(1, math.ceil(media.duration_s / self.request.window_seconds - 1e-9))

    def _position(self) -> float:
        p = self.progress
        if p is None:
            return 0.0
        return round(min(p.next_index * self.request.window_seconds, p.media.duration_s), 6)

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

