"""Audio cut into short blocks of equal length, for the detectors that judge each channel (or a
pair of channels) a block at a time rather than a sample at a time.

A window's chunks follow one another: a block may span two of them. Blocks lie on a grid of the
stream's timeline (0 s on it), as the loudness detector's do, so where windows begin moves no
block but the two it cuts short at a window's edges; windows in a row and self-contained
windows cut the same blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import AudioChunk


@dataclass(frozen=True)
class Blocks:
    """`samples` is (channels, blocks, n): block i starts at `times[i]` and lasts `durations[i]`."""

    times: np.ndarray
    durations: np.ndarray
    samples: np.ndarray
    channels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.times)


class BlockCutter:
    """Cuts consecutive chunks into blocks of `block_s`; what is left over waits for the next chunk
    (or `flush`, at the window's end, when it becomes one shorter block)."""

    def __init__(self, block_s: float) -> None:
        self.block_s = block_s
        self.rest: AudioChunk | None = None

    def add(self, chunk: AudioChunk) -> list[Blocks]:
        out: list[Blocks] = []
        if chunk.samples.shape[1] == 0:
            return out
        rest = self.rest
        if rest is not None and _continues(rest, chunk):
            chunk = AudioChunk(
                start_s=rest.start_s, sample_rate=chunk.sample_rate, track=chunk.track, channels=chunk.channels,
                samples=np.concatenate([rest.samples, chunk.samples], axis=1),
            )
        elif rest is not None:
            out += self.flush()  # a gap or a change of format: the part before is a block of its own
        rate, size = chunk.sample_rate, max(1, round(self.block_s * chunk.sample_rate))
        head = -round(chunk.start_s * rate) % size  # samples before the grid's next block starts
        if head >= chunk.samples.shape[1]:
            self.rest = chunk
            return out
        if head:
            out.append(_blocks(chunk, 0, 1, head))
        whole = (chunk.samples.shape[1] - head) // size
        if whole:
            out.append(_blocks(chunk, head, whole, size))
        left = head + whole * size
        self.rest = None
        if left < chunk.samples.shape[1]:
            self.rest = AudioChunk(
                start_s=chunk.start_s + left / rate, sample_rate=rate, samples=chunk.samples[:, left:],
                track=chunk.track, channels=chunk.channels,
            )
        return out

    def flush(self) -> list[Blocks]:
        rest, self.rest = self.rest, None
        if rest is None or rest.samples.shape[1] == 0:
            return []
        n = rest.samples.shape[1]
        return [Blocks(np.array([rest.start_s]), np.array([n / rest.sample_rate]), rest.samples[:, None, :], rest.channels)]


def _blocks(chunk: AudioChunk, first: int, count: int, size: int) -> Blocks:
    """`count` blocks of `size` samples of `chunk`, from sample `first`."""
    rate = chunk.sample_rate
    samples = chunk.samples[:, first : first + count * size].reshape(chunk.samples.shape[0], count, size)
    times = chunk.start_s + (first + np.arange(count) * size) / rate
    return Blocks(times, np.full(count, size / rate), samples, chunk.channels)


def _continues(before: AudioChunk, after: AudioChunk) -> bool:
    end = before.start_s + before.samples.shape[1] / before.sample_rate
    return (
        before.sample_rate == after.sample_rate
        and before.samples.shape[0] == after.samples.shape[0]
        and before.channels == after.channels
        and abs(after.start_s - end) <= 1.5 / after.sample_rate
    )


class JudgedInBlocks:
    """A detector that judges its audio a block at a time (`_judge`), on the blocks of the cutter
    its `open_window` sets: fed chunk by chunk, the window's short last block at its close."""

    cutter: BlockCutter

    def feed_audio(self, chunk: AudioChunk) -> None:
        for blocks in self.cutter.add(chunk):
            self._judge(blocks)

    def close_window(self) -> None:
        for blocks in self.cutter.flush():
            self._judge(blocks)

    def _judge(self, blocks: Blocks) -> None:
        raise NotImplementedError
