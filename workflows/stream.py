"""One durable workflow per stream: probe, then one activity per window.

The workflow never sees media. It hands each window's activity the detectors'
carried state from the previous window, and stitches the returned events: an
event opened in one window and closed several windows later is one defect.
"""


import asyncio
from datetime import timedelta
from typing import NoReturn
from urllib.parse import urlparse

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from .channel import RENDITION_STATUS_SIGNAL, ChannelRun

with workflow.unsafe.imports_passed_through():
    from vqa.contracts import (
        ANALYZE_WINDOW,
        NOTIFY_DEFECTS,
        PROBE_CHANNEL,
        PROBE_SOURCE,
        ChannelInfo,
        ChannelProbeRequest,
        WRITE_REPORT,
        Defect,
        DefectEvent,
        MediaInfo,
        NotifyRequest,
        ProbeRequest,
        RenditionStatus,
        StreamProgress,
        StreamReport,
        StreamRequest,
        StreamState,
        StreamStatus,
        WindowRequest,
        WindowResult,
        WriteReportRequest,
        workflow_id_for,
    )
    from vqa.stitch import apply_window, merge_group_results, report_defects, stitch_window
    from vqa import gating
    from vqa.windows import SLIVER_S, nominal_span, windows_total
    from vqa.search_attributes import (
        DEFECT_KINDS as SA_DEFECT_KINDS,
        DEFECTS as SA_DEFECTS,
        OPEN_DEFECTS as SA_OPEN_DEFECTS,
        SOURCE as SA_SOURCE,
        STATE as SA_STATE,
    )

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

_RECENT_DEFECTS_SHOWN = 10
# A rendition tells its channel how it is doing at least every this many windows (and when its
# open defects change).
_RENDITION_STATUS_EVERY = 6


