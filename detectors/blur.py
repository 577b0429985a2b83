"""Blur: loss of sharpness, measured as the width of the picture's edges, no reference.

On `analysed_lines` rows and as many columns the detector finds *edges*: places
where luma rises by at least `min_edge_contrast_levels` over 9 pixels, and
where the rise is localised (over the 4 pixels either side it rises at most
`max_flank_ratio` of that). At each edge, taken where the slope peaks, the
edge's width is its 9-px rise over its steepest 1-px step (Marziliano et al.'s
edge width, read from the slope): 1 px for a hard step, sqrt(2 pi) sigma, about
2.5 sigma, for a step under a Gaussian blur of sigma px.

The score is the width that `edge_percentile` % of the picture's edges are
sharper than. A low percentile looks at the sharpest edges, so a shot with a
soft background and a sharp subject is sharp; a blurred picture has no sharp
edges left. Clean footage scores 2 to 3.5 px, a Gaussian blur of sigma 2 px
about 5 px.

A picture with too few edges (under `min_edge_density` of the analysed
positions) carries no information: black or flat pictures, fades, slates,
smooth featureless shading. Such pictures never start a blur stretch and never
count as sharp: one that is under way survives up to `no_information_hold_s`
of them and, if they go on longer or sharp pictures follow, ends where they
began. Limits: a blur so strong (sigma above about 4 px) that no edge stays
localised reads as no information, not as blur; sensor noise added after the
blur narrows the measured width. Only one frame per `analysis_interval_s` is
analysed.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .base import VideoChunk, take_frames
from .models import Fraction, LumaLevels, Seconds
from .sampling import SampledDetector, SampledOptions, SampledState

_REACH = 9  # an edge is judged over 9 px (4 before its steepest step, 4 after), its flanks 4 px beyond
_BINS_PER_PX = 8
_MAX_WIDTH_PX = 16


class BlurOptions(SampledOptions):
    threshold_px: float = Field(
        4.0, gt=0, le=_MAX_WIDTH_PX, description="a picture is blurred when its edge width is above this"
    )
    min_duration_s: Seconds = Field(2.0, description="shortest blurred stretch reported")
    edge_percentile: float = Field(
        25.0, gt=0, lt=100, description="the picture's edge width is the width this % of its edges are sharper than"
    )
    min_edge_contrast_levels: LumaLevels = Field(24, description="an edge rises at least this much over 9 px")
    max_flank_ratio: Fraction = Field(
        0.15, description="an edge rises at most this fraction of its rise over the 4 px either side"
    )
    min_edge_density: Fraction = Field(
        0.001, description="a picture with fewer edges per analysed position carries no information"
    )
    no_information_hold_s: Seconds = Field(
        1.0, description="a blurred stretch survives pictures without information for this long"
    )
    analysed_lines: int = Field(
        32, ge=4, le=4096, description="about this many rows, and as many columns, evenly spaced, are analysed"
    )


class BlurState(SampledState):
    no_information_since_s: float | None = None


def _edges(lines: np.ndarray, axis: int, options: BlurOptions) -> tuple[np.ndarray, np.ndarray]:
    """Frame index and width of every edge along `axis` of `lines` (frames first, int16)."""
    size = lines.shape[axis]

    def at(offset: int) -> np.ndarray:
        index = [slice(None)] * lines.ndim
        index[axis] = slice(_REACH + offset, size - _REACH + offset)
        return lines[tuple(index)]

    here, before = at(0), at(-1)
    step = here - before
    slope = np.abs(step)
    rise = at(4) - at(-5)
    contrast = np.abs(rise)
    edge = contrast >= options.min_edge_contrast_levels
    edge &= slope >= np.abs(before - at(-2))  # the slope peaks here
    edge &= slope > np.abs(at(1) - here)
    edge &= (step ^ rise) >= 0  # the steepest step goes the way of the rise
    flank_limit = contrast * round(options.max_flank_ratio * 100)
    edge &= np.abs(at(-5) - at(-9)) * 100 <= flank_limit
    edge &= np.abs(at(8) - at(4)) * 100 <= flank_limit
    where = np.flatnonzero(edge)
    per_frame = edge[0].size
    return where // per_frame, contrast.ravel()[where] / slope.ravel()[where]


def edge_widths(
    luma: np.ndarray, options: BlurOptions, frames: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(score, edge density) of each picture of `luma` (frames, height, width), or of those `frames` of it.

    The score is NaN where the picture has too few edges to judge.
    """
    if frames is None:
        frames = np.arange(luma.shape[0])
    n, (_, h, w) = len(frames), luma.shape
    if n == 0 or h <= 2 * _REACH or w <= 2 * _REACH:
        return np.full(n, np.nan), np.zeros(n)
    lines = options.analysed_lines
    row_step, col_step = max(1, (h - 2 * _REACH) // lines), max(1, (w - 2 * _REACH) // lines)
    rows = take_frames(luma, frames, (slice(_REACH, h - _REACH, row_step), slice(None)), np.int16)
    cols = take_frames(luma, frames, (slice(None), slice(_REACH, w - _REACH, col_step)), np.int16)
    positions = rows.shape[1] * (w - 2 * _REACH) + cols.shape[2] * (h - 2 * _REACH)
    f_rows, w_rows = _edges(rows, 2, options)
    f_cols, w_cols = _edges(cols, 1, options)
    frame_of = np.concatenate([f_rows, f_cols])
    # The percentile of each picture's widths, from a histogram of 1/8 px bins (no loop over pictures).
    bins = _MAX_WIDTH_PX * _BINS_PER_PX
    width_bin = np.minimum(np.concatenate([w_rows, w_cols]) * _BINS_PER_PX, bins - 1).astype(np.int64)
    counts = np.bincount(frame_of * bins + width_bin, minlength=n * bins).reshape(n, bins)
    cumulative = np.cumsum(counts, axis=1)
    total = cumulative[:, -1]
    below = np.argmax(cumulative >= (options.edge_percentile / 100.0) * total[:, None], axis=1)
    score = (below + 0.5) / _BINS_PER_PX
    density = total / positions
    informative = (density >= options.min_edge_density) & (total > 0)
    return np.where(informative, score, np.nan), density


class BlurDetector(SampledDetector[BlurOptions, BlurState]):
    name = "blur"

    def open_window(self) -> None:
        self.analysed = 0
        self.informative = 0
        self.width_total = 0.0

    def feed_picked(self, chunk: VideoChunk, picked: np.ndarray) -> None:
        scores, _ = edge_widths(chunk.luma, self.options, picked)
        known = np.isfinite(scores)
        self.analysed += int(scores.size)
        self.informative += int(known.sum())
        self.width_total += float(scores[known].sum())
        blurred = known & (scores > self.options.threshold_px)
        for t, is_known, is_blurred, score in zip(
            chunk.times[picked].tolist(), known.tolist(), blurred.tolist(), scores.tolist()
        ):
            self._follow(t, is_known, is_blurred, score)

    def _follow(self, t: float, is_known: bool, is_blurred: bool, score: float) -> None:
        st, tracker, hold = self.state, self.tracker, self.options.no_information_hold_s
        quiet = st.no_information_since_s
        if not is_known:
            if tracker.is_open:
                if quiet is None:
                    st.no_information_since_s = t
                elif t - quiet > hold:
                    tracker.inactive(quiet)
                    st.no_information_since_s = None
            return
        if quiet is not None and tracker.is_open and (not is_blurred or t - quiet > hold):
            tracker.inactive(quiet)  # the blur ended where the picture stopped telling
        st.no_information_since_s = None
        if is_blurred:
            tracker.active(start_s=t, last_s=t, values=np.array([score]))
        elif tracker.is_open:
            tracker.inactive(t)

    def close_window(self) -> None:
        if self.context.span.is_last and self.tracker.is_open and self.state.no_information_since_s is not None:
            self.tracker.inactive(self.state.no_information_since_s)
        if not self.tracker.is_open:
            self.state.no_information_since_s = None

    def measures(self) -> dict[str, float]:
        measures: dict[str, float] = {}
        if self.analysed:
            measures["blur_informative_ratio"] = self.informative / self.analysed
        if self.informative:
            measures["blur_edge_width_px"] = self.width_total / self.informative
        return measures
