"""Which frames a detector analyses when it does not need every one.

A rule about stretches of half a second or more needs a verdict a few times a
second, not at every frame. Picking the frames by their time on the stream's
timeline (not by their position in a window or chunk) keeps the choice, and so
the events, the same wherever windows and chunks begin.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from pydantic import Field

from .base import Detector, DetectorOptions, VideoChunk
from .runs import RunState


def analysis_slots(times: np.ndarray, interval_s: float, last_slot: int | None) -> tuple[np.ndarray, int | None]:
    """Indices of the frames to analyse, the first frame of each `interval_s` slot of the timeline.

    `last_slot` is the slot analysed last (carried in the detector's state); the
    second value returned is the new one. An interval of 0 picks every frame.
    """
    if interval_s <= 0 or times.size == 0:
        return np.arange(times.size), last_slot
    slots = np.floor(times / interval_s + 1e-6).astype(np.int64)
    first = int(slots[0]) - 1 if last_slot is None else last_slot
    previous = np.concatenate(([first], slots[:-1]))
    picked = np.flatnonzero(slots > previous)
    return picked, max(first, int(slots.max()))


class SampledOptions(DetectorOptions):
    analysis_interval_s: float = Field(
        0.2, ge=0, le=1, description="one frame per this interval is analysed (0: every frame)"
    )


class SampledState(RunState):
    last_slot: int | None = None


SampledOptionsT = TypeVar("SampledOptionsT", bound=SampledOptions)
SampledStateT = TypeVar("SampledStateT", bound=SampledState)


class SampledDetector(Detector[SampledOptionsT, SampledStateT]):
    """A video detector that analyses one frame per `analysis_interval_s` of the timeline
    (`feed_picked`), the last slot analysed carried in its state."""

    track = "video"

    def feed_video(self, chunk: VideoChunk) -> None:
        interval = self.options.analysis_interval_s
        if self.context.self_contained and self.state.last_slot is None and len(chunk.times) > 1 and interval > 0:
            # Analysed without the window before: its last frame, a frame period earlier, took its
            # slot; the slots picked are the same as when the windows are analysed in a row.
            before = float(chunk.times[0]) - float(chunk.times[1] - chunk.times[0])
            self.state.last_slot = int(np.floor(before / interval + 1e-6)) if before >= 0 else None
        picked, self.state.last_slot = analysis_slots(chunk.times, interval, self.state.last_slot)
        if picked.size:
            self.feed_picked(chunk, picked)

    def feed_picked(self, chunk: VideoChunk, picked: np.ndarray) -> None:
        """The chunk, of which the frames `picked` (indices) are to be analysed; at least one."""
        raise NotImplementedError
