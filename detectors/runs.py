"""Turning a per-frame (or per-sample) condition into defect events.

The same mechanism serves every "condition held for at least N seconds" rule
(black, freeze, silence, ...). Its state is a handful of numbers, so a run that
starts in one window and ends several windows later is still one event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Literal, TypeVar

import numpy as np
from pydantic import Field

from vqa.contracts import Defect, DefectEvent, RunEdge, event_id

from .models import DetectorState

Reduce = Literal["mean", "max", "sum"]


class RunState(DetectorState):
    open_start_s: float | None = None
    last_active_s: float | None = None
    value_total: float = 0.0
    value_count: int = 0
    announced: bool = False


RunStateT = TypeVar("RunStateT", bound=RunState)


class TrackRuns(DetectorState, Generic[RunStateT]):
    """The state of a detector that follows its condition on each track: one run per track."""

    video: RunStateT = Field(default_factory=dict, validate_default=True)  # type: ignore[assignment]
    audio: RunStateT = Field(default_factory=dict, validate_default=True)  # type: ignore[assignment]


def find_runs(active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop indices (stop exclusive) of every run of True in `active`."""
    edges = np.diff(np.concatenate(([0], active.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


_EDGE_TOLERANCE_S = 1e-3  # a run starting this near the window's first observation touches its start


class RunTracker:
    """Follows one condition through a window and emits opened/closed events.

    With `edges` (a self-contained window, analysed alongside others without the state of
    the window before it), a run touching the window's start or still open at its end is not
    an event but a `RunEdge`, whatever its length: the workflow stitches them in window order.
    """

    def __init__(
        self,
        *,
        kind: str,
        track: str,
        min_duration_s: float,
        state: RunState,
        reduce: Reduce = "mean",
        report_value: Callable[[float], float] | None = None,
        edges: bool = False,
        name: str = "",
    ) -> None:
        self.kind = kind
        self.track = track
        self.min_duration_s = min_duration_s
        self.state = state
        self.reduce = reduce
        self.report_value = report_value
        self.events: list[DefectEvent] = []
        self.edges = edges
        self.name = name
        self.first_s: float | None = None  # the window's first observation of the condition
        self.first_run: tuple[DefectEvent, RunState] | None = None  # edges: the window's first closed run
        self.fragments: list[RunEdge] = []

    def seen(self, t: float) -> None:
        """The condition was observed at `t` (the first call marks the window's first observation)."""
        if self.first_s is None:
            self.first_s = t

    def begin_at(self, start_s: float) -> None:
        """The window proper begins at `start_s` (what came before was a warm-up): what the
        tracker found so far is the window before's, but a run still going goes on from here."""
        self.events.clear()
        self.first_run, self.first_s = None, start_s
        st = self.state
        if st.open_start_s is not None:
            st.open_start_s, st.value_total, st.value_count, st.announced = start_s, 0.0, 0, False

    @property
    def is_open(self) -> bool:
        return self.state.open_start_s is not None

    def active(self, *, start_s: float, last_s: float, values: np.ndarray) -> None:
        """The condition holds from `start_s` (unless a run is already open) through `last_s`."""
        st = self.state
        if st.open_start_s is None:
            st.open_start_s, st.value_total, st.value_count, st.announced = start_s, 0.0, 0, False
        st.last_active_s = last_s
        if values.size:
            if self.reduce == "max":
                st.value_total = max(st.value_total if st.value_count else -np.inf, float(values.max()))
            else:
                st.value_total += float(values.sum(dtype=np.float64))
            st.value_count += int(values.size)

    def inactive(self, at_s: float) -> None:
        """The condition stopped holding at `at_s`: close the open run there."""
        if self.state.open_start_s is None:
            return
        if self.edges and self.first_run is None:
            # Whether it touches the window's start is settled at the window's end.
            self.first_run = (self._event("closed", at_s), self.state.model_copy())
        elif at_s - self.state.open_start_s >= self.min_duration_s - 1e-9:
            self.events.append(self._event("closed", at_s))
        self.state.open_start_s = self.state.last_active_s = None
        self.state.value_total, self.state.value_count, self.state.announced = 0.0, 0, False

    def finish(self, *, window_end_s: float, stream_ended: bool, window_start_s: float | None = None) -> list[DefectEvent]:
        """Close the window: an open run is closed at the stream's end, or announced once long enough
        (with `edges`: runs at the window's edges become `fragments`)."""
        st = self.state
        if self.edges:
            return self._finish_edges(window_end_s, stream_ended, window_start_s)
        if st.open_start_s is not None:
            if stream_ended:
                self.inactive(window_end_s)
            elif not st.announced and st.last_active_s is not None and (
                st.last_active_s - st.open_start_s >= self.min_duration_s - 1e-9
            ):
                st.announced = True
                self.events.append(self._event("opened", st.last_active_s))
        return self.events

    def _finish_edges(self, window_end_s: float, stream_ended: bool, window_start_s: float | None) -> list[DefectEvent]:
        # Nothing comes before the stream's first window: no run there goes on from before it.
        first = None if window_start_s is not None and window_start_s <= 0 else (
            self.first_s if self.first_s is not None else window_start_s
        )
        if stream_ended:
            self.inactive(window_end_s)
        if self.first_run is not None:
            event, run = self.first_run
            if first is not None and event.defect.start_s <= first + _EDGE_TOLERANCE_S:
                self.fragments.append(self._edge(event, run, at_start=True, at_end=False))
            elif event.defect.duration_s >= self.min_duration_s - 1e-9:
                self.events.insert(0, event)
        st = self.state
        if st.open_start_s is not None:
            event = self._event("opened", window_end_s)
            touches = first is not None and event.defect.start_s <= first + _EDGE_TOLERANCE_S
            self.fragments.append(self._edge(event, st, at_start=touches, at_end=True))
        return self.events

    def _edge(self, event: DefectEvent, run: RunState, *, at_start: bool, at_end: bool) -> RunEdge:
        total = run.value_total
        if self.reduce == "max" and run.value_count and self.report_value:
            total = self.report_value(total)  # a monotonic conversion: the max of the converted values
        return RunEdge(
            defect=event.defect, run=self.name, last_active_s=float(run.last_active_s or event.defect.end_s),
            value_total=total, value_count=run.value_count, reduce=self.reduce,
            min_duration_s=self.min_duration_s, at_start=at_start, at_end=at_end,
        )

    def track_frames(
        self,
        times: np.ndarray,
        active: np.ndarray,
        values: np.ndarray,
        starts: np.ndarray | None = None,
    ) -> None:
        """Feed consecutive frames: `active[i]` says whether the condition holds at `times[i]`.

        `starts[i]`, when given, is where a run beginning at frame i really began
        (a freeze begins at its reference frame, one frame before the first repeat).
        """
        if len(times):
            self.seen(float(times[0]))
        run_starts, run_stops = find_runs(active)
        if self.is_open and (run_starts.size == 0 or run_starts[0] != 0):
            self.inactive(float(times[0]))
        for a, b in zip(run_starts.tolist(), run_stops.tolist()):
            start = float(starts[a]) if starts is not None else float(times[a])
            self.active(start_s=start, last_s=float(times[b - 1]), values=values[a:b])
            if b < len(times):
                self.inactive(float(times[b]))

    def _value(self) -> float | None:
        st = self.state
        if st.value_count == 0:
            return None
        value = st.value_total if self.reduce in ("max", "sum") else st.value_total / st.value_count
        return self.report_value(value) if self.report_value else value

    def _event(self, phase: Literal["opened", "closed"], end_s: float) -> DefectEvent:
        start = float(self.state.open_start_s or 0.0)
        value = self._value()
        defect = Defect(
            kind=self.kind,
            track=self.track,
            start_s=round(start, 4),
            end_s=round(end_s, 4),
            duration_s=round(end_s - start, 4),
            value=None if value is None else round(value, 6),
        )
        return DefectEvent(id=event_id(self.kind, self.track, start), phase=phase, defect=defect)
