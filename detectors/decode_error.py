"""Corrupt or undecodable data: any packet that fails to decode is a defect.

The rest of the window is still analysed (the decoder skips the bad packet).
Errors of one track closer together than `merge_gap_s` are one event; its
value is the number of errors, its span from the first bad packet to the end
of the last.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .base import DecodeErrorChunk, Detector, DetectorOptions
from .models import Seconds
from .runs import RunState, TrackRuns


class DecodeErrorOptions(DetectorOptions):
    merge_gap_s: Seconds = Field(2.0, description="errors of a track closer together than this are one event")


class DecodeErrorDetector(Detector[DecodeErrorOptions, TrackRuns[RunState]]):
    name = "decode_error"
    track = "av"
    runs = ("video", "audio")
    run_reduce = "sum"

    def open_window(self) -> None:
        self.errors = 0

    def feed_decode_errors(self, chunk: DecodeErrorChunk) -> None:
        tracker = self.trackers[chunk.track]
        for t, duration in zip(chunk.times.tolist(), chunk.durations.tolist()):
            self.errors += 1
            last = tracker.state.last_active_s
            if tracker.is_open and last is not None and t - last > self.options.merge_gap_s:
                tracker.inactive(last)
            tracker.active(start_s=t, last_s=t + duration, values=np.ones(1))

    def close_window(self) -> None:
        span = self.context.span
        for tracker in self.trackers.values():
            last = tracker.state.last_active_s
            if tracker.is_open and last is not None and (span.is_last or span.end_s - last > self.options.merge_gap_s):
                tracker.inactive(last)

    def measures(self) -> dict[str, float]:
        return {"decode_errors": float(self.errors)} if self.errors else {}
