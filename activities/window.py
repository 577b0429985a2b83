"""Probe a source, analyse one window of it (the work behind the activities in service.py).

Each window is decoded once, in memory, and every enabled detector sees the
same frames and samples. The result is a few KiB of events and numbers.
Failures become Temporal errors here: bad input is non-retryable, an
unreachable source is retried by the activity's retry policy.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

import detectors
from detectors import AudioChunk, VideoChunk, WindowContext, WindowSpan
from detectors.base import DecodeErrorChunk
from vqa.contracts import (
    DefectEvent, MediaInfo, ProbeRequest, WindowMetrics, WindowRequest, WindowResult, event_id,
)
from vqa.settings import Settings

from .evidence import EvidenceRecorder, attach_evidence
from .decode import DecodeReport, SourceUnavailableError, UnreadableSourceError, decode_window, probe
from .notify import has_notify_targets
from .policy import SourceRefusedError
from .results import resolve as results_location
from .results import store_window

UNREADABLE = "UnreadableSource"
REFUSED = "SourceRefused"  # the worker's allow-list (activities/policy.py) forbids an address
INVALID_REQUEST = "InvalidRequest"


def _application_error(exc: Exception) -> ApplicationError:
    if isinstance(exc, SourceRefusedError):
        return ApplicationError(str(exc), type=REFUSED, non_retryable=True)
    if isinstance(exc, UnreadableSourceError):
        return ApplicationError(str(exc), type=UNREADABLE, non_retryable=True)
    return ApplicationError(str(exc), type="SourceUnavailable")


def probe_source(request: ProbeRequest, *, settings: Settings | None = None) -> MediaInfo:
    """Open the source and describe its tracks; fails non-retryably on bad input."""
    try:
        return probe(request.source, settings=settings)
    except (UnreadableSourceError, SourceUnavailableError) as exc:
        raise _application_error(exc) from exc


def check_group(request: WindowRequest, names: list[str]) -> None:
    """Refuse a window asking for detectors outside the group this worker serves."""
    try:
        asked = [n for n in detectors.resolve(request.detectors) if n not in request.exclude_detectors]
    except ValueError as exc:
        raise ApplicationError(str(exc), type=INVALID_REQUEST, non_retryable=True) from exc
    outside = [n for n in asked if n not in names]
    if outside:
        raise ApplicationError(
            f"this worker serves only the detectors {', '.join(names)} on its task queue; "
            f"window {request.index} asks for {', '.join(outside)}",
            type=INVALID_REQUEST,
            non_retryable=True,
        )


def analyze_window(request: WindowRequest, *, settings: Settings | None = None) -> WindowResult:
    """Decode one window and run every enabled detector over it.

    Direct calls outside an activity (offline analysis, tests) write results and
    evidence only where the request names a location.
    """
    settings = settings or Settings()
    context = WindowContext(
        span=WindowSpan(start_s=request.start_s, end_s=request.end_s, is_last=request.is_last),
        self_contained=request.self_contained,
    )
    active = _detectors_for(request, context)
    location = results_location(request.results, settings) if request.results is not None or activity.in_activity() else None
    recorder = EvidenceRecorder(start_s=request.start_s, end_s=request.end_s) if location else None
    try:
        warm_up = max((d.audio_warm_up_s for _, d in active), default=0.0) if request.self_contained else 0.0
        chunks, report = decode_window(
            request.source, request.media, start_s=request.start_s, end_s=request.end_s, is_last=request.is_last,
            audio_warm_up_s=warm_up, heartbeat=_Heartbeat(), settings=settings,
        )
        _feed(chunks, report, active, context, recorder)
    except (UnreadableSourceError, SourceUnavailableError) as exc:
        raise _application_error(exc) from exc
    # The window as decoded: from its first keyframe to the next window's (a live playlist that
    # ended inside it makes it the stream's last).
    context.span = WindowSpan(
        start_s=report.start_s if report.start_s is not None else request.start_s,
        end_s=report.span_end_s if report.span_end_s is not None else request.end_s,
        is_last=request.is_last or report.stream_ended,
    )
    result = _result(request, context.span, report, active, notify_targets=has_notify_targets(settings))
    if recorder and location and (result.events or result.edges):
        attach_evidence(result.events + _first_seen_here(result), recorder, location=location,
                        stream_id=request.stream_id, already_reported=set(request.open_event_ids), settings=settings)
    store_window(request, result, settings=settings)  # the window's one write to the results location
    _record_metrics(request, result)
    return result


# In a detector's carried state, the states of its runs over the source's other audio tracks, by track.
_OTHER_TRACKS = "audio_tracks"


def _detectors_for(request: WindowRequest, context: WindowContext) -> list[tuple[str, detectors.Detector]]:
    """The enabled detectors that have a track to look at, each with its options and carried state;
    an audio detector once per audio track (its state for the others nested in the first's)."""
    try:
        options = detectors.parse_options(request.options)
        names = detectors.resolve(request.detectors)
        detectors.resolve(request.exclude_detectors)  # unknown names are an error here too
        names = [n for n in names if n not in request.exclude_detectors]
    except ValueError as exc:
        raise ApplicationError(str(exc), type=INVALID_REQUEST, non_retryable=True) from exc
    media = request.media
    present = {"video": media.video is not None, "audio": media.audio is not None}
    present["av"] = present["video"] or present["audio"]
    others = [f"audio:{info.index}" for info in media.audio_tracks] if media.audio is not None else []
    active: list[tuple[str, detectors.Detector]] = []
    for name in names:
        cls = detectors.REGISTRY[name]
        if not present[cls.track] or (cls.needs_both_tracks and not (present["video"] and present["audio"])):
            continue  # a video detector on an audio-only stream has nothing to look at
        state = dict(request.states.get(name) or {})
        nested = state.pop(_OTHER_TRACKS, None) or {}
        for track in ["audio", *others] if cls.track == "audio" else ["audio"]:
            active.append((name, cls(
                options=options.get(name) or cls.Options(), state=state if track == "audio" else nested.get(track),
                context=context, audio_track=track,
            )))
    return active


def _feed(
    chunks: Iterable[VideoChunk | AudioChunk | DecodeErrorChunk], report: DecodeReport,
    active: list[tuple[str, detectors.Detector]], context: WindowContext, recorder: EvidenceRecorder | None,
) -> None:
    """Every chunk to the detectors of its track (and small copies to the evidence recorder)."""
    video_detectors = [d for _, d in active if d.track in ("video", "av")]
    audio_detectors: dict[str, list[detectors.Detector]] = {}
    for _, d in active:  # an "av" detector compares the picture with the first audio track
        if d.track in ("audio", "av"):
            audio_detectors.setdefault(d.audio_track, []).append(d)
    for chunk in chunks:
        if isinstance(chunk, VideoChunk):
            for detector in video_detectors:
                detector.feed_video(chunk)
            if recorder:
                recorder.add_video(chunk)
        elif isinstance(chunk, AudioChunk) and chunk.warm_up:
            for detector in audio_detectors.get(chunk.track, []):
                if detector.audio_warm_up_s > 0:
                    detector.feed_audio(chunk)
        elif isinstance(chunk, AudioChunk):
            if recorder:
                recorder.add_audio(chunk)
            for detector in audio_detectors.get(chunk.track, []):
                detector.feed_audio(chunk)
        else:
            for _, detector in active:
                detector.feed_decode_errors(chunk)


def _result(
    request: WindowRequest, span: WindowSpan, report: DecodeReport, active: list[tuple[str, detectors.Detector]],
    *, notify_targets: bool,
) -> WindowResult:
    result = WindowResult(
        index=request.index, start_s=span.start_s, end_s=span.end_s, is_last=span.is_last,
        live_edge_s=report.live_edge_s, notify_targets=notify_targets,
    )
    result.metrics = WindowMetrics(
        video_frames=report.video_frames, video_frames_dropped=report.video_frames_dropped,
        audio_samples=report.audio_samples,
    )
    languages = _languages(request.media)
    for name, detector in active:
        output = detector.finish()
        track = detector.audio_track
        if detector.track == "audio" and languages.get(track):
            for defect in [*(e.defect for e in output.events), *(e.defect for e in output.edges)]:
                defect.details["language"] = languages[track]
        result.events.extend(output.events)
        result.edges.extend(output.edges)
        prefix = "" if track == "audio" else f"{track}."
        result.metrics.measures.update({f"{prefix}{k}": round(v, 6) for k, v in output.measures.items()})
        if track == "audio":  # the stream's integrated loudness is its first audio track's
            result.gating = output.gating or result.gating
            result.detectors.append(name)
        if not request.self_contained and track == "audio":
            result.states[name] = output.state
        elif not request.self_contained:
            result.states[name].setdefault(_OTHER_TRACKS, {})[track] = output.state
    result.events.sort(key=lambda e: (e.defect.start_s, e.defect.kind))
    return result


def _languages(media: MediaInfo) -> dict[str, str | None]:
    """Each audio track's language tag, by its track name on defects."""
    tracks = [("audio", media.audio)] + [(f"audio:{info.index}", info) for info in media.audio_tracks]
    return {track: info.language for track, info in tracks if info is not None}


# A run that begins in a self-contained window less than this before its end (shorter than a
# frame: the sound's zero crossings) gets no evidence, nor does an event it would start.
_EVIDENCE_MIN_S = 0.02


def _first_seen_here(result: WindowResult) -> list[DefectEvent]:
    """The runs at a self-contained window's end that begin in it: their start, event id and
    evidence are this window's (the stitch keeps their details; the evidence of one that turns
    out too short to be a defect is removed with the report, `StreamProgress.unused_evidence`)."""
    return [
        DefectEvent(id=event_id(e.defect.kind, e.defect.track, e.defect.start_s), phase="opened", defect=e.defect)
        for e in result.edges
        if not e.at_start and not e.discard
        and e.defect.end_s - e.defect.start_s >= min(e.min_duration_s, _EVIDENCE_MIN_S) - 1e-9
    ]


class _Heartbeat:
    """A heartbeat that reaches the server is a billable action. A window over a file is done in
    about a second, long before its heartbeat timeout: it need not heartbeat at all. Windows
    that take longer (a live window waiting for media, a slow source) start heartbeating after
    a quarter of the timeout; the SDK then sends at most one per 0.8 timeout."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.quiet_s = _quiet_period_s()

    def __call__(self, position_s: float) -> None:
        if not activity.in_activity() or time.monotonic() - self.started < self.quiet_s:
            return
        activity.heartbeat(round(position_s, 3))
        if activity.is_cancelled():  # e.g. a live stream stopped while its window waited
            raise CancelledError("window cancelled")


def _quiet_period_s() -> float:
    """How long a window runs before its first heartbeat: a quarter of its heartbeat timeout."""
    if not activity.in_activity():
        return 0.0
    timeout = activity.info().heartbeat_timeout
    return timeout.total_seconds() / 4 if timeout else 0.0


def _record_metrics(request: WindowRequest, result: WindowResult) -> None:
    """Our Prometheus metrics, through the SDK's meter: served with its own when the worker has a metrics port.

    Times are integer milliseconds (SDK counters are integers); media ms over wall ms is the real-time factor.
    """
    if not activity.in_activity():
        return  # analysed offline (tests, bench): nothing to report to
    meter = activity.metric_meter()
    meter.create_counter("vqa_windows_analysed", "windows analysed").add(1)
    meter.create_counter("vqa_media_analysed_ms", "media analysed, ms of the stream's timeline", "ms").add(
        max(0, round((result.end_s - result.start_s) * 1000))
    )
    elapsed = datetime.now(timezone.utc) - activity.info().started_time
    meter.create_counter("vqa_analysis_wall_ms", "wall-clock time spent analysing windows", "ms").add(
        max(0, round(elapsed.total_seconds() * 1000))
    )
    if result.live_edge_s is not None and request.media.live:  # a VOD playlist's "edge" is its end
        meter.create_gauge_float("vqa_live_lag_seconds", "how far analysis is behind a live stream's edge", "s").set(
            max(0.0, result.live_edge_s - result.end_s), {"stream_id": request.stream_id}
        )
