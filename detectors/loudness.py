"""Loudness out of range: EBU R128 short-term loudness too high or too low for long enough.

Measured as ITU-R BS.1770-4 prescribes, the way libebur128 and FFmpeg's ebur128
filter do: K-weighting (a high shelf and a high pass, designed for the stream's
own sample rate), mean square per 100 ms block, channel weights (1.41 for the
surrounds of 5.1, LFE left out), momentary loudness over 400 ms and short-term
over 3 s. Integrated loudness is gated (-70 LUFS absolute, -10 LU relative)
over a histogram of momentary blocks, so the whole stream's figure needs only
a few hundred counts of state.

Whether loudness is out of range is decided on short-term loudness; where an
event starts and ends is placed with the momentary loudness inside the 3 s that
decided it, so a step in level is found within a few tenths of a second where
short-term loudness alone would be up to 3 s off. Too loud and too quiet are
separate events (details: direction, limit_lufs); short-term loudness below
`ignore_below_lufs` is neither (near-silence is the silence detector's to
report). The value is the mean short-term loudness over the event, in LUFS.

The filters' state, the last 3.2 s of block energies and the histogram travel
between windows (about 3 KiB), so the figures do not depend on where windows
begin; a jump of more than 0.1 s in sample times restarts the meter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from pydantic import Field, model_validator

from vqa.contracts import DefectEvent, Gating
from vqa.gating import HIST_LOW_LUFS, HIST_STEP_LU, integrated_lufs

from .base import AudioChunk, AudioStreamState, Detector, DetectorOptions
from .models import Decibels, Seconds
from .runs import RunState, RunTracker, find_runs

_BLOCKS_PER_S = 10  # 100 ms blocks: the step of momentary and short-term loudness and of the gating
_MOMENTARY_BLOCKS = 4  # 400 ms
_SHORT_TERM_BLOCKS = 30  # 3 s
_FLOOR_ENERGY = 1e-12  # digital silence reads -120.7 LUFS, as in FFmpeg's ebur128 log

_HIST_HIGH_LUFS = 10.0  # the histogram's top bin (vqa/gating.py defines its bins)
_HIST_BINS = round((_HIST_HIGH_LUFS - HIST_LOW_LUFS) / HIST_STEP_LU)

_MOMENTARY_S = _MOMENTARY_BLOCKS / _BLOCKS_PER_S
_SHORT_TERM_S = _SHORT_TERM_BLOCKS / _BLOCKS_PER_S
# Blocks kept between windows: a short-term value's 30 blocks, less the newest,
# plus the 3 before them that the momentary value of its oldest block needs.
_KEPT_BLOCKS = _SHORT_TERM_BLOCKS - 1 + _MOMENTARY_BLOCKS - 1
_FILTER_BLOCK = 128


class LoudnessOptions(DetectorOptions):
    min_duration_s: Seconds = Field(10.0, description="shortest out-of-range stretch reported (s)")
    max_lufs: Decibels = Field(
        -10.0,
        description="short-term loudness above this is too loud; 13 LU over the EBU R128 target and 4 LU over "
        "the loudest streaming targets (-14 LUFS)",
    )
    min_lufs: Decibels = Field(
        -40.0, description="short-term loudness below this is too quiet; 17 LU under the EBU R128 target (-23 LUFS)"
    )
    ignore_below_lufs: Decibels = Field(
        -60.0, description="short-term loudness below this is near-silence, left to the silence detector"
    )

    @model_validator(mode="after")
    def _check_order(self) -> LoudnessOptions:
        if not self.ignore_below_lufs < self.min_lufs < self.max_lufs:
            raise ValueError("need ignore_below_lufs < min_lufs < max_lufs")
        return self


class LoudnessState(AudioStreamState):
    measuring_since_s: float | None = Field(None, description="start of the current unbroken measurement")
    filter_state: list[list[float]] = Field(
        default_factory=list, description="per channel: the two K-weighting biquads' z-state (DF2T), 4 numbers"
    )
    blocks_done: int = Field(0, description="complete 100 ms blocks since the measurement started")
    block_fill: int = Field(0, description="samples already in the current 100 ms block")
    block_sums: list[float] = Field(default_factory=list, description="per channel: sum of squares in that block")
    recent_energies: list[float] = Field(
        default_factory=list, description="channel-weighted mean squares of the last 32 complete blocks, oldest first"
    )
    histogram_first_bin: int = Field(0, description="bin of histogram[0]; bin i spans -70 + 0.1 i LUFS and 0.1 LU")
    histogram: list[int] = Field(default_factory=list, description="momentary blocks above -70 LUFS counted per bin")
    too_loud: RunState = Field(default_factory=RunState)
    too_quiet: RunState = Field(default_factory=RunState)


def _energy_to_lufs(energy: np.ndarray | float) -> np.ndarray:
    return -0.691 + 10.0 * np.log10(np.maximum(energy, _FLOOR_ENERGY))


def k_weighting(sample_rate: int) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """The two BS.1770 biquads (b, a) for any sample rate, by the bilinear-transform
    design libebur128 uses; at 48 kHz they are the coefficients printed in BS.1770."""
    # Stage 1: high shelf, +4 dB above about 1.7 kHz (the head's acoustic effect).
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf_b = ((vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0)
    shelf_a = (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0)
    # Stage 2: the RLB high pass at about 38 Hz.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    highpass_b = (1.0, -2.0, 1.0)
    highpass_a = (1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0)
    return [(shelf_b, shelf_a), (highpass_b, highpass_a)]


def channel_weights(channels: int) -> np.ndarray:
    """BS.1770 weights in FFmpeg's channel order: 1.0 for the front, 1.41 for the surrounds, LFE left out.

    Six channels are 5.1 (L R C LFE Ls Rs), eight are 7.1 (L R C LFE Lb Rb Ls Rs);
    any other count is taken as front channels only (mono, stereo: all 1.0).
    """
    if channels == 6:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41])
    if channels == 8:
        return np.array([1.0, 1.0, 1.0, 0.0, 1.41, 1.41, 1.41, 1.41])
    return np.ones(channels)


class _Biquad:
    """A biquad evaluated exactly, a block of samples at a time, with numpy.

    Within a block of L samples the output is a matrix product: the zero-state
    response (a lower-triangular Toeplitz matrix of the impulse response) plus
    the response to the state at the block's start. Only the 2-number state is
    carried from block to block, which is the one Python-level loop (one step
    per L samples). The state is lfilter's direct form II transposed `zi`.
    """

    def __init__(self, b: tuple[float, float, float], a: tuple[float, float, float], block: int) -> None:
        b0, b1, b2 = b
        _, a1, a2 = a
        transition = np.array([[-a1, 1.0], [-a2, 0.0]])
        drive = np.array([b1 - a1 * b0, b2 - a2 * b0])
        powers = np.empty((block + 1, 2, 2))  # transition**n, n = 0..block
        powers[0] = np.eye(2)
        for n in range(1, block + 1):
            powers[n] = powers[n - 1] @ transition
        self.block = block
        self.powers = powers
        self.from_state = powers[:block, 0, :].T.copy()  # (2, L): output n depends on state via row 0 of A^n
        driven = powers[:block] @ drive  # (L, 2): A^m B
        impulse = np.concatenate(([b0], driven[: block - 1, 0]))
        lag = np.arange(block)[:, None] - np.arange(block)[None, :]
        self.zero_state = np.where(lag >= 0, impulse[np.clip(lag, 0, None)], 0.0).T.copy()  # (L, L), x @ it
        self.to_state = driven[::-1].copy()  # (L, 2): input k reaches the end state through A^(L-1-k) B

    def __call__(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Filter `x` (channels, n) from `state` (channels, 2); returns the output and the new state."""
        L = self.block
        channels, n = x.shape
        full = n - n % L
        y = np.empty_like(x)
        if full:
            count = full // L
            blocks = x[:, :full].reshape(channels * count, L)  # one matrix product for all channels
            out = blocks @ self.zero_state
            inputs = (blocks @ self.to_state).reshape(channels, count, 2)
            starts = np.empty_like(inputs)
            step = self.powers[L].T
            for i in range(count):
                starts[:, i] = state
                state = state @ step + inputs[:, i]
            out += starts.reshape(channels * count, 2) @ self.from_state
            y[:, :full] = out.reshape(channels, full)
        r = n - full
        if r:
            tail = x[:, full:]
            y[:, full:] = tail @ self.zero_state[:r, :r] + state @ self.from_state[:, :r]
            state = state @ self.powers[r].T + tail @ self.to_state[L - r :]
        return y, state


