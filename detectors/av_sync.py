"""Audio/video sync: how late (positive) or early (negative) the sound is against the picture.

Out of sync means beyond ITU-R BT.1359's acceptability: audio more than 90 ms
early or more than 185 ms late. Three measurements, each where it applies:

- `test_signal`: a flash-and-beep sync pattern (a white frame and a short tone
  burst, once a second or so). A flash is a frame whose mean luma jumps high;
  a beep is an audio onset out of quiet, placed at the first sample that
  reaches half the burst's peak (within a fraction of a millisecond; the flash
  is as exact as the frame times). Each flash is paired with the one beep
  within `max_offset_ms` of it, if that beep has no other flash that near;
  the offset is beep time minus flash time.
- `content`: for ordinary programme, an audio onset-strength envelope (the rise
  of the level in 20 ms steps, in dB) is correlated with a visual one (the rise
  of each frame's mean absolute difference from the frame before) over
  `content_span_s`, at lags within `max_offset_ms`. An estimate counts only
  when the peak is high, stands clear of every other peak within a second
  more of lag either way (periodic content gives no clear peak), and rests on
  several events seen in both; otherwise the detector says nothing. It is
  skipped where a test signal was measured.
- `timestamps`: where neither found anything in the whole stream, the tracks'
  timestamps: the offset between the first audio sample and the first video
  frame, and between the ends of the two tracks. A track muxed with an offset
  is shifted at both ends alike, and everything in it plays that much late or
  early; a track that only starts late (a capture that began mid-GOP) or only
  ends early (truncated) is not shifted, and is not reported. The value is the
  mean of the two ends' offsets. It is decided at the stream's end, so a live
  stream that never ends gets no timestamp verdict.

A test-signal measurement is placed at its flash, a content estimate at the
middle of its span. Each stands from its time to the next one (at most
`max_gap_s`; one with no successor stands for one measurement interval). A
stretch of out-of-sync measurements of at least `min_duration_s` is one defect
(more than one test-signal period, so one stray pair is not a defect); the
value is the mean offset over it in ms; details give the mode, the mean
confidence (1 for test signal and timestamps, the correlation peak for
content) and the number of measurements. A run whose first measurement is the
stream's first, made within `max_gap_s` of the stream's start, starts there; a
run still covered by its last measurement when the stream ends ends with it.

A measurement needs what follows it (a beep up to `max_offset_ms` after its
flash, the audio a second and a half past a content span), so measurements
are handed on in time order once no earlier one can still come: events come
out up to about 6 s after the window they happen in. Between windows the
detector carries the last 130 ms of 1 ms audio peaks, the flashes and beeps
not yet paired, and for the content estimate the last `content_span_s` and a
little more of both envelopes on a 20 ms grid (about 5 KiB), so the results do
not depend on where windows begin. It needs both tracks: the activity skips
it on a stream with only one.
"""

from __future__ import annotations

import base64
import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from vqa.contracts import DefectEvent

from .base import AudioChunk, Detector, DetectorOptions, DetectorState, VideoChunk, coarse_stride
from .models import Decibels, Fraction, Seconds
from .runs import RunState

Mode = Literal["test_signal", "content", "timestamps"]

_BLOCKS_PER_S = 1000  # audio peaks per second (1 ms blocks), for beep onsets
_PEAK_SCALE = 100_000  # block peaks are kept as integers of 1e-5 full scale
_ONSET_LOOKAHEAD_S = 0.03  # a burst's peak is sought this long after it leaves quiet (AAC pre-echo: ~3 ms)
_GRID_S = 0.02  # the content envelopes' step
_FLOOR_DB = -60.0  # the audio envelope's floor: quieter changes are not onsets
_ENVELOPE_SCALE = 10  # envelope values are kept as integers of 0.1 (dB, luma levels)
_SEARCH_BEYOND_S = 1.0  # a content peak must stand clear of every other this much further out in lag
_EVENT_Z = 3.0  # an envelope value this many standard deviations up is an event
_VISUAL_LINES = 200  # motion is measured on a picture of about this many lines
_EDGE_PIXELS = 512  # pixels of the last frame carried to the next window (edge_print)
_MARGIN_S = 0.05  # slack on the horizons, for frame and block rounding
_EPS = 1e-9


