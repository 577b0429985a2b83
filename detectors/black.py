"""Black picture: nearly every pixel at or below a low luma level, for long enough.

Same rule and defaults as FFmpeg's blackdetect (pixel_black_th=0.10,
picture_black_ratio_th=0.98, black_min_duration=2), limited-range aware.
The rule is `black_pictures`, which freeze asks too (a black picture is never frozen).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .base import Detector, DetectorOptions, VideoChunk, WindowContext, limited_range_level
from .models import Fraction, Seconds
from .runs import RunState


class BlackOptions(DetectorOptions):
    min_duration_s: Seconds = Field(2.0, description="shortest black stretch reported")
    pixel_threshold: Fraction = Field(0.10, description="a pixel is black at or below this fraction of the luma range")
    picture_ratio: float = Field(0.98, gt=0, le=1, description="a picture is black when this fraction of pixels is")


def black_pictures(chunk: VideoChunk, context: WindowContext, options: BlackOptions) -> tuple[np.ndarray, np.ndarray]:
    """Which pictures of the chunk are black by `options`, and each one's fraction of black pixels."""
    level = limited_range_level(options.pixel_threshold, full_range=chunk.full_range)
    fractions = context.black_fraction(chunk, pixel_level=level)
    return fractions >= options.picture_ratio, fractions


class BlackDetector(Detector[BlackOptions, RunState]):
    name = "black"
    track = "video"

    def open_window(self) -> None:
        self.frames = 0
        self.black_frames = 0

    def feed_video(self, chunk: VideoChunk) -> None:
        black, fractions = black_pictures(chunk, self.context, self.options)
        self.frames += len(black)
        self.black_frames += int(black.sum())
        self.tracker.track_frames(chunk.times, black, fractions)

    def measures(self) -> dict[str, float]:
        return {"black_frame_ratio": self.black_frames / self.frames} if self.frames else {}