def _may_be_channel(source: str) -> bool:
    """A source that may be a channel (an HLS master playlist, a DASH manifest): the channel probe tells."""
    path = (urlparse(source).path if "://" in source else source).lower()
    return path.endswith((".m3u8", ".mpd"))


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
        self.windows_in_flight: list[workflow.ActivityHandle[WindowResult]] = []
        self.published_attributes: tuple[object, ...] | None = None
        self.notifying: set[asyncio.Task[None]] = set()
        self.notifications_failed = 0
        self.sliver_s = SLIVER_S
        self.told_channel: tuple[int, tuple[str, ...]] | None = None
        # A channel's later run (after continue-as-new) is its channel from the start: its
        # renditions' signals may come before `run` does.
        self.channel: ChannelRun | None = None
        if request.channel_resume is not None:
            self.request = self.request.model_copy(update={"channel_resume": None})
            self.channel = ChannelRun(self.request, request.channel_resume, attributes=initial_search_attributes)

    @workflow.run
    async def run(self, request: StreamRequest) -> StreamReport:
        if self.channel is not None:
            return await self.channel.run(self._store)
        if self.progress is None and self.request.channel is None and _may_be_channel(self.request.source):
            # Histories recorded before channels were monitored replay as the one stream they were.
            if workflow.patched("channels"):
                info = await self._probe_channel()
                if info.renditions:
                    try:
                        self.channel = ChannelRun.start(self.request, info, attributes=initial_search_attributes)
                    except ValueError as err:  # --renditions names what the ladder lacks
                        self.state = "failed"
                        report = await self._store(self._report(error=str(err)), best_effort=True)
                        raise ApplicationError(str(err), report, type="InvalidRequest", non_retryable=True) from err
                    if self.stop_requested:
                        self.channel.stop()
                    return await self.channel.run(self._store)
        if self.progress is None:
            media = await self._probe()
            self.progress = StreamProgress(media=media)
            self.state = "running"
        p = self.progress
        # Histories recorded before a trailing sliver joined the last window replay as they ran.
        self.sliver_s = SLIVER_S if workflow.patched("sliver-joins-last-window") else 0.0
        # Histories recorded before windows ran in parallel replay one window at a time, and a
        # stream that began so (its detectors' state carried) goes on so after continue-as-new.
        serial = p.media.live or bool(p.states) or not workflow.patched("parallel-windows")
        parallel = 1 if serial else self.request.parallel
        self._publish()
        total = self._windows_total(p.media)
        await self._windows(p, total, parallel)
        if p.media.live:
            p.media = p.media.model_copy(update={"duration_s": p.position_s})
        self.state = "completed" if p.ended or (total is not None and p.next_index >= total) else "stopped"
        report = self._report()
        self._publish(report)
        # Events still open are closed by the report (a stopped stream): say so too.
        self._notify([DefectEvent(id=d_id, phase="closed", defect=d) for d_id, d in self._report_events(report)])
        report = await self._store(report)
        await self._notifications_settled()
        await self._tell_channel_end(report)
        return report

    @workflow.query
    def status(self) -> StreamStatus:
        if self.channel is not None:
            return self.channel.status()
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
            lag_s=self._lag_s(),
        )

    @workflow.signal
    def stop(self) -> None:
        """End the analysis with status `stopped`: a file's window in progress is finished,
        a live window still waiting for media is cancelled."""
        self.stop_requested = True
        if self.channel is not None:
            self.channel.stop()
        if self.progress is not None and self.progress.media.live:
            self._cancel_windows()

    @workflow.signal(name=RENDITION_STATUS_SIGNAL)
    def rendition_status(self, update: RenditionStatus) -> None:
        """A channel's rendition (a child workflow) telling how it is doing."""
        if self.channel is not None:
            self.channel.rendition_status(update)

    async def _probe_channel(self) -> ChannelInfo:
        """The renditions of a master playlist (none: the source is one stream)."""
        try:
            return await workflow.execute_activity(
                PROBE_CHANNEL,
                ChannelProbeRequest(source=self.request.source),
                result_type=ChannelInfo,
                start_to_close_timeout=timedelta(seconds=120),
                retry_policy=_RETRY,
            )
        except ActivityError as err:
            await self._fail(_cause_message(err), err)

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
            await self._fail(_cause_message(err), err)

    async def _windows(self, p: StreamProgress, total: int | None, parallel: int) -> None:
        """Analyse windows until the stream ends or is stopped (or continue-as-new): up to `parallel`
        in flight, each self-contained when more than one, their results applied in window order."""
        started_at = launched = p.next_index
        in_flight: dict[int, list[workflow.ActivityHandle[WindowResult]]] = {}
        def rollover() -> bool:
            return launched - started_at >= self.request.windows_per_run or workflow.info().is_continue_as_new_suggested()

        while not p.ended and (total is None or p.next_index < total):
            while not (self.stop_requested or rollover()) and len(in_flight) < parallel and (total is None or launched < total):
                in_flight[launched] = self._start_window(p, total, launched, self_contained=parallel > 1)
                launched += 1
            if not in_flight:
                if self.stop_requested:
                    return
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._notifications_settled()  # pending deliveries do not survive continue-as-new
                p.runs += 1
                p.stop_requested = self.stop_requested
                workflow.continue_as_new(self.request.model_copy(update={"resume": p}))
            try:
                result = await self._window_result(in_flight.pop(p.next_index))
            except ActivityError as err:
                self._cancel_windows()
                await self._fail_window(p, total, err)
            if result is None:
                break  # stopped while a live window waited for media
            self._apply(p, result)
        self._cancel_windows()

    def _cancel_windows(self) -> None:
        """Cancel every window activity still in flight (those not yet applied)."""
        for handle in self.windows_in_flight:
            handle.cancel()

    def _apply(self, p: StreamProgress, result: WindowResult) -> None:
        """Fold the next window's result in: stitched first when it was analysed on its own."""
        if result.edges or p.pending_runs:
            result = stitch_window(p, result)
        p.notify_targets = result.notify_targets
        self._notify(self._new_events(p, result))
        self._count_defects(result)
        apply_window(p, result)
        if (lag := self._lag_s()) is not None:
            p.max_lag_s = max(p.max_lag_s or 0.0, lag)
        self._publish()
        self._tell_channel(p)

    def _tell_channel(self, p: StreamProgress) -> None:
        """A channel's rendition: signal the channel its state when its open defects changed, and
        every few windows (its position); the channel's page and status show them."""
        if self.request.channel is None:
            return
        opened = tuple(sorted(e.id for e in p.open_events))
        told = self.told_channel
        if told is not None and told[1] == opened and p.windows_done - told[0] < _RENDITION_STATUS_EVERY:
            return
        self.told_channel = (p.windows_done, opened)
        name = self.request.stream_id.removeprefix(self.request.channel + ".")
        update = RenditionStatus(
            name=name, type="video" if p.media.video is not None else "audio", state=self.state,
            position_s=self._position(), live_edge_s=p.live_edge_s, open_defects=[e.defect for e in p.open_events],
        )
        channel = workflow.get_external_workflow_handle(workflow_id_for(self.request.channel))
        task = asyncio.create_task(self._signal_channel(channel, update))
        self.notifying.add(task)
        task.add_done_callback(self.notifying.discard)

    async def _tell_channel_end(self, report: StreamReport) -> None:
        """A channel's rendition, at its end: its report, by signal (the channel may be a later run
        than the one that started it, and learns of its renditions' ends only so)."""
        if self.request.channel is None:
            return
        p = self.progress
        update = RenditionStatus(
            name=self.request.stream_id.removeprefix(self.request.channel + "."),
            type="video" if p is None or p.media.video is not None else "audio", state=report.status,
            position_s=report.analysed_s or 0.0, live_edge_s=report.live_edge_s, error=report.error, report=report,
        )
        await self._signal_channel(workflow.get_external_workflow_handle(workflow_id_for(self.request.channel)), update)

    async def _signal_channel(self, channel: workflow.ExternalWorkflowHandle[object], update: RenditionStatus) -> None:
        try:
            await channel.signal(RENDITION_STATUS_SIGNAL, update)
        except Exception as err:  # the channel has ended: nobody to tell
            workflow.logger.info("rendition status not delivered to its channel: %s", err)

    def _count_defects(self, result: WindowResult) -> None:
        """`vqa_defects` on the worker's Prometheus endpoint: counted here, where events are
        whole (a window analysed on its own sees only its part of an event at its edge)."""
        closed = [e for e in result.events if e.phase == "closed"]
        if closed:
            counter = workflow.metric_meter().create_counter("vqa_defects", "defects found (counted when they end)")
            for event in closed:
                counter.add(1, {"kind": event.defect.kind, "track": event.defect.track})

    async def _fail_window(self, p: StreamProgress, total: int | None, err: ActivityError) -> None:
        """The next window failed (after its retries): the stream fails, with a report of what was found."""
        window = self._window_request(p, total, p.next_index, self_contained=False)
        await self._fail(f"window {window.index} ({window.start_s:g}-{window.end_s:g} s): {_cause_message(err)}", err)

    async def _fail(self, message: str, err: BaseException) -> NoReturn:
        """The analysis failed: say so in the UI, store the report of what was found (best effort),
        tell the channel (a rendition), and fail the workflow with that report."""
        self.state = "failed"
        self._publish(self._report(error=message))
        report = await self._store(self._report(error=message), best_effort=True)
        await self._tell_channel_end(report)
        raise ApplicationError(message, report, type=ANALYSIS_FAILED, non_retryable=True) from err

    def _window_request(self, p: StreamProgress, total: int | None, index: int, *, self_contained: bool) -> WindowRequest:
        w = self.request.window_seconds
        last = total is not None and index == total - 1
        start, end = nominal_span(index, total, p.media.duration_s, w) if total is not None else (index * w, (index + 1) * w)
        return WindowRequest(
            stream_id=self.request.stream_id,
            source=self.request.source,
            index=index,
            start_s=round(start, 6),
            end_s=round(end, 6),
            is_last=last,
            media=p.media,
            detectors=self.request.detectors,
            options=self.request.options,
            states={} if self_contained else p.states,
            results=self.request.results,
            open_event_ids=[] if self_contained else [e.id for e in p.open_events],
            self_contained=self_contained,
        )

    def _start_window(
        self, p: StreamProgress, total: int | None, index: int, *, self_contained: bool
    ) -> list[workflow.ActivityHandle[WindowResult]]:
        """Schedule one window's activities (one per detector group) now."""
        window = self._window_request(p, total, index, self_contained=self_contained)
        w = self.request.window_seconds
        summary = f"window {index} · {window.start_s:g}–{window.end_s:g} s"
        handles = [
            workflow.start_activity(
                ANALYZE_WINDOW,
                group_window,
                result_type=WindowResult,
                task_queue=group_window.group,  # None: the workflow's own task queue
                start_to_close_timeout=timedelta(seconds=max(120.0, 30.0 * w)),
                heartbeat_timeout=timedelta(seconds=self.request.heartbeat_timeout_s),
                retry_policy=_RETRY,
                summary=summary if group_window.group is None else f"{summary} · {group_window.group}",
            )
            for group_window in self._group_windows(window)
        ]
        self.windows_in_flight += handles
        return handles

    async def _window_result(self, handles: list[workflow.ActivityHandle[WindowResult]]) -> WindowResult | None:
        """The window's result, its groups' merged; None: stopped while a live window waited for media."""
        try:
            return merge_group_results([await handle for handle in handles])
        except ActivityError as err:
            if self.stop_requested and isinstance(err.cause, CancelledError):
                return None
            for handle in handles:
                handle.cancel()  # a group that failed fails the window: the others need not finish
            raise
        finally:
            self.windows_in_flight = [h for h in self.windows_in_flight if h not in handles]

    def _group_windows(self, window: WindowRequest) -> list[WindowRequest]:
        """The window as each detector group's activity sees it: its detectors and their state only.

        Without groups, the one request is the window itself.
        """
        groups = self.request.detector_groups
        if not groups:
            return [window]
        grouped = [name for names in groups.values() for name in names]
        requests = []
        if not self.request.detectors or set(self.request.detectors) - set(grouped):
            requests.append(
                window.model_copy(
                    update={
                        "detectors": [d for d in self.request.detectors if d not in grouped],
                        "exclude_detectors": grouped,
                        "states": {k: v for k, v in window.states.items() if k not in grouped},
                    }
                )
            )
        for queue, names in groups.items():
            requests.append(
                window.model_copy(
                    update={
                        "detectors": names,
                        "group": queue,
                        "states": {k: v for k, v in window.states.items() if k in names},
                        "options": {k: v for k, v in window.options.items() if k in names},
                    }
                )
            )
        return requests

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
        """Start delivering `events` without waiting: nothing happened, or nowhere to deliver
        it (no notify_url and no target on the workers), nothing is scheduled."""
        has_target = self.request.notify_url is not None or (self.progress is None or self.progress.notify_targets)
        if not events or not has_target:
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
                WriteReportRequest(
                    report=report, results=self.request.results,
                    unused_evidence=self.progress.unused_evidence if self.progress else [],
                ),
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
            await self._tell_channel_end(self._report(error=message))
            raise ApplicationError(message, self._report(error=message), type=ANALYSIS_FAILED, non_retryable=True) from err
        return report.model_copy(update={"results_uri": uri})

    def _publish(self, report: StreamReport | None = None) -> None:
        """What the Temporal UI shows of the stream now: its current details (markdown), and
        its search attributes when they are registered. Upserts only when a value changed."""
        workflow.set_current_details(self._details_markdown(report))
        if not self.request.search_attributes:
            return
        p = self.progress
        defects = report.defects if report is not None else (p.defects if p else [])
        open_count = 0 if report is not None or p is None else len(p.open_events)
        kinds = sorted({d.kind for d in defects} | ({e.defect.kind for e in p.open_events} if p and report is None else set()))
        values = (self.state, open_count, len(defects), tuple(kinds))
        if values == self.published_attributes:
            return
        self.published_attributes = values
        workflow.upsert_search_attributes(
            [
                SA_STATE.value_set(self.state),
                SA_OPEN_DEFECTS.value_set(open_count),
                SA_DEFECTS.value_set(len(defects)),
                SA_DEFECT_KINDS.value_set(kinds),
            ]
        )

    def _details_markdown(self, report: StreamReport | None) -> str:
        """Position, lag, and a table of the open and most recent defects (the UI renders markdown)."""
        p = self.progress
        paragraphs = [f"**{self.state}** · {self.request.source}"]
        if p is not None:
            total = self._windows_total(p.media)
            where = f"{self._position():.1f} s" + ("" if p.media.live else f" of {p.media.duration_s:.1f} s")
            windows = f"{p.windows_done}/{total}" if total is not None else f"{p.windows_done}"
            paragraphs.append(f"position {where} · windows {windows} · run {p.runs}")
            if (lag := self._lag_s()) is not None:
                paragraphs.append(f"live edge {p.live_edge_s:.1f} s · lag {lag:.1f} s")
        if report is not None and report.error:
            paragraphs.append(f"error: {report.error}")
        rows: list[tuple[str, Defect]] = []
        if report is None and p is not None:
            rows += [("open", e.defect) for e in p.open_events]
            recent = sorted(p.defects, key=lambda d: d.end_s)[-_RECENT_DEFECTS_SHOWN:]
            rows += [("closed", d) for d in reversed(recent)]
            count, open_count = len(p.defects) + len(p.open_events), len(p.open_events)
        else:
            defects = report.defects if report is not None else []
            rows += [("closed", d) for d in defects[:_RECENT_DEFECTS_SHOWN]]
            count, open_count = len(defects), 0
        paragraphs.append(f"{count} defect(s)" + (f", {open_count} open" if open_count else ""))
        if rows:
            table = ["| defect | track | start s | end s | duration s | value | |", "|---|---|---|---|---|---|---|"]
            for phase, d in rows:
                value = "" if d.value is None else f"{d.value:.4g}"
                end = "…" if phase == "open" else f"{d.end_s:.2f}"
                table.append(f"| {d.kind} | {d.track} | {d.start_s:.2f} | {end} | {d.duration_s:.2f} | {value} | {phase} |")
            paragraphs.append("\n".join(table))
            if count > len(rows):
                paragraphs.append(f"{count - len(rows)} more in the report")
        return "\n\n".join(paragraphs)

    def _windows_total(self, media: MediaInfo) -> int | None:
        """Windows in a file or VOD playlist; None for a live stream (it ends when its playlist does)."""
        if media.live:
            return None
        return windows_total(media.duration_s, self.request.window_seconds, sliver_s=self.sliver_s)

    def _position(self) -> float:
        p = self.progress
        return round(p.position_s, 6) if p is not None else 0.0

    def _lag_s(self) -> float | None:
        """How far the analysis is behind a live stream's edge; None for a file or a VOD playlist
        (whose "edge" is its end: the distance to it is what is left, not a lag)."""
        p = self.progress
        if p is None or not p.media.live or p.live_edge_s is None:
            return None
        return round(max(0.0, p.live_edge_s - p.position_s), 3)

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
            analysed_s=self._position() if p else None,
            defects=defects,
            loudness_integrated_lufs=gating.integrated_lufs(p.gating.counts, first_bin=p.gating.first_bin) if p else None,
            runs=p.runs if p else 1,
            live_edge_s=p.live_edge_s if p and p.media.live else None,
            max_lag_s=p.max_lag_s if p and p.media.live else None,
        )


def initial_search_attributes(request: StreamRequest, *, with_source: bool = True) -> TypedSearchAttributes:
    """The search attributes a stream starts with (the starter sets them at start).

    Search attributes are indexed by the server in clear: with payload encryption
    on, the source is left out (`with_source=False`).
    """
    pairs: list[SearchAttributePair] = [SearchAttributePair(SA_STATE, "probing")]
    if with_source:
        pairs.append(SearchAttributePair(SA_SOURCE, request.source[:1000]))
    pairs += [
        SearchAttributePair(SA_OPEN_DEFECTS, 0),
        SearchAttributePair(SA_DEFECTS, 0),
        SearchAttributePair(SA_DEFECT_KINDS, []),
    ]
    return TypedSearchAttributes(pairs)