class AvSyncOptions(DetectorOptions):
    early_limit_ms: float = Field(90.0, ge=0, description="audio more than this early is out of sync (BT.1359)")
    late_limit_ms: float = Field(185.0, ge=0, description="audio more than this late is out of sync (BT.1359)")
    min_duration_s: Seconds = Field(1.5, description="shortest out-of-sync stretch reported (s)")
    max_offset_ms: float = Field(500.0, gt=0, le=1000, description="largest offset looked for, either way (ms)")
    max_gap_s: float = Field(2.5, gt=0, description="longest a measurement stands when no other follows (s)")
    test_signal: bool = Field(True, description="measure flash-and-beep sync patterns")
    flash_min_level: float = Field(
        0.6, gt=0, le=1, description="a flash frame's mean luma, as a fraction of the range from black to white"
    )
    flash_min_jump: float = Field(
        0.3, gt=0, le=1, description="rise of mean luma over the frame before that makes a flash (fraction of range)"
    )
    beep_min_dbfs: Decibels = Field(-30.0, description="a beep's peak reaches this level (dBFS)")
    quiet_dbfs: Decibels = Field(-50.0, description="before a beep the audio stays under this level (dBFS)")
    quiet_before_ms: float = Field(100.0, ge=1, le=1000, description="... for this long (ms)")
    content: bool = Field(True, description="estimate the offset from programme content")
    content_span_s: float = Field(8.0, ge=2, le=10, description="span the content envelopes are correlated over (s)")
    content_step_s: float = Field(1.0, gt=0, le=10, description="a content estimate every this often (s)")
    content_min_correlation: float = Field(
        0.6, gt=0, le=1, description="normalised correlation the content estimate's peak must reach"
    )
    content_min_margin: Fraction = Field(
        0.25, description="how far the peak must stand over any other peak of the correlation"
    )
    content_min_events: int = Field(4, ge=1, description="events seen in both envelopes at the peak's lag")
    timestamps: bool = Field(True, description="report a whole track shifted by its timestamps")
    timestamp_agreement_ms: float = Field(
        50.0, ge=0, description="largest difference between the start and end offsets of a shifted track (ms)"
    )

    @model_validator(mode="after")
    def _check_limits(self) -> AvSyncOptions:
        if max(self.early_limit_ms, self.late_limit_ms) >= self.max_offset_ms:
            raise ValueError("max_offset_ms must exceed early_limit_ms and late_limit_ms")
        if self.beep_min_dbfs <= self.quiet_dbfs:
            raise ValueError("beep_min_dbfs must be above quiet_dbfs")
        return self


class Measurement(BaseModel):
    """One offset measured; it covers [from_s, to_s] and is placed at `t_s` among the others."""

    t_s: float
    from_s: float
    to_s: float
    offset_ms: float
    mode: Mode
    confidence: float


class AvSyncState(DetectorState):
    run: RunState = Field(default_factory=RunState)
    run_modes: dict[str, int] = Field(default_factory=dict, description="measurements of each mode in the open run")
    run_confidence: float = Field(0.0, description="sum of their confidences")
    pending: list[Measurement] = Field(default_factory=list, description="made, not yet fed in time order")
    measurements: int = Field(0, description="test-signal and content measurements so far")
    last_measure_s: float | None = None
    last_reach_s: float | None = Field(None, description="end of what the last measurement covers")
    hold_s: float = Field(1.0, description="how long the last measurement stands when none follows")
    # The tracks' extent, for the timestamp check.
    first_video_s: float | None = None
    last_frame_s: float | None = None
    video_end_s: float | None = None
    frame_period_s: float = 0.04
    first_audio_s: float | None = None
    audio_end_s: float | None = None
    # Video: the last frame's mean level (0-1) and motion; flash onsets not yet out of reach.
    prev_level: float | None = None
    prev_motion: float | None = None
    # The last frame, every Nth pixel of the motion picture (about 500 of them, base64): the
    # next window, which starts on a keyframe with no frame before it decoded, measures its first
    # frame's motion against it (sampled pixels, so the same mean difference, for a cut there too).
    edge_print: str | None = None
    edge_shape: list[int] | None = None  # a list, as it reads back from JSON
    flashes: list[float] = Field(default_factory=list)
    pairs_done_s: float | None = Field(None, description="flashes up to here are paired or given up")
    pair_times: list[float] = Field(default_factory=list, description="recent paired flashes")
    # Audio: 1 ms blocks counted from `audio_origin_s` (restarted at a gap).
    sample_rate: int = 0
    audio_origin_s: float = 0.0
    audio_next_s: float | None = None
    partial: list[float] = Field(default_factory=list, description="|x| of the samples of the unfinished block")
    blocks_first: int = Field(0, description="block index of peaks[0]")
    peaks: list[int] = Field(default_factory=list, description="recent 1 ms block peaks, 1e-5 full scale")
    rise: list[int] = Field(default_factory=list, description="their first sample at half the block's peak")
    scan_from: int = Field(0, description="first block not yet looked at as a beep onset")
    beeps: list[float] = Field(default_factory=list)
    # Content envelopes on the absolute 20 ms grid.
    bin_index: int | None = Field(None, description="the audio grid step being filled")
    bin_energy: list[float] = Field(default_factory=list, description="mean squares of its blocks so far")
    prev_db: float | None = Field(None, description="level of the last grid step (dB); None at a track's start")
    audio_start_bin: int | None = None
    onsets_first: int = 0
    onsets: list[int] = Field(default_factory=list, description="audio onset strength, 0.1 dB")
    visual_start_bin: int | None = None
    visual_first: int = 0
    visual: list[int] = Field(default_factory=list, description="visual onset strength, 0.1 luma levels")
    next_content: int | None = Field(None, description="index of the next content estimate (times content_step_s)")


