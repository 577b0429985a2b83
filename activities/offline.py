"""Analyse a whole file in this process, window by window, without Temporal.

The same windows, carried state and stitching as the workflow, for benchmarks
and tests that measure the analysis itself rather than the orchestration.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vqa.contracts import Defect, MediaInfo, StreamProgress, WindowRequest
from vqa.stitch import apply_window, report_defects

from .media import probe
from .window import analyze_window


def analyse_file(
    path: Path | str,
    *,
    window_s: float = 10.0,
    detectors: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    media: MediaInfo | None = None,
) -> list[Defect]:
    source = str(path)
    media = media or probe(source)
    total = max(1, math.ceil(media.duration_s / window_s - 1e-9))
    progress = StreamProgress(media=media)
    for index in range(total):
        result = analyze_window(
            WindowRequest(
                stream_id="offline",
                source=source,
                index=index,
                start_s=round(index * window_s, 6),
                end_s=round(min((index + 1) * window_s, media.duration_s), 6),
                is_last=index == total - 1,
                media=media,
                detectors=detectors or [],
                options=options or {},
                states=progress.states,
                open_event_ids=[e.id for e in progress.open_events],
            )
        )
        apply_window(progress, result)
    return report_defects(progress, position_s=media.duration_s)
