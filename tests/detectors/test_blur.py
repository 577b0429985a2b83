"""Blur on sharp generated content and real footage with a Gaussian blur injected at known times."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from detectors.blur import BlurDetector, BlurOptions, edge_widths
from vqa.synth import ClipSpec, make_clip

from ..media_corrupt import closed_spans, damage, decode_luma, gaussian_blur, in_range, run_detector, sharp_programme
from ..realmedia import fetch

THRESHOLD_PX = BlurOptions().threshold_px
TOLERANCE_S = 0.2
BLACK = 16


@pytest.fixture(scope="module")
def programme() -> tuple[np.ndarray, np.ndarray]:
    return sharp_programme(10.0)


def _events(outputs):  # type: ignore[no-untyped-def]
    return [(e.phase, e.defect.start_s, e.defect.end_s, e.defect.value) for out in outputs for e in out.events]


def _assert_found(spans: list[tuple[float, float]], truth: list[tuple[float, float]]) -> None:
    assert len(spans) == len(truth), f"found {spans}, expected {truth}"
    for (start, end), (true_start, true_end) in zip(spans, truth):
        assert abs(start - true_start) <= TOLERANCE_S and abs(end - true_end) <= TOLERANCE_S, (spans, truth)


def _assert_finite(outputs) -> None:  # type: ignore[no-untyped-def]
    for out in outputs:
        assert all(math.isfinite(v) for v in out.measures.values()), out.measures


def test_edge_width_grows_with_the_blur(programme) -> None:  # type: ignore[no-untyped-def]
    _, luma = programme
    frames = luma[::25]
    widths = [float(np.nanmedian(edge_widths(gaussian_blur(frames, s) if s else frames, BlurOptions())[0])) for s in (0, 1, 2, 3)]
    assert widths == sorted(widths) and widths[0] < 1.5 and widths[2] > THRESHOLD_PX, widths


def test_blurred_range_of_sharp_content_is_found_wherever_windows_fall(programme) -> None:  # type: ignore[no-untyped-def]
    times, luma = programme
    blurred = damage(times, luma, 3.0, 6.5, lambda frames: gaussian_blur(frames, 2.0))
    runs = {w: run_detector(BlurDetector, times, blurred, window_s=w) for w in (1.3, 3.3, 10.0)}
    _assert_found(closed_spans(runs[10.0]), [(3.0, 6.5)])
    closed = [e for e in _events(runs[10.0]) if e[0] == "closed"]
    assert closed[0][3] > THRESHOLD_PX
    for window_s in (1.3, 3.3):
        assert [e for e in _events(runs[window_s]) if e[0] == "closed"] == closed, f"windows of {window_s} s"
    _assert_finite(runs[3.3])


def test_blurred_range_of_real_footage_is_found() -> None:
    """bikes.mp4 opens on a shallow-focus shot (soft background, sharp sign): that part is not blur."""
    times, luma = decode_luma(fetch("bikes.mp4"))
    blurred = damage(times, luma, 5.0, 8.0, lambda frames: gaussian_blur(frames, 2.0))
    _assert_found(closed_spans(run_detector(BlurDetector, times, blurred, window_s=4.0)), [(5.0, 8.0)])


@pytest.mark.parametrize(("name", "max_s"), [("bikes.mp4", None), ("carphone_pristine.mp4", None), ("franck.mp4", 60.0)])
def test_clean_real_footage_is_not_blurred(name: str, max_s: float | None) -> None:
    times, luma = decode_luma(fetch(name), max_s=max_s)
    outputs = run_detector(BlurDetector, times, luma, window_s=10.0)
    assert _events(outputs) == []
    _assert_finite(outputs)
    assert all(out.measures["blur_informative_ratio"] > 0.9 for out in outputs), "real footage has edges to judge"


def test_flat_pictures_carry_no_information() -> None:
    """Black, mid-grey and noisy-black pictures: no verdict, no event, nothing NaN."""
    rng = np.random.default_rng(2)
    flat = np.concatenate(
        [
            np.full((75, 120, 160), BLACK, np.uint8),
            np.full((75, 120, 160), 128, np.uint8),
            np.clip(BLACK + rng.normal(0, 2, (75, 120, 160)), 0, 255).astype(np.uint8),
        ]
    )
    times = np.arange(len(flat)) / 25
    outputs = run_detector(BlurDetector, times, flat, window_s=4.0)
    assert _events(outputs) == []
    _assert_finite(outputs)
    assert [out.measures for out in outputs] == [{"blur_informative_ratio": 0.0}] * len(outputs)


def test_a_short_flat_flash_does_not_split_a_blurred_stretch(programme) -> None:  # type: ignore[no-untyped-def]
    times, luma = programme
    blurred = damage(times, luma, 2.0, 7.0, lambda frames: gaussian_blur(frames, 2.0))
    blurred[in_range(times, 4.0, 4.5)] = BLACK
    _assert_found(closed_spans(run_detector(BlurDetector, times, blurred, window_s=3.3)), [(2.0, 7.0)])


def test_flat_pictures_neither_start_nor_prolong_a_blurred_stretch(programme) -> None:  # type: ignore[no-untyped-def]
    """Black before a blurred stretch does not start it; black after it, long or short, ends it where the black began."""
    times, luma = programme
    blurred = damage(times, luma, 3.0, 5.5, lambda frames: gaussian_blur(frames, 2.0))
    blurred[in_range(times, 1.0, 3.0)] = BLACK
    long_black, short_black = blurred.copy(), blurred.copy()
    long_black[in_range(times, 5.5, 9.0)] = BLACK
    short_black[in_range(times, 5.5, 6.2)] = BLACK  # then sharp pictures again
    for luma_with_black in (long_black, short_black):
        _assert_found(closed_spans(run_detector(BlurDetector, times, luma_with_black, window_s=3.3)), [(3.0, 5.5)])


def test_blurred_stretch_open_at_the_end_ends_with_the_stream(programme) -> None:  # type: ignore[no-untyped-def]
    times, luma = programme
    blurred = damage(times, luma, 6.0, 10.0, lambda frames: gaussian_blur(frames, 2.0))
    outputs = run_detector(BlurDetector, times, blurred, window_s=3.3)
    assert [e[0] for e in _events(outputs)] == ["opened", "closed"], "announced once long enough, closed at the end"
    _assert_found(closed_spans(outputs), [(6.0, 10.0)])


def test_smooth_synthetic_programme_is_not_judged(tmp_path: Path) -> None:
    """vqa.synth's picture is smooth shading with no edges: no information, so no blur event.

    (Judged, it would look blurred from start to end; the project's clean-programme
    checks run every detector on it.)
    """
    path = make_clip(tmp_path / "synth.mp4", ClipSpec(duration_s=6.0, with_audio=False))
    times, luma = decode_luma(path)
    outputs = run_detector(BlurDetector, times, luma, window_s=3.0)
    assert _events(outputs) == []
    assert all(out.measures["blur_informative_ratio"] < 0.2 for out in outputs)
