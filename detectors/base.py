"""What every detector sees and returns.

A window's media arrives in chunks (a few dozen frames, or a block of audio
samples) so that a 1080p window never has to sit in memory whole. A detector
keeps its per-window work in plain attributes (set up in `open_window`), and
what must survive to the next window in a small pydantic `State`, returned by
`finish`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

import numpy as np
from pydantic import Field

from vqa.contracts import DefectEvent, Gating, RunEdge, Track

from .models import DetectorOptions, DetectorState
from .runs import Reduce, RunState, RunTracker


@dataclass(frozen=True)
class WindowSpan:
    """The part of the stream a window covers, on the stream's timeline (seconds)."""

    start_s: float
    end_s: float
    is_last: bool


class FrameStack:
    """Pictures of equal size held as separate 2-D arrays (views of decoded frames),
    indexed like a (frames, height, width) array: a frame, or a selection of frames
    with slices of each, is materialised only when asked for."""

    def __init__(self, planes: list[np.ndarray]) -> None:
        self.planes = planes
        self.shape = (len(planes), *planes[0].shape) if planes else (0, 0, 0)
        self.dtype = planes[0].dtype if planes else np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.planes)

    def __getitem__(self, key: Any) -> np.ndarray:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, (int, np.integer)):
            return self.planes[first][rest]
        indices = range(len(self.planes))[first] if isinstance(first, slice) else np.asarray(first).tolist()
        return np.stack([self.planes[i][rest] for i in indices])

    def take(self, frames: np.ndarray, rest: tuple[Any, ...], dtype: Any) -> np.ndarray:
        """`self[frames, *rest]` converted to `dtype`, in one pass (no uint8 copy first)."""
        first = self.planes[0][rest] if self.planes else np.empty((0, 0), np.uint8)
        out = np.empty((len(frames), *first.shape), dtype=dtype)
        for i, frame in enumerate(np.asarray(frames).tolist()):
            out[i] = self.planes[frame][rest]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        stacked = np.stack(self.planes) if self.planes else np.empty(self.shape, np.uint8)
        return stacked if dtype is None else stacked.astype(dtype)


@dataclass(frozen=True)
class VideoChunk:
    """Consecutive decoded frames of one window.

    `luma` is (frames, height, width) uint8 — an array, or a `FrameStack` of views
    of the decoded frames (the decoder's own buffers: no copy of a full picture is
    made unless a detector asks for one); `times` their presentation times;
    `keyframe` marks intra-coded frames; `full_range` is False for limited-range
    (16-235) video, the usual case. A detector that keeps a frame beyond
    `feed_video` keeps a copy.
    """

    times: np.ndarray
    luma: np.ndarray | FrameStack
    keyframe: np.ndarray
    full_range: bool = False
    coarse: np.ndarray | None = None  # `luma[:, ::s, ::s]`, s = coarse_stride(height), when the decoder made it
    # Interlaced pictures: each frame weaves two fields, taken a field period apart, on
    # alternate lines; `field_order` says which is first in time ("tff": the top field,
    # lines 0, 2, 4...; "bff": the bottom one). Detectors that measure block or line
    # structure measure each field on its own lines.
    interlaced: bool = False
    field_order: str | None = None


@dataclass(frozen=True)
class AudioChunk:
    """Consecutive samples of one window: `samples` is (channels, n) float32 in [-1, 1].

    `warm_up`: samples from just before a self-contained window, for the detectors whose
    measure needs a few seconds of history (loudness) to start where it would have been.
    `track`: which audio track ("audio": the first, "audio:N" the others); `channels`: the
    name of each row in the track's layout ("FL", "FR", "FC", "LFE"...), empty when unknown.
    """

    start_s: float
    sample_rate: int
    samples: np.ndarray
    warm_up: bool = False
    track: str = "audio"
    channels: tuple[str, ...] = ()


_AUDIO_GAP_S = 0.1  # a jump in sample times larger than this breaks the stream


class AudioStreamState(DetectorState):
    """The carried state of a detector that measures the samples as one unbroken stream: it
    restarts its measurement on a chunk that does not continue them (`continues`)."""

    sample_rate: int = 0
    channels: int = 0
    next_sample_s: float | None = Field(None, description="time of the sample expected next")

    def continues(self, chunk: AudioChunk) -> bool:
        """Does `chunk` carry on the samples so far: the same format, no jump in time of more than 0.1 s?"""
        return (
            chunk.sample_rate == self.sample_rate
            and chunk.samples.shape[0] == self.channels
            and self.next_sample_s is not None
            and abs(chunk.start_s - self.next_sample_s) <= _AUDIO_GAP_S
        )

    def restart(self, chunk: AudioChunk) -> None:
        """A new measurement from `chunk`: its format is the stream's."""
        self.sample_rate, self.channels = chunk.sample_rate, chunk.samples.shape[0]


@dataclass(frozen=True)
class DecodeErrorChunk:
    """Packets of one track that failed to decode (or decoded to frames marked corrupt):
    their times, and how much media each one carried."""

    track: Track
    times: np.ndarray
    durations: np.ndarray


