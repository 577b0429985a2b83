"""Blockiness: block edges from heavy compression or corrupted slices, on luma, no reference.

Video codecs cut the picture into 8x8 and 16x16 blocks from its top-left corner.
When a block loses its detail (a very high quantiser) or holds the wrong data
(a damaged slice), its edges show as *isolated steps*: a jump in luma across
the block boundary with flat pixels on both sides of it. This detector counts
them on the 8-px grid, on every 4th, 8th or 16th row and column, in the
spirit of Wu and Yuen's GBIM and of Muijs and Kirenko (FFmpeg's blockdetect):

- a boundary shows a step when the jump across it is at least `min_step_levels`
  and at least `step_ratio` times the larger slope just inside either block;
- jumps above `max_step_levels` are left out: black-on-white text or graphics
  lying on the grid make those, coding artefacts do not; so are jumps of at
  least `straight_edge_min_levels` that recur unchanged 16 px further along the
  boundary: the long straight edge of a flat graphic, where neighbouring
  blocks would differ;
- the same count half a block off the grid (where blocks cannot show) is what
  the content itself produces, and is subtracted;
- the picture is scored over its worst `worst_fraction` of 16-row strips, so
  that a damaged slice (a band of rows) counts as much as blocking everywhere.

The score is the share of block boundaries showing a step beyond chance: about
0 on clean pictures (it can dip slightly below), 0.15 to 0.3 for x264 at its
highest quantisers, up to 0.9 when every block is flat. A flat picture scores 0.
Only one frame per `analysis_interval_s` is analysed: the rule is about
stretches of half a second, and the cost stays a small part of decoding.

An interlaced frame is scored as a frame and as its two fields (each on its own
lines), and the lower score counts. Interlaced coders (MPEG-2, H.264 PAFF/MBAFF)
code each macroblock as a frame or as two fields, so their blocks lie on the
frame grid or on the field grid; heavy coding blocks both views alike (measured:
MPEG-2 1080i25 at 2 Mb/s scores 0.14 either way), while a clean picture can
show steps in one view only: fields taken at different instants step at every
line of a frame, and frame-coded smooth areas seen as fields. (A 15 Mb/s MPEG-2
1080i25 freeze scored 0.15 as frames, 0.06 as fields; FFmpeg's blockdetect
saw no change there.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from pydantic import Field

from .base import FrameStack, VideoChunk, take_frames
from .models import LumaLevels, Seconds
from .sampling import SampledDetector, SampledOptions, SampledState

_BLOCK = 8
_STRIP = 16  # rows of a macroblock: the height a damaged slice comes in
_OFF_GRID = 3  # the boundary between pixels 3 and 4 of a block: mid-block, never a codec edge


class BlockinessOptions(SampledOptions):
    threshold: float = Field(0.1, gt=0, le=1, description="a picture is blocky when its score is above this")
    min_duration_s: Seconds = Field(0.5, description="shortest blocky stretch reported")
    min_step_levels: LumaLevels = Field(2, description="smallest luma jump across a block boundary counted")
    max_step_levels: LumaLevels = Field(
        100, description="larger jumps are edges of text or graphics, not coding artefacts"
    )
    step_ratio: int = Field(2, ge=1, le=16, description="a step is at least this many times the slope beside it")
    straight_edge_min_levels: LumaLevels = Field(
        16, description="a jump this large, the same 16 px along the boundary, is a graphic's edge"
    )
    worst_fraction: float = Field(
        0.33, gt=0, le=1, description="share of the picture's 16-row strips, the worst ones, that the score covers"
    )
    min_analysed_rows: int = Field(
        30, ge=1, description="every 16th, 8th or 4th row and column is analysed: the sparsest giving this many rows"
    )


class BlockinessState(SampledState):
    pass


def _isolated_steps(
    take: Callable[[int], np.ndarray], *, along: int, reach: int, options: BlockinessOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Isolated steps at the block boundaries (between pixels 7 and 8 of each block) and mid-block.

    `take(j)` returns pixel j of every block across the boundaries (int16); `along`
    is the axis that follows the boundaries, `reach` how many samples along it make 16 px.
    """
    found = []
    for boundary in (_BLOCK - 1, _OFF_GRID):
        before, left, right, after = (take(boundary + k) for k in (-1, 0, 1, 2))
        signed = right - left
        jump = np.abs(signed)
        slope = np.maximum(np.abs(left - before), np.abs(after - right))
        slope *= options.step_ratio
        step = jump >= slope
        step &= jump >= options.min_step_levels
        step &= jump <= options.max_step_levels
        # A large jump that recurs unchanged a macroblock further along the boundary is
        # the long straight edge of a flat graphic; neighbouring blocks differ.
        n = signed.shape[along]
        ahead = [slice(None)] * signed.ndim
        behind = [slice(None)] * signed.ndim
        ahead[along], behind[along] = slice(reach, None), slice(0, n - reach)
        same = np.abs(signed[tuple(ahead)] - signed[tuple(behind)]) <= 1
        straight = np.zeros_like(step)
        straight[tuple(behind)] |= same
        straight[tuple(ahead)] |= same
        straight &= jump >= options.straight_edge_min_levels
        step &= ~straight
        found.append(step)
    return found[0], found[1]


