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

import os
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from temporalio import activity
from temporalio.exceptions import ApplicationError

from vqa.contracts import StreamReport, WindowRequest, WindowResult, WriteReportRequest

from .errors import SourceUnavailableError, UnreadableSourceError

RESULTS_UNWRITABLE = "ResultsUnwritable"
RESULTS_UNAVAILABLE = "ResultsUnavailable"
DISABLED = "none"


def default_location() -> str:
    """The worker's results location: VQA_RESULTS, else $VQA_HOME/results."""
    configured = os.environ.get("VQA_RESULTS", "").strip()
    if configured:
        return configured
    return str(Path(os.environ.get("VQA_HOME", str(Path.home() / ".vqa"))) / "results")


def resolve(results: str | None) -> str | None:
    """The location in force for a stream (None: the sink is off)."""
    location = (results or default_location()).strip()
    if location.lower() == DISABLED:
        return None
    if "://" not in location:
        return os.path.abspath(os.path.expanduser(location))
    return location.rstrip("/")


def window_uri(location: str, stream_id: str, index: int, group: str | None = None) -> str:
    """A window's document; a detector group on its own task queue writes its own, `NNNNNN-<queue>.json`."""
    name = f"{index:06d}.json" if group is None else f"{index:06d}-{_safe_name(group)}.json"
    return _join(location, stream_id, "windows", name)


def _safe_name(group: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in group)


def report_uri(location: str, stream_id: str) -> str:
    return _join(location, stream_id, "report.json")


def report_html_uri(location: str, stream_id: str) -> str:
    return _join(location, stream_id, "report.html")


def windows_dir(location: str, stream_id: str) -> str:
    return _join(location, stream_id, "windows")


def evidence_uri(location: str, stream_id: str, name: str) -> str:
    return _join(location, stream_id, "evidence", name)


def _join(location: str, *parts: str) -> str:
    if "://" in location:
        return "/".join((location.rstrip("/"), *parts))
    return os.path.join(location, *parts)


def write_document(uri: str, body: bytes, *, content_type: str = "application/json") -> None:
    """Write (or replace) one document; raises the source errors, permanent or transient."""
    if uri.lower().startswith("s3://"):
        from .s3 import put_object

        put_object(uri, body, content_type=content_type)
        return
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise UnreadableSourceError(f"unsupported results location {uri} (a directory or s3://bucket/prefix)")
    path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
    from .policy import current

    default = default_location()
    current().check_results_path(str(path), default_location=default if "://" not in default else None)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside, then renamed over: a reader never sees half a document.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(body)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
        raise UnreadableSourceError(f"cannot write results to {path}: {exc.strerror or exc}") from exc
    except OSError as exc:
        raise SourceUnavailableError(f"cannot write results to {path}: {exc.strerror or exc}") from exc


def _application_error(exc: Exception) -> ApplicationError:
    if isinstance(exc, UnreadableSourceError):
        return ApplicationError(f"results not written: {exc}", type=RESULTS_UNWRITABLE, non_retryable=True)
    return ApplicationError(f"results not written: {exc}", type=RESULTS_UNAVAILABLE)


def store_window(request: WindowRequest, result: WindowResult) -> None:
    """The window's one write. Direct calls outside an activity (offline analysis)
    write only where the request names a location."""
    if request.results is None and not activity.in_activity():
        return
    location = resolve(request.results)
    if location is None:
        return
    try:
        write_document(
            window_uri(location, request.stream_id, request.index, request.group), result.model_dump_json().encode()
        )
    except (UnreadableSourceError, SourceUnavailableError) as exc:
        raise _application_error(exc) from exc


def store_evidence(uri: str, body: bytes, *, content_type: str) -> None:
    """One defect's evidence (a small JPEG or WAV), beside the stream's results."""
    try:
        write_document(uri, body, content_type=content_type)
    except (UnreadableSourceError, SourceUnavailableError) as exc:
        raise _application_error(exc) from exc


@activity.defn
def write_report(request: WriteReportRequest) -> str | None:
    """Store the stream's report, and its HTML page beside it; returns the report's URI
    (None when the sink is off). The page is drawn from what the windows wrote there."""
    from .report_html import build_report_html

    location = resolve(request.results)
    if location is None:
        return None
    uri = report_uri(location, request.report.stream_id)
    html_uri = report_html_uri(location, request.report.stream_id)
    report: StreamReport = request.report.model_copy(update={"results_uri": uri, "report_html_uri": html_uri})
    try:
        write_document(uri, report.model_dump_json(indent=2).encode())
        page = build_report_html(location, report)
        write_document(html_uri, page.encode(), content_type="text/html; charset=utf-8")
    except (UnreadableSourceError, SourceUnavailableError) as exc:
        raise _application_error(exc) from exc
    return uri
