"""Signal loss: a track stops delivering media for at least `min_duration_s`.

A gap between one frame (or block of samples) and the next, or a track that
ends while the stream goes on, is a loss from where the track's media ended to
where it resumed (or to the end of the stream). The value is the gap in
seconds. A track the stream never had is not lost.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .base import AudioChunk, Detector, DetectorOptions, VideoChunk
from .runs import RunState, TrackRuns


class SignalLossOptions(DetectorOptions):
    min_duration_s: float = Field(1.0, gt=0, description="shortest gap in a track's media reported")


class TrackCoverage(RunState):
    media_end_s: float | None = None
    frame_s: float = 0.04


class SignalLossDetector(Detector[SignalLossOptions, TrackRuns[TrackCoverage]]):
    name = "signal_loss"
    track = "av"
    runs = ("video", "audio")
    run_reduce = "max"

    def _covered(self, track: str, starts: np.ndarray, ends: np.ndarray) -> None:
        """Media of `track` covers [starts[i], ends[i]); report the gaps before and between."""
        tracker = self.trackers[track]
        coverage: TrackCoverage = tracker.state  # type: ignore[assignment]
        previous_end = np.concatenate(([coverage.media_end_s if coverage.media_end_s is not None else starts[0]], ends[:-1]))
        gaps = starts - previous_end
        for i in np.flatnonzero(gaps >= self.options.min_duration_s).tolist():
            tracker.active(start_s=float(previous_end[i]), last_s=float(starts[i]), values=gaps[i : i + 1])
            tracker.inactive(float(starts[i]))
        coverage.media_end_s = float(ends[-1])

    def feed_video(self, chunk: VideoChunk) -> None:
        coverage: TrackCoverage = self.state.video
        times = chunk.times
        if len(times) > 1:
            coverage.frame_s = float(np.median(np.diff(times)))
        self._covered("video", times, times + coverage.frame_s)

    def feed_audio(self, chunk: AudioChunk) -> None:
        n = chunk.samples.shape[1]
        if n:
            start = np.array([chunk.start_s])
            self._covered("audio", start, start + n / chunk.sample_rate)

    def close_window(self) -> None:
        span = self.context.span
        for tracker in self.trackers.values():
            coverage: TrackCoverage = tracker.state  # type: ignore[assignment]
            end = coverage.media_end_s
            if end is not None and span.end_s - end >= self.options.min_duration_s:
                tracker.active(start_s=end, last_s=span.end_s, values=np.array([span.end_s - end]))
