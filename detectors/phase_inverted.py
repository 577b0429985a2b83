"""A stereo pair in antiphase: one side's polarity inverted (a miswired cable, a flipped
channel in a mix), which cancels when the pair is summed to mono.

The front pair (FL, FR; a two-channel track without a layout: its two channels) is judged on
blocks of 0.1 s: their correlation, sum(L R) / sqrt(sum(L^2) sum(R^2)), at or below -0.9 with
sound on both sides (each at least -50 dBFS RMS). The value is the stretch's mean correlation.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .base import Detector, DetectorOptions, db_to_amplitude
from .blocks import BlockCutter, Blocks, JudgedInBlocks
from .models import Decibels, Seconds
from .runs import RunState


class PhaseInvertedOptions(DetectorOptions):
    min_duration_s: Seconds = Field(2.0, description="shortest stretch reported")
    max_correlation: float = Field(-0.9, ge=-1.0, le=0.0, description="a block is in antiphase at or below this correlation")
    min_level_db: Decibels = Field(-50.0, description="both sides of a block at least this loud (RMS, dBFS) to be judged")
    block_s: float = Field(0.1, gt=0, le=1.0, description="the pair is judged on blocks this long (s)")


def stereo_pair(channels: tuple[str, ...], count: int) -> tuple[int, int] | None:
    """Rows of the front left and right channels (a two-channel track without names: 0 and 1)."""
    if "FL" in channels and "FR" in channels:
        return channels.index("FL"), channels.index("FR")
    return (0, 1) if count == 2 and not channels else None


class PhaseInvertedDetector(JudgedInBlocks, Detector[PhaseInvertedOptions, RunState]):
    name = "phase_inverted"
    track = "audio"

    def open_window(self) -> None:
        self.level = db_to_amplitude(self.options.min_level_db)
        self.cutter = BlockCutter(self.options.block_s)

    def _judge(self, blocks: Blocks) -> None:
        pair = stereo_pair(blocks.channels, blocks.samples.shape[0])
        if pair is None:  # no stereo pair (mono): never in antiphase
            self.tracker.track_frames(blocks.times, np.zeros(len(blocks), dtype=bool), np.zeros(len(blocks)))
            return
        left = blocks.samples[pair[0]].astype(np.float64)
        right = blocks.samples[pair[1]].astype(np.float64)
        power_l, power_r = np.square(left).sum(axis=1), np.square(right).sum(axis=1)
        n = left.shape[1]
        loud = (power_l >= n * self.level**2) & (power_r >= n * self.level**2)
        correlation = (left * right).sum(axis=1) / np.sqrt(np.maximum(power_l * power_r, 1e-30))
        active = loud & (correlation <= self.options.max_correlation)
        self.tracker.track_frames(blocks.times, active, correlation)