@dataclass
class DetectorOutput:
    events: list[DefectEvent] = field(default_factory=list)
    measures: dict[str, float] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    edges: list[RunEdge] = field(default_factory=list)  # a self-contained window's runs at its edges
    gating: Gating | None = None  # the window's momentary loudness blocks (the loudness detector)


@dataclass
class WindowContext:
    """Shared, read-only facts of the window plus a cache of per-frame measures
    that several detectors need (so a measure is computed once per window)."""

    span: WindowSpan
    # Analysed alongside other windows, without the state of the one before: runs at the
    # window's edges are handed back as `RunEdge`s for the workflow to stitch.
    self_contained: bool = False
    previous_luma: np.ndarray | None = None
    previous_time_s: float | None = None
    _cached_chunk: VideoChunk | None = None
    _coarse: np.ndarray | None = None
    _black: dict[int, np.ndarray] = field(default_factory=dict)

    def _chunk_cache(self, chunk: VideoChunk) -> None:
        if self._cached_chunk is not chunk:
            self._cached_chunk, self._coarse, self._black = chunk, None, {}

    def coarse_luma(self, chunk: VideoChunk) -> np.ndarray:
        """The chunk's luma subsampled to about 180 lines (every `coarse_stride(height)`-th
        pixel), contiguous; computed once per chunk for the detectors that measure whole-
        picture statistics, where every pixel of a 1080p frame adds cost but no accuracy."""
        self._chunk_cache(chunk)
        if self._coarse is None and chunk.coarse is not None:
            self._coarse = chunk.coarse
        if self._coarse is None:
            step = coarse_stride(chunk.luma.shape[1])
            self._coarse = np.ascontiguousarray(chunk.luma if step == 1 else chunk.luma[:, ::step, ::step])
        return self._coarse

    def black_fraction(self, chunk: VideoChunk, *, pixel_level: int) -> np.ndarray:
        """Fraction of pixels at or below `pixel_level`, per frame of the chunk.

        Black and freeze both need it; it is computed once per chunk and level.
        """
        self._chunk_cache(chunk)
        fractions = self._black.get(pixel_level)
        if fractions is None:
            luma = self.coarse_luma(chunk)
            n, h, w = luma.shape
            # One count per frame: numpy's whole-array count is several times faster than with `axis`.
            counts = np.fromiter((np.count_nonzero(frame <= pixel_level) for frame in luma), dtype=np.int64, count=n)
            fractions = self._black[pixel_level] = counts / float(h * w)
        return fractions


def take_frames(luma: np.ndarray | FrameStack, frames: np.ndarray, rest: tuple[Any, ...], dtype: Any) -> np.ndarray:
    """`luma[frames, *rest]` as `dtype`: the selected pictures' selected rows or columns, converted."""
    if isinstance(luma, FrameStack):
        return luma.take(frames, rest, dtype)
    return luma[(frames, *rest)].astype(dtype)


def coarse_stride(height: int) -> int:
    """Subsampling step for whole-picture measures: none up to 400 lines, then about
    180 lines (720p: 4, 1080p: 6), plenty for a mean or a fraction of a picture."""
    return 1 if height <= 400 else max(2, round(height / 180))


_EDGE_MARKER = "edge#"  # no event id starts so: an event id starts with its kind


def is_edge(event: DefectEvent) -> bool:
    """Is this, in `window_events`, a run at a self-contained window's edge (a `RunEdge`), not an event?"""
    return event.id.startswith(_EDGE_MARKER)


OptionsT = TypeVar("OptionsT", bound=DetectorOptions)
StateT = TypeVar("StateT", bound=DetectorState)


