"""The results sink: each window's result and the stream's report, as JSON documents.

The location is a local directory or `s3://bucket/prefix`: the stream's own
(`StreamRequest.results`), else the worker's `VQA_RESULTS`, else
`$VQA_HOME/results`; `none` turns the sink off. Keys are deterministic,

    <location>/<stream_id>/windows/<index:06d>.json   (<index:06d>-<queue>.json per detector group)
    <location>/<stream_id>/report.json
    <location>/<stream_id>/report.html   (the same report as a page: timeline, defects, evidence)

so a retried window replaces its document instead of adding one. A window
costs exactly one write, made by its own activity; media is never written.
"""

from __future__ import annotations

import re

from temporalio import activity
from temporalio.exceptions import ApplicationError

from vqa.contracts import StreamReport, WindowRequest, WindowResult, WriteReportRequest
from vqa.settings import Settings

from . import store
from .errors import SourceUnavailableError, UnreadableSourceError
from .report_html import build_report_html

RESULTS_UNWRITABLE = "ResultsUnwritable"
RESULTS_UNAVAILABLE = "ResultsUnavailable"
DISABLED = "none"


def resolve(results: str | None, settings: Settings | None = None) -> str | None:
    """The location in force for a stream (None: the sink is off): its own, else the worker's
    (`settings.default_results()`; default settings: `Settings()`, the environment now)."""
    if not results:
        results = (settings if settings is not None else Settings()).default_results()
    location = results.strip()
    if location.lower() == DISABLED:
        return None
    return store.normalise(location)


def window_uri(location: str, stream_id: str, index: int, group: str | None = None) -> str:
    """A window's document; a detector group on its own task queue writes its own, `NNNNNN-<queue>.json`."""
    name = f"{index:06d}.json" if group is None else f"{index:06d}-{_safe_name(group)}.json"
    return store.join(location, stream_id, "windows", name)


def _safe_name(group: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in group)


def report_uri(location: str, stream_id: str) -> str:
    return store.join(location, stream_id, "report.json")


def report_html_uri(location: str, stream_id: str) -> str:
    return store.join(location, stream_id, "report.html")


def windows_dir(location: str, stream_id: str) -> str:
    return store.join(location, stream_id, "windows")


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def evidence_name(event_id: str, track: str) -> str:
    """The object name of an event's evidence: `black:video:3000` -> `black_video_3000.jpg`."""
    return _UNSAFE.sub("_", event_id) + (".jpg" if track == "video" else ".wav")


def evidence_uri(location: str, stream_id: str, name: str) -> str:
    return store.join(location, stream_id, "evidence", name)


def _application_error(exc: Exception) -> ApplicationError:
    if isinstance(exc, UnreadableSourceError):
        return ApplicationError(f"results not written: {exc}", type=RESULTS_UNWRITABLE, non_retryable=True)
    return ApplicationError(f"results not written: {exc}", type=RESULTS_UNAVAILABLE)


def _write(uri: str, body: bytes, settings: Settings, *, content_type: str = "application/json") -> None:
    """One document written, its failure as the activity's error (permanent or retryable)."""
    try:
        store.store_for(uri, settings).write(uri, body, content_type=content_type)
    except (UnreadableSourceError, SourceUnavailableError) as exc:
        raise _application_error(exc) from exc


def store_window(request: WindowRequest, result: WindowResult, *, settings: Settings | None = None) -> None:
    """The window's one write. Direct calls outside an activity (offline analysis)
    write only where the request names a location."""
    if request.results is None and not activity.in_activity():
        return
    settings = settings if settings is not None else Settings()
    location = resolve(request.results, settings)
    if location is None:
        return
    uri = window_uri(location, request.stream_id, request.index, request.group)
    _write(uri, result.model_dump_json().encode(), settings)


def _remove_unused_evidence(location: str, stream_id: str, event_ids: list[str], settings: Settings) -> None:
    """Evidence of runs that began in a window analysed on its own and were too short to be a
    defect once stitched: nothing links it, so it goes."""
    for event_id in dict.fromkeys(event_ids):
        track = event_id.split(":")[1] if event_id.count(":") >= 2 else "video"
        uri = evidence_uri(location, stream_id, evidence_name(event_id, track))
        try:
            store.store_for(uri, settings).delete(uri)
        except (UnreadableSourceError, SourceUnavailableError) as exc:
            raise _application_error(exc) from exc


def store_evidence(uri: str, body: bytes, *, content_type: str, settings: Settings | None = None) -> None:
    """One defect's evidence (a small JPEG or WAV), beside the stream's results."""
    _write(uri, body, settings if settings is not None else Settings(), content_type=content_type)


def write_report(request: WriteReportRequest, *, settings: Settings | None = None) -> str | None:
    """Store the stream's report, and its HTML page beside it; returns the report's URI
    (None when the sink is off). The page is drawn from what the windows wrote there."""
    settings = settings if settings is not None else Settings()
    location = resolve(request.results, settings)
    if location is None:
        return None
    stream_id = request.report.stream_id
    uri, html_uri = report_uri(location, stream_id), report_html_uri(location, stream_id)
    report: StreamReport = request.report.model_copy(update={"results_uri": uri, "report_html_uri": html_uri})
    _remove_unused_evidence(location, stream_id, request.unused_evidence, settings)
    _write(uri, report.model_dump_json(indent=2).encode(), settings)
    try:
        page = build_report_html(report, windows=windows_dir(location, stream_id), settings=settings)
    except (UnreadableSourceError, SourceUnavailableError) as exc:
        raise _application_error(exc) from exc
    _write(html_uri, page.encode(), settings, content_type="text/html; charset=utf-8")
    return uri
