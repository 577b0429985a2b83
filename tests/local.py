"""Analyse a file window by window in this process, as the workflow would (no Temporal)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from activities.media import probe
from activities.window import analyze_window
from vqa.contracts import Defect, StreamProgress, WindowRequest
from vqa.stitch import apply_window, report_defects


def analyse_file(
    path: Path | str,
    *,
    window_s: float = 10.0,
    detectors: list[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
) -> list[Defect]:
    media = probe(str(path))
    total = max(1, math.ceil(media.duration_s / window_s - 1e-9))
    progress = StreamProgress(media=media)
    for index in range(total):
        result = analyze_window(
            WindowRequest(
                stream_id="local",
                source=str(path),
                index=index,
                start_s=index * window_s,
                end_s=min((index + 1) * window_s, media.duration_s),
                is_last=index == total - 1,
                media=media,
                detectors=detectors or [],
                options=options or {},
                states=progress.states,
            )
        )
        apply_window(progress, result)
    return report_defects(progress, position_s=media.duration_s)
