"""Clipped audio: runs of samples at full scale, dense enough to hear.

A sample is clipped when it belongs to a run of at least `min_run_samples`
consecutive samples of one sign at or above `level_db` on one channel (the
flat tops a clipped waveform leaves; Audacity's Find Clipping uses 3). A lone
full-scale peak is not a clip. The level sits a little under full scale because
most streams are lossy-coded: a clipped flat top comes out of an AAC decoder as
a ripple some tenths of a dB under 0 dBFS, never as a run of equal samples;
set level_db near 0 for PCM sources to count only samples truly at full scale.

The defect (CONTRACT: "samples at full scale in runs, >= 0.1 s within 1 s") is
present while the clipped instants (a sample time counts once, however many
channels clip there) in the `span_s` ending at any block (a hundredth of the
span: 10 ms) add up to `min_clipped_s`. It runs from the first clipped sample
of the first such span to the last clipped sample of the last one; the value
is the fraction of sample times clipped over it.

Between windows the detector carries the few samples whose run is still
undecided, the run each channel is in, and the clipped blocks of the last span,
so events do not depend on window boundaries.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from .base import AudioChunk, AudioStreamState, Detector, DetectorOptions, db_to_amplitude
from .models import Decibels
from .runs import RunState, find_runs

_SPAN_BLOCKS = 100  # the span is counted in blocks of a hundredth of it: 10 ms for 1 s


class ClippingOptions(DetectorOptions):
    level_db: Decibels = Field(
        -0.9,
        description="a sample at or above this magnitude (dBFS) counts as full scale: under the ripple a lossy codec "
        "leaves on clipped flat tops (AAC's sit 0.3-0.7 dB down), over the -1 dBTP ceiling of R128 masters",
    )
    min_run_samples: int = Field(
        3, ge=1, le=64, description="consecutive full-scale samples of one sign, on one channel, that make a clip"
    )
    min_clipped_s: float = Field(0.1, gt=0, description="clipped time within span_s that makes a defect (s)")
    span_s: float = Field(1.0, gt=0, le=60, description="the sliding span min_clipped_s is counted over (s)")

    @model_validator(mode="after")
    def _check_span(self) -> ClippingOptions:
        if self.min_clipped_s > self.span_s:
            raise ValueError("min_clipped_s cannot exceed span_s")
        return self


class ClippingState(AudioStreamState):
    held: list[list[float]] = Field(
        default_factory=list, description="per channel: the last samples, whose run may go on in the next chunk"
    )
    run_sign: list[int] = Field(default_factory=list, description="per channel: sign of the run before `held`")
    run_length: list[int] = Field(default_factory=list, description="per channel: its length, capped at the minimum")
    blocks_done: int = Field(0, description="complete blocks since the count (re)started")
    last_block_end_s: float = Field(0.0, description="end time of the last complete block")
    block_fill: int = Field(0, description="decided samples in the current block")
    block_count: int = Field(0, description="clipped instants in the current block")
    block_first_s: float = 0.0
    block_last_s: float = 0.0
    recent: list[tuple[int, int, int]] = Field(
        default_factory=list,
        description="(block, clipped instants, offset of its first clipped sample) for each block with clipping "
        "among the last 99, oldest first",
    )
    pending_blocks: int = Field(
        0, description="blocks after the event's last clipped one; part of it only if clipping resumes"
    )
    last_event_end_s: float | None = Field(None, description="end of the last event closed; the next starts after it")
    run: RunState = Field(default_factory=RunState)


class ClippingDetector(Detector[ClippingOptions, ClippingState]):
    name = "clipping"
    track = "audio"
    runs = ("run",)

    def open_window(self) -> None:
        self.level = db_to_amplitude(self.options.level_db)
        self.samples = 0
        self.clipped_samples = 0
        self.clipped_instants = 0

    @property
    def _block_length(self) -> int:
        return max(1, round(self.state.sample_rate * self.options.span_s / _SPAN_BLOCKS))

    def feed_audio(self, chunk: AudioChunk) -> None:
        channels, n = chunk.samples.shape
        if n == 0:
            return
        st = self.state
        if not st.continues(chunk):
            self._settle()
            self._restart(chunk)
        held = np.asarray(st.held, dtype=np.float32).reshape(channels, -1)
        start_s = chunk.start_s - held.shape[1] / chunk.sample_rate
        st.next_sample_s = chunk.start_s + n / chunk.sample_rate
        self.samples += n
        self._decide(np.concatenate((held, chunk.samples), axis=1), start_s=start_s, final=False)

    def _restart(self, chunk: AudioChunk) -> None:
        st = self.state
        channels = chunk.samples.shape[0]
        st.restart(chunk)
        st.held = [[] for _ in range(channels)]
        st.run_sign, st.run_length = [0] * channels, [0] * channels
        st.blocks_done, st.block_fill, st.block_count = 0, 0, 0
        st.last_block_end_s = chunk.start_s
        st.recent, st.pending_blocks = [], 0

    def _settle(self) -> None:
        """Decide the held samples and count the partial block: nothing more follows them."""
        st = self.state
        if not st.sample_rate or st.next_sample_s is None:
            return
        held = np.asarray(st.held, dtype=np.float32).reshape(st.channels, -1)
        if held.shape[1]:
            self._decide(held, start_s=st.next_sample_s - held.shape[1] / st.sample_rate, final=True)
        if st.block_fill:
            self._blocks(
                counts=np.array([st.block_count]),
                first_s=np.array([st.block_first_s if st.block_count else np.nan]),
                last_s=np.array([st.block_last_s if st.block_count else np.nan]),
                lengths=np.array([st.block_fill]),
                end_s=st.next_sample_s,
            )
            st.block_fill = st.block_count = 0

    def _decide(self, x: np.ndarray, *, start_s: float, final: bool) -> None:
        """Mark clipped samples of `x` (channels, n); unless `final`, the last few wait for the next chunk."""
        st = self.state
        m = self.options.min_run_samples
        channels, n = x.shape
        decided = n if final else n - min(m - 1, n)
        if decided <= 0:
            st.held = x.tolist()
            return
        extreme = (np.sign(x) * (np.abs(x) >= self.level)).astype(np.int8)
        clipped = np.zeros((channels, decided), dtype=bool)
        for c in range(channels):
            clipped[c], st.run_sign[c], st.run_length[c] = _clipped_runs(
                extreme[c], decided=decided, prior_sign=st.run_sign[c], prior_length=st.run_length[c], min_run=m
            )
        st.held = x[:, decided:].tolist()
        self.clipped_samples += int(clipped.sum())
        instants = clipped.any(axis=0)
        self.clipped_instants += int(instants.sum())
        self._count(instants, start_s=start_s)

    def _count(self, instants: np.ndarray, *, start_s: float) -> None:
        """Add decided sample instants (True where clipped) to the blocks."""
        st = self.state
        rate, length = st.sample_rate, self._block_length
        n = instants.size
        ends = np.arange(length - st.block_fill, n + 1, length)
        where = np.flatnonzero(instants)
        times = start_s + where / rate
        block_of = np.searchsorted(ends, where, side="right")  # block ends.size: the one left partial
        blocks = ends.size + 1
        counts = np.bincount(block_of, minlength=blocks)
        first_s = np.full(blocks, np.nan)
        last_s = np.full(blocks, np.nan)
        present = np.unique(block_of)  # `block_of` is sorted: each block's first and last clipped instant
        first_s[present] = times[np.searchsorted(block_of, present, side="left")]
        last_s[present] = times[np.searchsorted(block_of, present, side="right") - 1] + 1.0 / rate
        if st.block_count:
            first_s[0] = st.block_first_s
            if counts[0] == 0:
                last_s[0] = st.block_last_s
            counts[0] += st.block_count
        if ends.size:
            self._blocks(
                counts=counts[:-1],
                first_s=first_s[:-1],
                last_s=last_s[:-1],
                lengths=np.full(ends.size, length),
                end_s=start_s + ends[-1] / rate,
            )
            st.block_fill = n - int(ends[-1])
        else:
            st.block_fill += n
        st.block_count = int(counts[-1])
        if st.block_count:
            st.block_first_s, st.block_last_s = float(first_s[-1]), float(last_s[-1])

    def _blocks(
        self, *, counts: np.ndarray, first_s: np.ndarray, last_s: np.ndarray, lengths: np.ndarray, end_s: float
    ) -> None:
        """Judge complete blocks: clipped instants, first and last clipped time, samples; the last ends at `end_s`."""
        st = self.state
        rate, length = st.sample_rate, self._block_length
        before = _SPAN_BLOCKS - 1
        oldest = st.blocks_done - before  # block number of the first of the `before` earlier blocks
        all_counts = np.concatenate((np.zeros(before, dtype=np.int64), counts))
        all_first = np.concatenate((np.full(before, np.nan), first_s))
        all_last = np.concatenate((np.full(before, np.nan), last_s))
        all_lengths = np.concatenate((np.full(before, length), lengths))
        for block, count, offset in st.recent:
            if block >= oldest:
                i = block - oldest
                block_start = st.last_block_end_s - (st.blocks_done - block) * length / rate
                all_counts[i] = count
                all_first[i] = block_start + offset / rate
                all_last[i] = block_start + length / rate  # only the newest clipped block's is ever needed
        running = np.concatenate(([0], np.cumsum(all_counts)))
        new = np.arange(before, before + counts.size)
        in_span = running[new + 1] - running[new + 1 - _SPAN_BLOCKS]
        dense = in_span >= self.options.min_clipped_s * rate

        fractions = all_counts / all_lengths
        starts, stops = find_runs(dense)
        if self.tracker.is_open and (starts.size == 0 or starts[0] != 0):
            self._close()
        for a, b in zip(starts.tolist(), stops.tolist()):
            first_block = int(new[a])
            if not self.tracker.is_open:
                # The event begins with the first clipped sample of the span that made
                # it, though not inside the previous event.
                lowest = first_block - _SPAN_BLOCKS + 1
                after = -np.inf if st.last_event_end_s is None else st.last_event_end_s
                window = slice(lowest, first_block + 1)
                candidates = lowest + np.flatnonzero((all_counts[window] > 0) & (all_first[window] >= after))
                first_block = int(candidates[0]) if candidates.size else first_block
            run_blocks = np.arange(first_block, new[b - 1] + 1)
            clipped_blocks = run_blocks[all_counts[run_blocks] > 0]
            if clipped_blocks.size:
                last_block = int(clipped_blocks[-1])
                values = np.concatenate((np.zeros(st.pending_blocks), fractions[first_block : last_block + 1]))
                start = float(all_first[first_block]) if not self.tracker.is_open else 0.0
                self.tracker.active(start_s=start, last_s=float(all_last[last_block]), values=values)
                st.pending_blocks = int(new[b - 1] - last_block)
            else:
                st.pending_blocks += int(run_blocks.size)
            if b < counts.size:
                self._close()

        st.blocks_done += counts.size
        st.last_block_end_s = end_s
        kept = np.arange(all_counts.size - before, all_counts.size)
        kept = kept[all_counts[kept] > 0]
        block_start = end_s - (all_counts.size - kept) * length / rate
        st.recent = [
            (int(oldest + i), int(all_counts[i]), round((all_first[i] - start) * rate))
            for i, start in zip(kept.tolist(), block_start.tolist())
        ]

    def _close(self) -> None:
        """The span no longer holds enough clipping: the event ends with its last clipped sample."""
        st = self.state
        if st.run.last_active_s is not None:
            st.last_event_end_s = st.run.last_active_s
        self.tracker.inactive(float(st.run.last_active_s or 0.0))
        st.pending_blocks = 0

    def close_window(self) -> None:
        if self.context.span.is_last:
            self._settle()
            if self.tracker.is_open:
                self._close()  # at its last clipped sample, which may be the stream's last

    def measures(self) -> dict[str, float]:
        if not self.samples:
            return {}
        return {
            "audio_clipped_samples": float(self.clipped_samples),
            "audio_clipped_ratio": self.clipped_instants / self.samples,
        }

def _clipped_runs(
    extreme: np.ndarray, *, decided: int, prior_sign: int, prior_length: int, min_run: int
) -> tuple[np.ndarray, int, int]:
    """Clipped samples among the first `decided` of one channel, and the run in progress after them.

    `extreme` is +1/-1 where a sample is at full scale (by sign), else 0; the
    run before it had `prior_sign` and `prior_length` (capped at `min_run`).
    Samples after `decided` only lengthen runs: every decided sample's run is
    either closed or already long enough.
    """
    n = extreme.size
    change = np.flatnonzero(np.diff(extreme)) + 1
    run_starts = np.concatenate(([0], change))
    run_lengths = np.diff(np.concatenate((run_starts, [n])))
    if prior_sign and extreme[0] == prior_sign:
        run_lengths[0] += prior_length
    long_enough = (run_lengths >= min_run) & (extreme[run_starts] != 0)
    clipped = np.repeat(long_enough, np.diff(np.concatenate((run_starts, [n]))))[:decided]
    last = decided - 1
    sign = int(extreme[last])
    if sign == 0:
        return clipped, 0, 0
    run = int(np.searchsorted(run_starts, last, side="right")) - 1
    length = last - int(run_starts[run]) + 1 + (prior_length if run == 0 and extreme[0] == prior_sign else 0)
    return clipped, sign, min(length, min_run)
