"""EBU R128 integrated loudness from a histogram of momentary blocks: pure Python, so the
workflow can merge the windows' histograms (windows analysed in parallel) and compute the
stream's figure without numpy. The loudness detector fills the histograms."""

from __future__ import annotations

import math

from .contracts import Gating

HIST_LOW_LUFS = -70.0  # the absolute gate
HIST_STEP_LU = 0.1
RELATIVE_GATE_LU = -10.0


def lufs_to_energy(lufs: float) -> float:
    return 10.0 ** ((lufs + 0.691) / 10.0)


def energy_to_lufs(energy: float) -> float:
    return -0.691 + 10.0 * math.log10(max(energy, 1e-12))


def merge(total: Gating, more: Gating | None) -> Gating:
    """`total` with `more`'s counts added (a new object; the bins cover both)."""
    if more is None or not more.counts:
        return total
    if not total.counts:
        return more.model_copy(deep=True)
    low = min(total.first_bin, more.first_bin)
    high = max(total.first_bin + len(total.counts), more.first_bin + len(more.counts))
    counts = [0] * (high - low)
    for g in (total, more):
        for i, c in enumerate(g.counts):
            counts[g.first_bin - low + i] += c
    return Gating(first_bin=low, counts=counts)


def integrated_lufs(counts: list[int], *, first_bin: int = 0) -> float | None:
    """Gated integrated loudness (BS.1770-4); None if every block is gated out.

    Each bin's blocks count at the bin's centre, as in libebur128's histogram mode:
    at most 0.05 LU off.
    """
    total = sum(counts)
    if not total:
        return None
    energies = [lufs_to_energy(HIST_LOW_LUFS + (first_bin + i + 0.5) * HIST_STEP_LU) for i in range(len(counts))]
    gate = energy_to_lufs(sum(c * e for c, e in zip(counts, energies)) / total) + RELATIVE_GATE_LU
    threshold = lufs_to_energy(gate)
    kept = [(c, e) for c, e in zip(counts, energies) if e > threshold and c]
    if not kept:
        return None
    return energy_to_lufs(sum(c * e for c, e in kept) / sum(c for c, _ in kept))
