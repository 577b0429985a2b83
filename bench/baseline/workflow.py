"""PerSecondWorkflow: the per-second, per-detector orchestration of the original design.

Deterministic: no numpy, no av, no I/O. Per second of stream it runs the
media-conversion activity, then one activity per detector in parallel (Step
Functions' Map state), collects their events, and carries each detector's state
to the next second, exactly as the Map state's output fed the next iteration.
Events are stitched into defects with the product's own `vqa.stitch`.
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from bench.baseline.contracts import (
        CONVERT_SECOND,
        DETECT_SECOND,
        ConvertRequest,
        DetectRequest,
        DetectResult,
        PerSecondRequest,
        SecondObjects,
    )
    from vqa.contracts import (
        PROBE_SOURCE,
        WRITE_REPORT,
        MediaInfo,
        ProbeRequest,
        StreamProgress,
        StreamReport,
        WindowMetrics,
        WindowResult,
        WriteReportRequest,
    )
    from vqa.stitch import apply_window, report_defects

# The same retry policy as the product's windows: only the shape of the orchestration differs.
_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
    non_retryable_error_types=["UnreadableSource", "InvalidRequest"],
)
_TIMEOUT = timedelta(seconds=120)
# Which stored objects a detector reads, by the track it analyses.
_READS = {"video": ("video",), "audio": ("audio",), "av": ("video", "audio")}


@workflow.defn
class PerSecondWorkflow:
    @workflow.run
    async def run(self, request: PerSecondRequest) -> StreamReport:
        progress = request.resume
        if progress is None:
            media = await workflow.execute_activity(
                PROBE_SOURCE,
                ProbeRequest(source=request.source),
                result_type=MediaInfo,
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
            progress = StreamProgress(media=media)
        total = None if progress.media.live else max(1, math.ceil(progress.media.duration_s - 1e-9))
        started_at = progress.next_index
        while not progress.ended and (total is None or progress.next_index < total):
            if progress.next_index - started_at >= request.seconds_per_run:
                progress.runs += 1
                workflow.continue_as_new(request.model_copy(update={"resume": progress}))
            apply_window(progress, await self._second(request, progress, total))
        media = progress.media
        if media.live:
            media = media.model_copy(update={"duration_s": progress.position_s, "live": False})
        report = StreamReport(
            stream_id=request.stream_id,
            source=request.source,
            status="completed",
            media=media,
            window_seconds=1.0,
            windows=progress.windows_done,
            defects=report_defects(progress, position_s=progress.position_s),
        )
        uri = await workflow.execute_activity(
            WRITE_REPORT,
            WriteReportRequest(report=report, results=request.results),
            result_type=str,
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
            summary="report",
        )
        return report.model_copy(update={"results_uri": uri})

    async def _second(self, request: PerSecondRequest, p: StreamProgress, total: int | None) -> WindowResult:
        index = p.next_index
        end = float(index + 1) if total is None else min(float(index + 1), p.media.duration_s)
        live = p.media.live
        second = await workflow.execute_activity(
            CONVERT_SECOND,
            ConvertRequest(
                stream_id=request.stream_id,
                source=request.source,
                media=p.media,
                index=index,
                start_s=float(index),
                end_s=round(end, 6),
                is_last=total is not None and index == total - 1,
                frames=request.frames,
            ),
            result_type=SecondObjects,
            start_to_close_timeout=_TIMEOUT,
            # A live second waits for its media inside the activity; a file's never waits.
            heartbeat_timeout=timedelta(seconds=request.live_heartbeat_timeout_s) if live else None,
            retry_policy=_RETRY,
            summary=f"convert second {index}",
        )
        # The Map state: every detector on this second at once, each with its own state.
        results = await asyncio.gather(
            *(
                workflow.execute_activity(
                    DETECT_SECOND,
                    DetectRequest(
                        detector=name,
                        options=request.options.get(name, {}),
                        state=p.states.get(name),
                        start_s=second.start_s,
                        end_s=second.end_s,
                        is_last=second.is_last,
                        objects={t: uri for t, uri in second.objects.items() if t in _READS[track]},
                    ),
                    result_type=DetectResult,
                    start_to_close_timeout=_TIMEOUT,
                    retry_policy=_RETRY,
                    summary=f"{name} second {index}",
                )
                for name, track in request.detectors.items()
            )
        )
        measures: dict[str, float] = {}
        for r in results:
            measures.update(r.measures)
        events = sorted((e for r in results for e in r.events), key=lambda e: (e.defect.start_s, e.defect.kind))
        return WindowResult(
            index=index,
            start_s=second.start_s,
            end_s=second.end_s,
            is_last=second.is_last,
            live_edge_s=second.live_edge_s,
            events=events,
            metrics=WindowMetrics(video_frames=second.video_frames, audio_samples=second.audio_samples, measures=measures),
            states={r.detector: r.state for r in results},
        )