class Detector(Generic[OptionsT, StateT]):
    """What every detector shares: its entry points, its run trackers and the window's end.

    A detector is `class XDetector(Detector[XOptions, XState])` with a `name` and a
    `track`, and does its per-chunk work in `feed_video`, `feed_audio` and
    `feed_decode_errors`. The base builds a run tracker for each condition it
    follows (`runs`) and closes the window (`finish`): `close_window` first, for what
    only the window's end decides, then every run, then `window_events` and `measures`.
    """

    name: ClassVar[str]
    track: ClassVar[Track]
    kind: ClassVar[str]  # the defect kind it reports: its name
    needs_both_tracks: ClassVar[bool] = False  # an "av" detector that compares the two tracks
    # Seconds of sound before a self-contained window this detector is fed first (`warm_up` chunks).
    audio_warm_up_s: ClassVar[float] = 0.0
    Options: ClassVar[type[DetectorOptions]]  # taken from `Detector[Options, State]`
    State: ClassVar[type[DetectorState]]
    # The runs it follows: the State field that carries each one's RunState ("": the State is
    # that RunState), each one's tracker `trackers[field]`. A run in a field named after a track
    # ("video", "audio") reports on that track, any other on the detector's. A run shorter than
    # the option `min_duration_s`, where the options have one, is no event.
    runs: ClassVar[tuple[str, ...]] = ("",)
    run_reduce: ClassVar[Reduce] = "mean"  # how a run's values make its event's value

    options: OptionsT
    state: StateT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin, args = get_origin(base), get_args(base)
            generic = any(isinstance(arg, TypeVar) for arg in args)  # a base of detectors, itself generic
            if isinstance(origin, type) and issubclass(origin, Detector) and len(args) == 2 and not generic:
                cls.Options, cls.State = args
        if "name" in cls.__dict__ and "kind" not in cls.__dict__:
            cls.kind = cls.name

    def __init__(
        self, *, options: DetectorOptions, state: dict[str, Any] | None, context: WindowContext, audio_track: str = "audio"
    ):
        self.options = options  # type: ignore[assignment]
        self.state = self.State.model_validate(state or {})  # type: ignore[assignment]
        self.context = context
        # An audio detector runs once per audio track: this one's ("audio", or "audio:N"), the
        # track its defects are on and the chunks it is fed.
        self.audio_track = audio_track
        min_duration_s = getattr(options, "min_duration_s", 0.0)
        self.trackers = {
            key: RunTracker(
                kind=self.kind,
                track=self._defect_track(key),
                min_duration_s=min_duration_s,
                state=self._run_state(key),
                reduce=self.run_reduce,
                report_value=self.run_value,
                edges=context.self_contained,
                name=key,
            )
            for key in self.runs
        }
        self.open_window()

    def _defect_track(self, run: str) -> str:
        """The track a run's defects are on: a run named after a track reports on it, any other on the detector's."""
        track = run if run in ("video", "audio") else self.track
        return self.audio_track if track == "audio" else track

    def _run_state(self, key: str) -> RunState:
        state = getattr(self.state, key) if key else self.state
        assert isinstance(state, RunState), f"{self.name}: {key or 'the state'} is not a RunState"
        return state

    @property
    def tracker(self) -> RunTracker:
        """The run tracker of a detector that follows one run."""
        (tracker,) = self.trackers.values()
        return tracker

    def open_window(self) -> None:
        """Set up the window's working values (what goes on to the next window is in `state`)."""

    def feed_video(self, chunk: VideoChunk) -> None:  # pragma: no cover - video-less detectors
        pass

    def feed_audio(self, chunk: AudioChunk) -> None:  # pragma: no cover - audio-less detectors
        pass

    def feed_decode_errors(self, chunk: DecodeErrorChunk) -> None:
        pass

    def close_window(self) -> None:
        """All the window's media is fed: settle what only its end decides, before its runs are closed."""

    def window_events(self, events: list[DefectEvent]) -> list[DefectEvent]:
        """The window's events as reported, once its runs are closed (by default, as they are)."""
        return events

    def measures(self) -> dict[str, float]:
        """The window's measures."""
        return {}

    def run_value(self, value: float) -> float:
        """An event's value, from its run's values reduced (by default, that)."""
        return value

    def edge_prints(self, edge: RunEdge) -> RunEdge:
        """A run at the window's edge with what shows it goes on across the edge (freeze: prints of
        the held picture); by default as it is: runs touching across an edge are one."""
        return edge

    def gating(self) -> Gating | None:
        """The window's momentary loudness blocks (only the loudness detector counts them)."""
        return None

    def finish(self) -> DetectorOutput:
        """Close the window: its runs closed (at the stream's end) or announced, its events, its
        measures, and the state for the next window (a self-contained window: its runs at the edges)."""
        self.close_window()
        span = self.context.span
        events = [
            event
            for tracker in self.trackers.values()
            for event in tracker.finish(window_end_s=span.end_s, stream_ended=span.is_last, window_start_s=span.start_s)
        ]
        # Fragments go through `window_events` as events do (their details), then get their prints.
        fragments = [f for tracker in self.trackers.values() for f in tracker.fragments]
        as_events = [
            DefectEvent(id=f"{_EDGE_MARKER}{i}", phase="opened" if f.at_end else "closed", defect=f.defect)
            for i, f in enumerate(fragments)
        ]
        processed = self.window_events(events + as_events)
        events = [e for e in processed if not is_edge(e)]
        edges = [
            self.edge_prints(fragments[int(e.id.removeprefix(_EDGE_MARKER))].model_copy(update={"defect": e.defect}))
            for e in processed
            if is_edge(e)
        ]
        return DetectorOutput(
            events=events, measures=self.measures(), state=self.state.model_dump(), edges=edges, gating=self.gating()
        )


def db_to_amplitude(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def amplitude_to_db(amplitude: float, floor_db: float = -120.0) -> float:
    if amplitude <= 0:
        return floor_db
    return max(floor_db, float(20.0 * np.log10(amplitude)))


def limited_range_level(fraction: float, *, full_range: bool) -> int:
    """Luma code at `fraction` of the way from black to white, as FFmpeg's blackdetect computes it."""
    if full_range:
        return int(fraction * 255)
    return int(16 + fraction * (235 - 16))
