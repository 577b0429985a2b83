"""How a file or VOD playlist is cut into windows: the one rule the workflow and offline analysis share.

Window i is nominally [i*W, (i+1)*W); the activity moves each edge to the first video keyframe
at or after it, so windows meet on keyframes and every frame is decoded once. A trailing
sliver shorter than a second (or than half a window, for windows under two seconds) belongs
to the window before it, so a file of 300.09 s is 30 windows of 10 s, not a 31st of 0.09 s.
"""

from __future__ import annotations

import math

SLIVER_S = 1.0


def windows_total(duration_s: float, window_s: float, *, sliver_s: float = SLIVER_S) -> int:
    """How many windows a stream of `duration_s` has (`sliver_s` 0: one more for any remainder)."""
    if sliver_s <= 0:
        return max(1, math.ceil(duration_s / window_s - 1e-9))
    sliver = min(sliver_s, window_s / 2)
    return max(1, math.ceil((duration_s - sliver) / window_s + 1e-9))


def nominal_span(index: int, total: int, duration_s: float, window_s: float) -> tuple[float, float]:
    """Window `index`'s nominal [start, end): the last one runs to the stream's end."""
    end = duration_s if index == total - 1 else (index + 1) * window_s
    return round(index * window_s, 6), round(end, 6)