@lru_cache(maxsize=8)
def _filters(sample_rate: int) -> tuple[_Biquad, _Biquad]:
    (b1, a1), (b2, a2) = k_weighting(sample_rate)
    return _Biquad(b1, a1, _FILTER_BLOCK), _Biquad(b2, a2, _FILTER_BLOCK)


@dataclass(frozen=True)
class _History:
    """Recent and new 100 ms blocks of one measurement: energy, count since its start, end time."""

    energies: np.ndarray
    done: np.ndarray
    ends_s: np.ndarray

    def _mean(self, blocks: int) -> np.ndarray:
        """Loudness over the `blocks` blocks that end at each block (-inf where history is short)."""
        running = np.concatenate(([0.0], np.cumsum(self.energies)))
        end = np.arange(1, self.energies.size + 1)
        mean = (running[end] - running[np.maximum(end - blocks, 0)]) / blocks
        lufs = _energy_to_lufs(mean)
        lufs[(end < blocks) | (self.done < blocks)] = -np.inf
        return lufs

    @cached_property
    def momentary(self) -> np.ndarray:
        return self._mean(_MOMENTARY_BLOCKS)

    def short_term(self, at: np.ndarray) -> np.ndarray:
        return self._mean(_SHORT_TERM_BLOCKS)[at]

    def edge(self, at: int, momentary_out: np.ndarray, *, entering: bool, since_s: float | None) -> float:
        """Where the condition began (`entering`) or ended, judged from the short-term value at block `at`.

        It is the first block of the stretch of momentary values, inside that
        value's 3 s, that agree with the short-term verdict up to block `at`,
        placed at the centre of its 400 ms. Where the momentary value at `at`
        disagrees, the short-term value's own centre is used.
        """
        agree = momentary_out if entering else ~momentary_out
        valid = self.done >= _MOMENTARY_BLOCKS
        first = at
        lowest = max(at - _SHORT_TERM_BLOCKS + 1, 0)
        if not (agree[at] and valid[at]):
            return float(self.ends_s[at]) - _SHORT_TERM_S / 2
        while first > lowest and agree[first - 1] and valid[first - 1]:
            first -= 1
        if since_s is not None and self.done[first] == _MOMENTARY_BLOCKS:
            return since_s  # out of range since the measurement began
        return float(self.ends_s[first]) - _MOMENTARY_S / 2


