"""Some channels of a track silent while others are not: a dead centre (FC) in 5.1, one side of
a stereo pair.

Each channel is judged on blocks of 0.1 s, by the silence detector's rule: silent when every
sample of the block is below the level (-60 dBFS). A block counts when at least one channel is
silent and at least one is not; a whole track silent is `silence`, not this. The LFE channel,
often digitally silent in real programmes, is not judged by default (it still counts as a
channel that is not silent). `details.channels`: the channels silent where the stretch began;
the value is its length in seconds.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from vqa.contracts import DefectEvent

from .base import Detector, DetectorOptions, db_to_amplitude
from .blocks import BlockCutter, Blocks, JudgedInBlocks
from .models import Decibels, Seconds
from .runs import RunState


class ChannelSilenceOptions(DetectorOptions):
    min_duration_s: Seconds = Field(2.0, description="shortest stretch reported")
    noise_db: Decibels = Field(-60.0, description="a channel is silent below this level (dBFS), as for silence")
    block_s: float = Field(0.1, gt=0, le=1.0, description="each channel is judged on blocks this long (s)")
    ignore_channels: tuple[str, ...] = Field(
        ("LFE",), description="channels never reported silent (layout names: LFE, FC, BL...)"
    )


class ChannelSilenceState(RunState):
    channels: list[str] = Field(default_factory=list, description="the open stretch's silent channels, where it began")


class ChannelSilenceDetector(JudgedInBlocks, Detector[ChannelSilenceOptions, ChannelSilenceState]):
    name = "channel_silence"
    track = "audio"
    run_reduce = "sum"  # block lengths: the value is the stretch's length in seconds

    def open_window(self) -> None:
        self.threshold = db_to_amplitude(self.options.noise_db)
        self.cutter = BlockCutter(self.options.block_s)
        # The silent channels of each stretch in this window, by its start (one going on: from before).
        self.began: dict[float, list[str]] = {}
        if self.state.open_start_s is not None:
            self.began[round(self.state.open_start_s, 4)] = self.state.channels

    def _judge(self, blocks: Blocks) -> None:
        names = blocks.channels or tuple(f"c{i}" for i in range(blocks.samples.shape[0]))
        silent = np.abs(blocks.samples).max(axis=2) < self.threshold  # (channels, blocks)
        judged = np.array([name not in self.options.ignore_channels for name in names])
        active = (silent & judged[:, None]).any(axis=0) & ~silent.all(axis=0)
        before = np.concatenate(([self.tracker.is_open], active[:-1]))
        self.tracker.track_frames(blocks.times, active, blocks.durations)
        for k in np.flatnonzero(active & ~before):  # a stretch begins: its channels, silent in its first block
            self._began_at(float(blocks.times[k]), [n for n, s, j in zip(names, silent[:, k], judged) if s and j])

    def _began_at(self, start_s: float, channels: list[str]) -> None:
        self.began[round(start_s, 4)] = channels
        self.state.channels = channels

    def window_events(self, events: list[DefectEvent]) -> list[DefectEvent]:
        for event in events:
            event.defect.details["channels"] = self.began.get(event.defect.start_s, self.state.channels)
        return events
