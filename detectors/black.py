"""Black picture: nearly every pixel at or below a low luma level, for long enough.

Same rule and defaults as FFmpeg's blackdetect (pixel_black_th=0.10,
picture_black_ratio_th=0.98, black_min_duration=2), limited-range aware.
"""

from __future__ import annotations

from pydantic import Field

from .base import Detector, DetectorOptions, DetectorOutput, VideoChunk, limited_range_level
from .runs import RunState, RunTracker


class BlackOptions(DetectorOptions):
    min_duration_s: float = Field(2.0, ge=0, description="shortest black stretch reported")
    pixel_threshold: float = Field(
        0.10, ge=0, le=1, description="a pixel is black at or below this fraction of the luma range"
    )
    picture_ratio: float = Field(0.98, gt=0, le=1, description="a picture is black when this fraction of pixels is")


class BlackDetector(Detector):
    name = "black"
    kind = "black"
    track = "video"
    Options = BlackOptions
    State = RunState
    options: BlackOptions

    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.tracker = RunTracker(
            kind=self.kind, track=self.track, min_duration_s=self.options.min_duration_s, state=self.state
        )
        self.frames = 0
        self.black_frames = 0

    def feed_video(self, chunk: VideoChunk) -> None:
        level = limited_range_level(self.options.pixel_threshold, full_range=chunk.full_range)
        fractions = self.context.black_fraction(chunk, pixel_level=level)
        black = fractions >= self.options.picture_ratio
        self.frames += len(black)
        self.black_frames += int(black.sum())
        self.tracker.track_frames(chunk.times, black, fractions)

    def finish(self) -> DetectorOutput:
        span = self.context.span
        events = self.tracker.finish(window_end_s=span.end_s, stream_ended=span.is_last)
        measures = {"black_frame_ratio": self.black_frames / self.frames} if self.frames else {}
        return DetectorOutput(events=events, measures=measures, state=self.state.model_dump())
