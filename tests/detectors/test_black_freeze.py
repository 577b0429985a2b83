"""A black stretch is never also a freeze, whatever black's options say: freeze judges black
frames by the black detector's options in force (parse_options), not by a copy of its defaults."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors import REGISTRY, VideoChunk, WindowContext, WindowSpan, parse_options
from vqa.contracts import DefectEvent

FPS = 25
STILL = (3.0, 7.0)  # the still stretch, black only by the changed black options


def _moving(t: float, h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.clip(128 + 60 * np.sin((x + 40 * t) / 5.0) * np.cos((y - 20 * t) / 7.0), 16, 235).astype(np.uint8)


def _dark_grey() -> np.ndarray:
    """Level 45: above black's default level (16 + 0.10 x 219 = 37), under 16 + 0.20 x 219."""
    return np.full((48, 64), 45, np.uint8)


def _mostly_black() -> np.ndarray:
    """95% of the pixels at 16, a bright corner: black for picture_ratio 0.9, not for 0.98."""
    frame = np.full((48, 64), 16, np.uint8)
    frame[:, :3] = 200
    frame[:12, 3:6] = 200
    return frame


def _run(still: np.ndarray, options: dict[str, dict[str, Any]], duration_s: float = 10.0) -> dict[str, list[DefectEvent]]:
    """Black and freeze over the clip, fed together window by window as the activity does."""
    times = np.arange(round(duration_s * FPS)) / FPS
    luma = np.stack([still if STILL[0] <= t < STILL[1] else _moving(t) for t in times])
    keys = np.zeros(len(times), dtype=bool)
    parsed = parse_options(options)
    states: dict[str, dict[str, Any]] = {"black": {}, "freeze": {}}
    events: dict[str, list[DefectEvent]] = {"black": [], "freeze": []}
    previous, start = None, 0.0
    while start < duration_s - 1e-9:
        end = min(start + 1.5, duration_s)
        sel = np.flatnonzero((times >= start - 1e-9) & (times < end - 1e-9))
        ctx = WindowContext(span=WindowSpan(start_s=start, end_s=end, is_last=end >= duration_s - 1e-9))
        if previous is not None:
            ctx.previous_luma, ctx.previous_time_s = luma[previous], float(times[previous])
        detectors = {  # as activities/window.py builds them
            name: REGISTRY[name](options=parsed.get(name) or REGISTRY[name].Options(), state=states[name], context=ctx)
            for name in states
        }
        for c in range(0, len(sel), 7):
            idx = sel[c : c + 7]
            chunk = VideoChunk(times=times[idx], luma=luma[idx], keyframe=keys[idx])
            for detector in detectors.values():
                detector.feed_video(chunk)
        for name, detector in detectors.items():
            out = detector.finish()
            events[name] += out.events
            states[name] = out.state
        previous, start = sel[-1], end
    return events


def _closed(events: list[DefectEvent]) -> list[tuple[float, float]]:
    return [(e.defect.start_s, e.defect.end_s) for e in events if e.phase == "closed"]


@pytest.mark.parametrize(
    ("still", "black_options"),
    [(_dark_grey(), {"pixel_threshold": 0.2}), (_mostly_black(), {"picture_ratio": 0.9})],
    ids=["pixel_threshold", "picture_ratio"],
)
def test_a_black_stretch_by_changed_black_options_is_never_a_freeze(still: np.ndarray, black_options: dict) -> None:
    # With black's defaults the still stretch is not black: it is a freeze (the case has teeth).
    default = _run(still, {})
    assert _closed(default["black"]) == []
    assert _closed(default["freeze"]) == [STILL]
    # With black's options changed it is black, and so never a freeze, with or without freeze options.
    for options in ({"black": black_options}, {"black": black_options, "freeze": {"min_duration_s": 1.0}}):
        changed = _run(still, options)
        assert _closed(changed["black"]) == [STILL]
        assert changed["freeze"] == []


def test_freeze_has_no_copy_of_blacks_thresholds() -> None:
    parsed = parse_options({"black": {"pixel_threshold": 0.3, "picture_ratio": 0.9}, "freeze": {"noise_db": -50}})
    freeze = parsed["freeze"]
    assert freeze.black is parsed["black"]  # type: ignore[attr-defined]
    assert (freeze.black_pixel_threshold, freeze.black_picture_ratio) == (0.3, 0.9)  # type: ignore[attr-defined]
    assert parse_options({"black": {"pixel_threshold": 0.3}})["freeze"].black_pixel_threshold == 0.3  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="freeze"):
        parse_options({"freeze": {"black_pixel_threshold": 0.2}})