class LoudnessDetector(Detector[LoudnessOptions, LoudnessState]):
    name = "loudness"
    track = "audio"
    runs = ("too_loud", "too_quiet")
    # A self-contained window hears the 4 s before it first: the filters settle, and its first
    # short-term values (3 s) and the runs they open are those of windows analysed in a row.
    audio_warm_up_s = 4.0

    def open_window(self) -> None:
        self.warming = False
        self.window_bins: list[np.ndarray] = []  # this window's gated momentary blocks, by bin
        self.momentary_max = -math.inf
        self.short_term_max = -math.inf
        self.short_term_min = math.inf

    def feed_audio(self, chunk: AudioChunk) -> None:
        if chunk.warm_up and not self.warming:
            chunk = self._on_grid(chunk)
        elif self.warming and not chunk.warm_up:
            self._warmed(chunk.start_s)
        self.warming = chunk.warm_up
        channels, n = chunk.samples.shape
        if n == 0:
            return
        st = self.state
        rate = chunk.sample_rate
        if not st.continues(chunk):
            self._restart(chunk)
        st.next_sample_s = chunk.start_s + n / rate

        shelf, highpass = _filters(rate)
        z = np.asarray(st.filter_state, dtype=np.float64)
        x = chunk.samples.astype(np.float64)
        x, z_shelf = shelf(x, z[:, :2])
        x, z_highpass = highpass(x, z[:, 2:])
        st.filter_state = np.concatenate([z_shelf, z_highpass], axis=1).tolist()
        square = np.square(x)

        # 100 ms blocks on the measurement's own sample count: block k ends at
        # sample floor(k * rate / 10), exact for any rate.
        origin = (st.blocks_done * rate) // _BLOCKS_PER_S  # first sample of the current block
        first = origin + st.block_fill  # this chunk's first sample, counted from the measurement's start
        ends_k = np.arange(st.blocks_done + 1, st.blocks_done + 3 + (n * _BLOCKS_PER_S) // rate)
        ends = (ends_k * rate) // _BLOCKS_PER_S - first
        ends = ends[ends <= n]
        if ends.size:
            sums = np.add.reduceat(square[:, : ends[-1]], np.concatenate(([0], ends[:-1])), axis=1)
            sums[:, 0] += np.asarray(st.block_sums)
            lengths = np.diff(np.concatenate(([-st.block_fill], ends)))
            energies = channel_weights(channels) @ (sums / lengths)
            self._blocks(energies, times=chunk.start_s + ends / rate)
            st.block_fill = n - int(ends[-1])
            st.block_sums = square[:, ends[-1] :].sum(axis=1).tolist()
        else:
            st.block_fill += n
            st.block_sums = (np.asarray(st.block_sums) + square.sum(axis=1)).tolist()

    @staticmethod
    def _on_grid(chunk: AudioChunk) -> AudioChunk:
        """The warm-up from its first sample on the 100 ms grid of the stream's timeline (0 s on
        it): its blocks are those of windows analysed in a row from the stream's start."""
        rate = chunk.sample_rate
        first = round(chunk.start_s * rate)
        skip = (-(-first * _BLOCKS_PER_S // rate) * rate) // _BLOCKS_PER_S - first
        return AudioChunk(start_s=chunk.start_s + skip / rate, sample_rate=rate, samples=chunk.samples[:, skip:], warm_up=True)

    def _warmed(self, start_s: float) -> None:
        """The window proper begins at `start_s`: what the warm-up found belongs to the window
        before, but a run still going goes on here from the window's start (the stitch joins it)."""
        for tracker in self.trackers.values():
            tracker.begin_at(start_s)
        self.momentary_max, self.short_term_max, self.short_term_min = -math.inf, -math.inf, math.inf

    def _restart(self, chunk: AudioChunk) -> None:
        """Start measuring afresh: a new stream, a gap in the samples, or a format change."""
        st = self.state
        channels = chunk.samples.shape[0]
        st.restart(chunk)
        st.measuring_since_s = chunk.start_s
        st.filter_state = [[0.0] * 4 for _ in range(channels)]
        st.blocks_done, st.block_fill, st.block_sums = 0, 0, [0.0] * channels
        st.recent_energies = []

    def _blocks(self, energies: np.ndarray, *, times: np.ndarray) -> None:
        """Complete 100 ms blocks (channel-weighted mean squares) that end at `times`."""
        st = self.state
        before = len(st.recent_energies)
        history = _History(
            energies=np.concatenate((st.recent_energies, energies)),
            done=st.blocks_done - before + 1 + np.arange(before + energies.size),
            ends_s=np.concatenate((self._earlier_ends(times[0], before), times)),
        )
        new = np.arange(before, history.energies.size)

        momentary_lufs = history.momentary[new][history.done[new] >= _MOMENTARY_BLOCKS]
        if momentary_lufs.size:
            self.momentary_max = max(self.momentary_max, float(momentary_lufs.max()))
            gated = momentary_lufs[momentary_lufs > HIST_LOW_LUFS]
            bins = np.minimum(((gated - HIST_LOW_LUFS) / HIST_STEP_LU).astype(np.int64), _HIST_BINS - 1)
            self._count_blocks(bins)

        judged = new[history.done[new] >= _SHORT_TERM_BLOCKS]
        if judged.size:
            short_lufs = history.short_term(judged)
            self.short_term_max = max(self.short_term_max, float(short_lufs.max()))
            self.short_term_min = min(self.short_term_min, float(short_lufs.min()))
            o = self.options
            momentary = history.momentary
            audible = short_lufs >= o.ignore_below_lufs
            self._follow(
                self.trackers["too_loud"], history, judged, short_lufs, short_lufs > o.max_lufs, momentary > o.max_lufs
            )
            self._follow(
                self.trackers["too_quiet"],
                history,
                judged,
                short_lufs,
                audible & (short_lufs < o.min_lufs),
                (momentary >= o.ignore_below_lufs) & (momentary < o.min_lufs),
            )

        st.blocks_done += energies.size
        st.recent_energies = history.energies[-_KEPT_BLOCKS:].tolist()

    def _count_blocks(self, bins: np.ndarray) -> None:
        """Add momentary blocks to the histogram, which covers only the bins used so far."""
        if not bins.size or self.warming:
            return
        self.window_bins.append(bins)
        st = self.state
        low, high = int(bins.min()), int(bins.max())
        if st.histogram:
            low, high = min(low, st.histogram_first_bin), max(high, st.histogram_first_bin + len(st.histogram) - 1)
        counts = np.zeros(high - low + 1, dtype=np.int64)
        if st.histogram:
            counts[st.histogram_first_bin - low : st.histogram_first_bin - low + len(st.histogram)] = st.histogram
        counts += np.bincount(bins - low, minlength=counts.size)
        st.histogram_first_bin, st.histogram = low, counts.tolist()

    def _earlier_ends(self, first_end_s: float, count: int) -> np.ndarray:
        """End times of the `count` blocks before the one that ends at `first_end_s`."""
        rate, k = self.state.sample_rate, self.state.blocks_done + 1
        earlier = np.arange(k - count, k)
        boundary = (earlier * rate) // _BLOCKS_PER_S
        return first_end_s - ((k * rate) // _BLOCKS_PER_S - boundary) / rate

    def _follow(
        self,
        tracker: RunTracker,
        history: _History,
        judged: np.ndarray,
        short_lufs: np.ndarray,
        out_of_range: np.ndarray,
        momentary_out: np.ndarray,
    ) -> None:
        """Feed one condition on the short-term values at blocks `judged` to its tracker.

        Whether there is an event is the short-term loudness's call; where it
        starts and ends is refined with the momentary loudness (400 ms) inside
        the 3 s the deciding short-term value covers. Short-term loudness alone
        would place a step late by up to 3 s, the more so the nearer the limit
        is to the louder side of the step.
        """
        starts, stops = find_runs(out_of_range)
        if tracker.is_open and (starts.size == 0 or starts[0] != 0):
            tracker.inactive(history.edge(judged[0], momentary_out, entering=False, since_s=None))
        since_s = self.state.measuring_since_s
        for a, b in zip(starts.tolist(), stops.tolist()):
            tracker.active(
                start_s=history.edge(judged[a], momentary_out, entering=True, since_s=since_s),
                last_s=float(history.ends_s[judged[b - 1]]) - _SHORT_TERM_S / 2,
                values=short_lufs[a:b],
            )
            if b < judged.size:
                tracker.inactive(history.edge(judged[b], momentary_out, entering=False, since_s=None))

    def window_events(self, events: list[DefectEvent]) -> list[DefectEvent]:
        for key, direction, limit in (
            ("too_loud", "above", self.options.max_lufs),
            ("too_quiet", "below", self.options.min_lufs),
        ):
            tracker = self.trackers[key]
            for defect in [e.defect for e in tracker.events] + [f.defect for f in tracker.fragments]:
                defect.details.update(direction=direction, limit_lufs=limit)
        return sorted(events, key=lambda e: e.defect.start_s)

    def close_window(self) -> None:
        if self.warming:  # a warm-up and then nothing of the window's own
            self._warmed(self.context.span.start_s)
            self.warming = False

    def gating(self) -> Gating | None:
        if not self.window_bins:
            return None
        bins = np.concatenate(self.window_bins)
        low = int(bins.min())
        return Gating(first_bin=low, counts=np.bincount(bins - low).tolist())

    def measures(self) -> dict[str, float]:
        measures: dict[str, float] = {}
        integrated = integrated_lufs(self.state.histogram, first_bin=self.state.histogram_first_bin)
        if integrated is not None:
            measures["loudness_integrated_lufs"] = integrated
        if self.momentary_max > -math.inf:
            measures["loudness_momentary_max_lufs"] = self.momentary_max
        if self.short_term_max > -math.inf:
            measures["loudness_shortterm_max_lufs"] = self.short_term_max
            measures["loudness_shortterm_min_lufs"] = self.short_term_min
        return measures
