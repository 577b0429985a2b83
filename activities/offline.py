"""Analyse a whole file in this process, window by window, without Temporal.

The same windows, carried state and stitching as the workflow, for benchmarks
and tests that measure the analysis itself rather than the orchestration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vqa.contracts import Defect, MediaInfo, StreamProgress, WindowRequest
from vqa.stitch import apply_window, report_defects, stitch_window
from vqa.windows import nominal_span, windows_total

from .decode import probe
from .window import analyze_window


def analyse_file(
    path: Path | str,
    *,
    window_s: float = 10.0,
    detectors: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    media: MediaInfo | None = None,
    self_contained: bool = False,
) -> list[Defect]:
    """The file's defects. `self_contained`: each window analysed on its own, then stitched,
    as the workflow does with parallel windows (here one after another, in any order)."""
    progress = analyse(path, window_s=window_s, detectors=detectors, options=options, media=media,
                       self_contained=self_contained)
    return report_defects(progress, position_s=progress.media.duration_s)


def analyse(
    path: Path | str,
    *,
    window_s: float = 10.0,
    detectors: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    media: MediaInfo | None = None,
    self_contained: bool = False,
) -> StreamProgress:
    """The whole analysis of a file: every window applied, as the workflow's progress at its end."""
    source = str(path)
    media = media or probe(source)
    progress = StreamProgress(media=media)
    for window in window_requests(source, media, window_s, detectors=detectors, options=options):
        if self_contained:
            result = stitch_window(progress, analyze_window(window.model_copy(update={"self_contained": True})))
        else:
            result = analyze_window(
                window.model_copy(update={"states": progress.states, "open_event_ids": [e.id for e in progress.open_events]})
            )
        apply_window(progress, result)
    return progress


def window_requests(
    source: str,
    media: MediaInfo,
    window_s: float,
    *,
    stream_id: str = "offline",
    detectors: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    results: str | None = None,
) -> list[WindowRequest]:
    """The windows of a file, as the workflow cuts them, with no carried state yet."""
    total = windows_total(media.duration_s, window_s)
    spans = [nominal_span(index, total, media.duration_s, window_s) for index in range(total)]
    return [
        WindowRequest(
            stream_id=stream_id,
            source=source,
            index=index,
            start_s=start_s,
            end_s=end_s,
            is_last=index == total - 1,
            media=media,
            detectors=detectors or [],
            options=options or {},
            results=results,
        )
        for index, (start_s, end_s) in enumerate(spans)
    ]