def blockiness_scores(
    luma: np.ndarray, options: BlockinessOptions, frames: np.ndarray | None = None
) -> np.ndarray:
    """Score of each picture of `luma` (frames, height, width), uint8, or of those `frames` of it."""
    if frames is None:
        frames = np.arange(luma.shape[0])
    n, (_, h, w) = len(frames), luma.shape
    spacing = next((s for s in (16, 8) if h // s >= options.min_analysed_rows), 4)
    blocks_across = (w - 2) // _BLOCK  # a boundary needs two pixels on each side
    blocks_down = (h - 2) // _BLOCK
    strips = min(h // _STRIP, blocks_down // 2)
    if n == 0 or strips == 0 or blocks_across == 0:
        return np.zeros(n)
    reach = max(1, _STRIP // spacing)

    # Vertical boundaries, on rows `spacing` apart (contiguous rows: cheap to slice across).
    rows = take_frames(luma, frames, (slice(spacing // 2 - 1, None, spacing), slice(None)), np.int16)
    v_grid, v_off = _isolated_steps(
        lambda j: rows[:, :, j : j + _BLOCK * blocks_across : _BLOCK], along=1, reach=reach, options=options
    )
    # Horizontal boundaries, on columns `spacing` apart.
    cols = take_frames(luma, frames, (slice(None), slice(spacing // 2 - 1, None, spacing)), np.int16)
    h_grid, h_off = _isolated_steps(
        lambda j: cols[:, j : j + _BLOCK * blocks_down : _BLOCK, :], along=2, reach=reach, options=options
    )

    rows_per_strip = _STRIP // spacing if spacing < _STRIP else 1

    def worst_strips(vertical: np.ndarray, horizontal: np.ndarray) -> np.ndarray:
        per_strip = (
            vertical[:, : strips * rows_per_strip].reshape(n, strips, -1).mean(axis=2)
            + horizontal[:, : strips * 2].reshape(n, strips, -1).mean(axis=2)
        ) / 2
        return np.partition(per_strip, strips - worst, axis=1)[:, strips - worst :].mean(axis=1)

    worst = max(1, math.ceil(strips * options.worst_fraction - 1e-9))
    # The same statistic off the grid is what the content alone gives: subtracting it
    # leaves what the block grid adds.
    return worst_strips(v_grid, h_grid) - worst_strips(v_off, h_off)


class BlockinessDetector(SampledDetector[BlockinessOptions, BlockinessState]):
    name = "blockiness"

    def open_window(self) -> None:
        self.analysed = 0
        self.score_total = 0.0
        self.score_max = -math.inf

    def feed_picked(self, chunk: VideoChunk, picked: np.ndarray) -> None:
        scores = blockiness_scores(chunk.luma, self.options, picked)
        if chunk.interlaced:
            scores = np.minimum(scores, self._field_scores(chunk, picked))
        self.analysed += int(scores.size)
        self.score_total += float(scores.sum())
        self.score_max = max(self.score_max, float(scores.max()))
        self.tracker.track_frames(chunk.times[picked], scores > self.options.threshold, scores)

    def _field_scores(self, chunk: VideoChunk, picked: np.ndarray) -> np.ndarray:
        """The mean score of the two fields of each picked interlaced frame, each field on its own lines."""
        fields = [
            blockiness_scores(FrameStack([chunk.luma[int(i)][parity::2] for i in picked]), self.options)
            for parity in (0, 1)
        ]
        return (fields[0] + fields[1]) / 2

    def measures(self) -> dict[str, float]:
        if not self.analysed:
            return {}
        return {"blockiness_mean": self.score_total / self.analysed, "blockiness_max": self.score_max}