class AvSyncDetector(Detector[AvSyncOptions, AvSyncState]):
    name = "av_sync"
    track = "av"
    needs_both_tracks: ClassVar[bool] = True  # the activity skips it on a single-track stream
    runs = ("run",)

    def open_window(self) -> None:
        o, st = self.options, self.state
        self.lag_s = o.max_offset_ms / 1000.0
        self.quiet_q = round(10.0 ** (o.quiet_dbfs / 20.0) * _PEAK_SCALE)
        self.beep_q = round(10.0 ** (o.beep_min_dbfs / 20.0) * _PEAK_SCALE)
        self.quiet_blocks = max(1, round(o.quiet_before_ms / 1000.0 * _BLOCKS_PER_S))
        self.lookahead_blocks = round(_ONSET_LOOKAHEAD_S * _BLOCKS_PER_S)
        # Working copies of the carried arrays.
        self.partial = np.asarray(st.partial, dtype=np.float32)
        self.peaks = np.asarray(st.peaks, dtype=np.int64)
        self.rise = np.asarray(st.rise, dtype=np.int64)
        self.bin_energy = np.asarray(st.bin_energy, dtype=np.float64)
        self.onsets = np.asarray(st.onsets, dtype=np.int64)
        self.visual = np.asarray(st.visual, dtype=np.int64)
        self.previous_small: np.ndarray | None = None
        self.video_started = False
        self.offsets: list[float] = []

    # --- video -------------------------------------------------------------------------------

    def feed_video(self, chunk: VideoChunk) -> None:
        n = len(chunk.times)
        if n == 0:
            return
        st = self.state
        coarse = self.context.coarse_luma(chunk)
        sub = max(1, round(coarse.shape[1] / _VISUAL_LINES))
        small = coarse[:, ::sub, ::sub].reshape(n, -1)
        if not self.video_started:
            self.video_started = True
            previous = self.context.previous_luma
            if previous is not None and st.prev_level is not None:
                step = coarse_stride(previous.shape[0])
                self.previous_small = previous[::step, ::step][::sub, ::sub].reshape(-1)
        times = chunk.times.astype(np.float64)
        if st.first_video_s is None:
            st.first_video_s = float(times[0])
        black, white = (0.0, 255.0) if chunk.full_range else (16.0, 235.0)
        # Means as exact integer sums over the pixel count: numpy's float mean along an
        # axis of uint8 is ten times slower, for the same numbers.
        pixel_count = small.shape[1]
        levels = (small.sum(axis=1, dtype=np.int32) / pixel_count - black) / (white - black)

        motion = self._motion(coarse, small, sub)
        before = np.concatenate(([st.prev_motion if st.prev_motion is not None else motion[0]], motion[:-1]))
        if self.options.content:
            rises = np.round(np.maximum(motion - before, 0.0) * _ENVELOPE_SCALE).astype(np.int64)
            self._add_visual(times, rises)

        if self.options.test_signal:
            before_level = np.concatenate(([st.prev_level if st.prev_level is not None else 0.0], levels[:-1]))
            flash = (levels >= self.options.flash_min_level) & (levels - before_level >= self.options.flash_min_jump)
            st.flashes.extend(times[flash].tolist())

        if n > 1:
            st.frame_period_s = float(np.median(np.diff(times)))
        elif st.last_frame_s is not None and times[0] > st.last_frame_s:
            st.frame_period_s = float(times[0] - st.last_frame_s)
        st.last_frame_s = float(times[-1])
        st.video_end_s = st.last_frame_s + st.frame_period_s
        st.prev_level, st.prev_motion = float(levels[-1]), float(motion[-1])

    def _motion(self, coarse: np.ndarray, small: np.ndarray, sub: int) -> np.ndarray:
        """Each frame's mean absolute difference from the frame before (its rises are the visual
        onsets); the first frame's from the last one seen, or carried from the window before."""
        st, n, pixel_count = self.state, small.shape[0], small.shape[1]
        motion = np.empty(n)
        if n > 1:
            step = np.subtract(small[1:], small[:-1], dtype=np.int16)
            np.abs(step, out=step)
            motion[1:] = step.sum(axis=1, dtype=np.int32) / pixel_count
        previous_small = self.previous_small
        edge_step = sub * max(1, math.ceil(math.sqrt(pixel_count / _EDGE_PIXELS)))
        first_edge = coarse[0, ::edge_step, ::edge_step]
        carried = self._carried_edge(first_edge.shape)
        if previous_small is not None and previous_small.shape[0] == pixel_count:
            step0 = np.subtract(small[0], previous_small, dtype=np.int16)
            np.abs(step0, out=step0)
            motion[0] = float(step0.sum(dtype=np.int32)) / pixel_count
        elif carried is not None:
            motion[0] = float(np.abs(np.subtract(first_edge, carried, dtype=np.int16)).mean())
        elif st.prev_motion is not None:
            motion[0] = st.prev_motion
        else:  # the stream's first frame: no motion known, and none begins
            motion[0] = motion[1] if n > 1 else 0.0
        self.previous_small = small[-1].copy()
        last_edge = np.ascontiguousarray(coarse[-1, ::edge_step, ::edge_step])
        st.edge_print, st.edge_shape = base64.b64encode(last_edge.tobytes()).decode(), list(last_edge.shape)
        return motion

    def _carried_edge(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """The last frame of the window before (its edge print), when this window has not
        started yet and the picture size is the same."""
        st = self.state
        if self.previous_small is not None or st.edge_print is None or st.prev_level is None or st.edge_shape != list(shape):
            return None
        return np.frombuffer(base64.b64decode(st.edge_print), dtype=np.uint8).reshape(shape)

    def _add_visual(self, times: np.ndarray, rises: np.ndarray) -> None:
        st = self.state
        bins = np.round(times / _GRID_S).astype(np.int64)
        if st.visual_start_bin is None:
            st.visual_start_bin = st.visual_first = int(bins[0])
        keep = bins >= st.visual_first
        bins, rises = bins[keep] - st.visual_first, rises[keep]
        if not bins.size:
            return
        size = int(bins.max()) + 1
        if size > self.visual.size:
            self.visual = np.concatenate((self.visual, np.zeros(size - self.visual.size, dtype=np.int64)))
        np.add.at(self.visual, bins, rises)

    # --- audio -------------------------------------------------------------------------------

    def feed_audio(self, chunk: AudioChunk) -> None:
        n = chunk.samples.shape[1]
        if n == 0:
            return
        st = self.state
        rate = chunk.sample_rate
        if st.first_audio_s is None:
            st.first_audio_s = chunk.start_s
        if rate != st.sample_rate or st.audio_next_s is None or abs(chunk.start_s - st.audio_next_s) > 1.5 / rate:
            self._end_audio_segment()
            st.sample_rate, st.audio_origin_s = rate, chunk.start_s
            st.blocks_first = st.scan_from = 0
            self.partial = np.zeros(0, dtype=np.float32)
            self.peaks = self.rise = np.zeros(0, dtype=np.int64)
            st.prev_db = None
        st.audio_next_s = st.audio_end_s = chunk.start_s + n / rate

        size = self._block_size
        magnitude = np.abs(chunk.samples).max(axis=0)
        if self.partial.size:
            magnitude = np.concatenate((self.partial, magnitude))
        full = magnitude.size - magnitude.size % size
        blocks = magnitude[:full].reshape(-1, size)
        self.partial = magnitude[full:].copy()
        if not blocks.shape[0]:
            return
        peaks = blocks.max(axis=1)
        rise = np.argmax(blocks >= 0.5 * peaks[:, None], axis=1)
        energy = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64) / size
        first_block = st.blocks_first + self.peaks.size
        self.peaks = np.concatenate((self.peaks, np.round(peaks * _PEAK_SCALE).astype(np.int64)))
        self.rise = np.concatenate((self.rise, rise.astype(np.int64)))
        self._scan_beeps(final=False)
        if self.options.content:
            starts = st.audio_origin_s + (first_block + np.arange(energy.size)) * size / rate
            self._add_audio_envelope(np.floor(starts / _GRID_S + 1e-6).astype(np.int64), energy, final=False)

    @property
    def _block_size(self) -> int:
        return max(1, self.state.sample_rate // _BLOCKS_PER_S)

    def _end_audio_segment(self) -> None:
        """Nothing follows the samples so far (a gap, a format change, the stream's end)."""
        if self.state.sample_rate:
            self._scan_beeps(final=True)
            if self.options.content:
                self._add_audio_envelope(np.zeros(0, dtype=np.int64), np.zeros(0), final=True)

    def _scan_beeps(self, *, final: bool) -> None:
        """Look for beep onsets: a block leaving quiet after `quiet_before_ms`, and a burst peak soon after."""
        st = self.state
        peaks, first = self.peaks, st.blocks_first
        end = first + peaks.size - (0 if final else self.lookahead_blocks)
        if end > st.scan_from and self.options.test_signal:
            loud = peaks >= self.quiet_q
            counts = np.concatenate(([0], np.cumsum(loud)))
            k = np.arange(st.scan_from, end) - first
            # Before the first block of a measurement counts as quiet.
            quiet = counts[k] - counts[np.maximum(k - self.quiet_blocks, 0)] == 0
            if first > 0:
                quiet &= k >= self.quiet_blocks
            for i in k[loud[k] & quiet].tolist():
                ahead = peaks[i : i + self.lookahead_blocks]
                top = int(ahead.max())
                if top < self.beep_q:
                    continue
                j = i + int(np.argmax(2 * ahead >= top))
                sample = (first + j) * self._block_size + int(self.rise[j])
                st.beeps.append(st.audio_origin_s + sample / st.sample_rate)
        st.scan_from = max(st.scan_from, end)
        keep = max(st.scan_from - self.quiet_blocks, first)
        self.peaks, self.rise = self.peaks[keep - first :], self.rise[keep - first :]
        st.blocks_first = keep

    def _add_audio_envelope(self, bins: np.ndarray, energy: np.ndarray, *, final: bool) -> None:
        """Fold 1 ms block energies into the 20 ms grid; a grid step is done when the next one begins."""
        st = self.state
        if st.bin_index is not None and self.bin_energy.size:
            bins = np.concatenate((np.full(self.bin_energy.size, st.bin_index), bins))
            energy = np.concatenate((self.bin_energy, energy))
        if not bins.size:
            return
        starts = np.flatnonzero(np.diff(bins, prepend=bins[0] - 1))
        done = starts.size if final else starts.size - 1
        if done:
            sums = np.add.reduceat(energy[: starts[done] if done < starts.size else energy.size], starts[:done])
            counts = np.diff(np.append(starts[:done], starts[done] if done < starts.size else energy.size))
            level = 10.0 * np.log10(np.maximum(sums / counts, 10.0 ** (_FLOOR_DB / 10.0)))
            # A track's first sound is not an onset: the stream's start is no event.
            previous = np.concatenate(([level[0] if st.prev_db is None else st.prev_db], level[:-1]))
            strength = np.round(np.maximum(level - previous, 0.0) * _ENVELOPE_SCALE).astype(np.int64)
            st.prev_db = float(level[-1])
            self._put_onsets(bins[starts[:done]], strength)
        if done < starts.size:
            st.bin_index = int(bins[starts[done]])
            self.bin_energy = energy[starts[done] :].copy()
        else:
            st.bin_index, self.bin_energy = None, np.zeros(0)

    def _put_onsets(self, bins: np.ndarray, strength: np.ndarray) -> None:
        st = self.state
        if st.audio_start_bin is None:
            st.audio_start_bin = st.onsets_first = int(bins[0])
        keep = bins >= st.onsets_first + self.onsets.size  # a step back in time is dropped
        bins, strength = bins[keep] - st.onsets_first, strength[keep]
        if not bins.size:
            return
        grown = np.zeros(int(bins[-1]) + 1 - self.onsets.size, dtype=np.int64)
        self.onsets = np.concatenate((self.onsets, grown))
        self.onsets[bins] = strength

    # --- measurements ------------------------------------------------------------------------

    def _pair(self, horizon_s: float) -> None:
        """Pair the flashes up to `horizon_s`: by then every beep and flash that could compete is known."""
        st, lag = self.state, self.lag_s
        flashes, beeps = sorted(st.flashes), sorted(st.beeps)
        done = st.pairs_done_s if st.pairs_done_s is not None else -math.inf
        for f in flashes:
            if f <= done or f > horizon_s:
                continue
            near = [b for b in beeps if abs(b - f) <= lag + _EPS]
            if len(near) != 1:
                continue
            beep = near[0]
            if sum(1 for g in flashes if abs(g - beep) <= lag + _EPS) != 1:
                continue
            st.pending.append(
                Measurement(t_s=f, from_s=f, to_s=f, offset_ms=(beep - f) * 1000.0, mode="test_signal", confidence=1.0)
            )
            st.pair_times.append(f)
        if math.isfinite(horizon_s):
            st.pairs_done_s = horizon_s
            reach = horizon_s - 2.0 * lag - _MARGIN_S
            st.flashes = [f for f in flashes if f >= reach]
            st.beeps = [b for b in beeps if b >= reach]
            st.pair_times = [p for p in st.pair_times if p >= horizon_s - 3.0 * self.options.content_span_s]
        else:
            st.flashes, st.beeps = [], []

    def _estimate_content(self, horizon_s: float) -> None:
        st, o = self.state, self.options
        if st.next_content is None:
            starts = [t for t in (st.first_video_s, st.first_audio_s) if t is not None]
            if not starts:
                return
            st.next_content = max(1, math.ceil((min(starts) + o.content_span_s) / o.content_step_s - 1e-6))
        while st.next_content * o.content_step_s <= horizon_s + _EPS:
            t = st.next_content * o.content_step_s
            st.next_content += 1
            if any(t - o.content_span_s <= p <= t for p in st.pair_times):
                continue  # a test signal was measured here
            estimate = self._correlate(t)
            if estimate is not None:
                lag_ms, confidence = estimate
                st.pending.append(
                    Measurement(
                        t_s=t - o.content_span_s / 2,
                        from_s=t - o.content_span_s,
                        to_s=t,
                        offset_ms=lag_ms,
                        mode="content",
                        confidence=confidence,
                    )
                )

    def _correlate(self, t: float) -> tuple[float, float] | None:
        """The offset that best lines the audio onsets up with the visual ones in the span ending at `t`."""
        st, o = self.state, self.options
        v0, v1 = round((t - o.content_span_s) / _GRID_S), round(t / _GRID_S)
        reach = round((self.lag_s + _SEARCH_BEYOND_S) / _GRID_S)
        half = max(0, round(st.frame_period_s / _GRID_S / 2))
        visual = _window(self.visual, st.visual_first, st.visual_start_bin, v0 - half, v1 + half)
        audio = _window(self.onsets, st.onsets_first, st.audio_start_bin, v0 - reach - half, v1 + reach + half)
        if visual is None or audio is None:
            return None
        # Both smoothed over about a frame period: an audio onset anywhere within the frame
        # around a picture's time lines up with it.
        box = np.ones(2 * half + 1)
        audio = np.convolve(audio.astype(np.float64), box, mode="valid")
        visual = np.convolve(visual.astype(np.float64), box, mode="valid")
        v = visual - visual.mean()
        v_norm = float(np.sqrt(v @ v))
        if v_norm == 0.0:
            return None
        shifted = np.lib.stride_tricks.sliding_window_view(audio, v.size)  # row i: lag (i - reach) steps
        a = shifted - shifted.mean(axis=1, keepdims=True)
        a_norm = np.sqrt(np.einsum("ij,ij->i", a, a))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(a_norm > 0, (a @ v) / (a_norm * v_norm), 0.0)
        lags = np.arange(-reach, reach + 1) * _GRID_S
        inner = np.flatnonzero(np.abs(lags) <= self.lag_s + _EPS)
        best = int(inner[np.argmax(r[inner])])
        peak = float(r[best])
        others = np.abs(lags - lags[best]) > st.frame_period_s + _GRID_S + _EPS
        margin = peak - float(r[others].max()) if others.any() else peak
        if peak < o.content_min_correlation or margin < o.content_min_margin:
            return None
        a_best = a[best]
        both = (v > _EVENT_Z * v.std()) & (a_best > _EVENT_Z * a_best.std())
        if int(np.count_nonzero(both[1:] & ~both[:-1])) + int(both[0]) < o.content_min_events:
            return None  # too few events seen in both to be sure
        lag = float(lags[best])
        if 0 < best < r.size - 1:
            left, right = float(r[best - 1]), float(r[best + 1])
            curve = left - 2.0 * peak + right
            if curve < 0:
                lag += _GRID_S * 0.5 * (left - right) / curve
        return lag * 1000.0, peak

    def _feed(self, horizon_s: float, window_end_s: float, *, stream_ended: bool) -> None:
        """Hand the measurements up to `horizon_s` to the run tracker, in time order."""
        st, o = self.state, self.options
        order = {"test_signal": 0, "content": 1, "timestamps": 2}
        st.pending.sort(key=lambda m: (m.t_s, order[m.mode]))
        ready = [m for m in st.pending if m.t_s <= horizon_s + _EPS]
        st.pending = [m for m in st.pending if m.t_s > horizon_s + _EPS]
        for m in ready:
            if st.last_measure_s is not None:
                gap = m.t_s - st.last_measure_s
                if gap > o.max_gap_s:
                    self._close(st.last_measure_s + st.hold_s)
                elif gap > 0:
                    st.hold_s = gap
            if m.offset_ms < -o.early_limit_ms or m.offset_ms > o.late_limit_ms:
                start = m.t_s
                stream_start = self._stream_start()
                if st.measurements == 0 and stream_start is not None and m.from_s - stream_start <= o.max_gap_s:
                    start = stream_start
                self._active(start, m.t_s, m)
            else:
                self._close(m.t_s)
            st.last_measure_s, st.last_reach_s = m.t_s, m.to_s
            st.measurements += 1
            self.offsets.append(m.offset_ms)
        if st.last_measure_s is None or st.last_reach_s is None:
            return
        # With nothing measured for max_gap_s the last measurement's time is up; at the stream's
        # end, a run still covered by its last measurement ends with the stream.
        if (horizon_s - st.last_measure_s if not stream_ended else window_end_s - st.last_reach_s) > o.max_gap_s:
            self._close(st.last_measure_s + st.hold_s)

    def _timestamps(self, window_end_s: float) -> None:
        """At the stream's end, with nothing measured from content: is the audio track shifted as a whole?"""
        st, o = self.state, self.options
        if st.measurements or None in (st.first_video_s, st.first_audio_s, st.video_end_s, st.audio_end_s):
            return
        first_audio, first_video = st.first_audio_s or 0.0, st.first_video_s or 0.0
        start_ms = (first_audio - first_video) * 1000.0
        end_ms = ((st.audio_end_s or 0.0) - (st.video_end_s or 0.0)) * 1000.0
        if abs(start_ms - end_ms) > o.timestamp_agreement_ms:
            return
        offset = (start_ms + end_ms) / 2.0
        if -o.early_limit_ms <= offset <= o.late_limit_ms:
            return
        start = self._stream_start() or 0.0
        whole = Measurement(
            t_s=start, from_s=start, to_s=window_end_s, offset_ms=offset, mode="timestamps", confidence=1.0
        )
        self._active(start, window_end_s, whole)

    def _stream_start(self) -> float | None:
        starts = [t for t in (self.state.first_video_s, self.state.first_audio_s) if t is not None]
        return min(starts) if starts else None

    def _active(self, start_s: float, last_s: float, m: Measurement) -> None:
        st = self.state
        if not self.tracker.is_open:
            st.run_modes, st.run_confidence = {}, 0.0
        self.tracker.active(start_s=start_s, last_s=last_s, values=np.array([m.offset_ms]))
        st.run_modes[m.mode] = st.run_modes.get(m.mode, 0) + 1
        st.run_confidence += m.confidence

    def _details(self) -> dict[str, object]:
        st = self.state
        count = sum(st.run_modes.values())
        if not count:
            return {}
        mode = max(st.run_modes, key=lambda k: st.run_modes[k])
        return {"mode": mode, "confidence": round(st.run_confidence / count, 3), "measurements": count}

    def _close(self, at_s: float) -> None:
        if not self.tracker.is_open:
            return
        details, before = self._details(), len(self.tracker.events)
        self.tracker.inactive(at_s)
        for event in self.tracker.events[before:]:
            event.defect.details.update(details)
        self.state.run_modes, self.state.run_confidence = {}, 0.0

    def close_window(self) -> None:
        span, o = self.context.span, self.options
        ended = span.is_last
        if ended:
            self._end_audio_segment()
        pair_horizon = math.inf if ended else span.end_s - 2.0 * self.lag_s - _MARGIN_S
        self._pair(pair_horizon)
        horizon = pair_horizon
        if o.content:
            content_horizon = span.end_s - max(self.lag_s + _SEARCH_BEYOND_S, 2.0 * self.lag_s) - _MARGIN_S
            self._estimate_content(content_horizon)
            if not ended:
                horizon = min(horizon, content_horizon - o.content_span_s / 2)
        self._feed(horizon, span.end_s, stream_ended=ended)
        if ended and o.timestamps:
            self._timestamps(span.end_s)
        self._save(horizon)
        self.closed_before = len(self.tracker.events)  # the events the run's closing adds come after

    def window_events(self, events: list[DefectEvent]) -> list[DefectEvent]:
        """The open run's details on the events its closing for the window added."""
        details = self._details()
        for event in events[self.closed_before :]:
            event.defect.details.update(details)
        if not self.tracker.is_open:
            self.state.run_modes, self.state.run_confidence = {}, 0.0
        return events

    def measures(self) -> dict[str, float]:
        return {"av_sync_offset_ms": float(np.mean(self.offsets))} if self.offsets else {}

    def _save(self, horizon_s: float) -> None:
        """Trim the envelopes to what the next content estimates need and put them in the state."""
        st, o = self.state, self.options
        st.partial = self.partial.tolist()
        st.peaks, st.rise = self.peaks.tolist(), self.rise.tolist()
        st.bin_energy = self.bin_energy.tolist()
        if o.content and st.next_content is not None and math.isfinite(horizon_s):
            # As `_correlate` will ask for them, with a step to spare.
            visual_from = round((st.next_content * o.content_step_s - o.content_span_s) / _GRID_S)
            smoothing = round(st.frame_period_s / _GRID_S / 2) + 1
            reach = round((self.lag_s + _SEARCH_BEYOND_S) / _GRID_S)
            self.visual, st.visual_first = _trim(self.visual, st.visual_first, visual_from - smoothing)
            self.onsets, st.onsets_first = _trim(self.onsets, st.onsets_first, visual_from - reach - smoothing)
        elif not math.isfinite(horizon_s):  # the stream has ended
            self.visual, self.onsets = self.visual[:0], self.onsets[:0]
        st.visual, st.onsets = self.visual.tolist(), self.onsets.tolist()


def _trim(values: np.ndarray, first: int, keep_from: int) -> tuple[np.ndarray, int]:
    drop = min(max(keep_from - first, 0), values.size)
    return values[drop:], first + drop


def _window(values: np.ndarray, first: int, start_bin: int | None, lo: int, hi: int) -> np.ndarray | None:
    """Grid steps [lo, hi) of an envelope kept from `first`; before the track's start counts as nothing happening."""
    if start_bin is None or hi > first + values.size:
        return None
    if lo >= first:
        return values[lo - first : hi - first]
    if first != start_bin:
        return None  # trimmed away: should not happen
    return np.concatenate((np.zeros(first - lo, dtype=values.dtype), values[: hi - first]))
