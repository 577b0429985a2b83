"""The stitch of self-contained windows (vqa/stitch.py), rule by rule, on hand-made window results."""

from __future__ import annotations

import base64

from vqa.contracts import Defect, MediaInfo, RunEdge, StreamProgress, WindowMetrics, WindowResult
from vqa.stitch import apply_window, stitch_window


def _edge(kind: str, start: float, end: float, *, at_start: bool, at_end: bool, values: tuple[float, int] = (0.0, 0),
          reduce: str = "mean", min_s: float = 2.0, track: str = "video", **extra: object) -> RunEdge:
    details = extra.pop("details", {})
    return RunEdge(
        defect=Defect(kind=kind, track=track, start_s=start, end_s=end, duration_s=end - start, details=details),  # type: ignore[arg-type]
        last_active_s=end - 0.04, value_total=values[0], value_count=values[1], reduce=reduce,  # type: ignore[arg-type]
        min_duration_s=min_s, at_start=at_start, at_end=at_end, **extra,  # type: ignore[arg-type]
    )


def _window(index: int, start: float, end: float, edges: list[RunEdge], *, last: bool = False, frames: int = 100) -> WindowResult:
    return WindowResult(index=index, start_s=start, end_s=end, is_last=last, edges=edges,
                        metrics=WindowMetrics(video_frames=frames, audio_samples=frames * 1920))


def _run(windows: list[WindowResult]) -> tuple[StreamProgress, list[list[tuple[str, str, float, float]]]]:
    progress = StreamProgress(media=MediaInfo(duration_s=windows[-1].end_s))
    announced = []
    for window in windows:
        result = stitch_window(progress, window)
        announced.append([(e.phase, e.defect.kind, e.defect.start_s, e.defect.end_s) for e in result.events])
        apply_window(progress, result)
    return progress, announced


def test_a_run_over_three_windows_is_one_defect_opened_once_and_closed_once() -> None:
    progress, events = _run([
        _window(0, 0, 10, [_edge("black", 9.0, 10.0, at_start=False, at_end=True, values=(25.0, 25))]),
        _window(1, 10, 20, [_edge("black", 10.0, 20.0, at_start=True, at_end=True, values=(250.0, 250))]),
        _window(2, 20, 30, [_edge("black", 20.0, 21.0, at_start=True, at_end=False, values=(0.0, 25))], last=True),
    ])
    assert events == [[], [("opened", "black", 9.0, 19.96)], [("closed", "black", 9.0, 21.0)]]
    (defect,) = progress.defects
    assert defect.value == round(275.0 / 300, 6), "the value from the totals of all its parts"
    assert progress.pending_runs == [] and progress.open_events == []


def test_short_parts_add_up_as_they_would_in_a_row() -> None:
    """1.2 s and 1.2 s on each side of a boundary: one 2.4 s defect; 0.8 + 0.8 s: none."""
    _, long_enough = _run([
        _window(0, 0, 10, [_edge("silence", 8.8, 10.0, at_start=False, at_end=True, track="audio")]),
        _window(1, 10, 20, [_edge("silence", 10.0, 11.2, at_start=True, at_end=False, track="audio")], last=True),
    ])
    assert long_enough[1] == [("closed", "silence", 8.8, 11.2)]
    progress, too_short = _run([
        _window(0, 0, 10, [_edge("silence", 9.2, 10.0, at_start=False, at_end=True, track="audio",
                                 details={"evidence": "x.wav"})]),
        _window(1, 10, 20, [_edge("silence", 10.0, 10.8, at_start=True, at_end=False, track="audio")], last=True),
    ])
    assert too_short == [[], []]
    assert progress.unused_evidence == ["silence:audio:9200"], "the evidence its first window wrote is to be removed"


def test_a_run_at_a_window_start_with_nothing_before_it_begins_there() -> None:
    _, events = _run([
        _window(0, 0, 10, []),
        _window(1, 10, 20, [_edge("black", 10.0, 13.0, at_start=True, at_end=False)], last=True),
    ])
    assert events[1] == [("closed", "black", 10.0, 13.0)]


def test_freezes_join_only_when_the_held_pictures_match() -> None:
    grey = base64.b64encode(bytes([100] * 576)).decode()
    other = base64.b64encode(bytes([160] * 576)).decode()

    def windows(start_print: str) -> list[WindowResult]:
        return [
            _window(0, 0, 10, [_edge("freeze", 7.0, 10.0, at_start=False, at_end=True, end_print=grey, print_tolerance=2.0)]),
            _window(1, 10, 20, [_edge("freeze", 10.0, 14.0, at_start=True, at_end=False, start_print=start_print,
                                      print_tolerance=2.0)], last=True),
        ]

    assert _run(windows(grey))[1][1] == [("closed", "freeze", 7.0, 14.0)]
    assert _run(windows(other))[1][1] == [("closed", "freeze", 7.0, 10.0), ("closed", "freeze", 10.0, 14.0)]


def test_a_window_without_the_runs_media_passes_it_on() -> None:
    """A window shorter than the GOP holds no keyframe: it is empty, and a run goes on across it."""
    _, events = _run([
        _window(0, 0, 5, [_edge("black", 3.0, 5.0, at_start=False, at_end=True)]),
        _window(1, 5, 5, [], frames=0),
        _window(2, 5, 10, [_edge("black", 5.0, 7.0, at_start=True, at_end=False)], last=True),
    ])
    assert events[2] == [("closed", "black", 3.0, 7.0)]


def test_the_largest_value_of_a_max_run_and_details_of_its_first_part() -> None:
    progress, _ = _run([
        _window(0, 0, 10, [_edge("silence", 7.0, 10.0, at_start=False, at_end=True, values=(-65.0, 3), reduce="max",
                                 track="audio", details={"evidence": "a.wav"})]),
        _window(1, 10, 20, [_edge("silence", 10.0, 12.0, at_start=True, at_end=False, values=(-61.0, 2), reduce="max",
                                  track="audio", details={"evidence": "b.wav"})], last=True),
    ])
    (defect,) = progress.defects
    assert defect.value == -61.0 and defect.details == {"evidence": "a.wav"}


def test_whole_stream_holds_only_for_a_freeze_from_the_start_and_a_still_programme_is_dropped() -> None:
    def windows(first: dict[str, object], discard: bool = False) -> list[WindowResult]:
        return [
            _window(0, 0, 10, [_edge("freeze", 0.0, 10.0, at_start=False, at_end=True, details=first, discard=discard)]),
            _window(1, 10, 20, [_edge("freeze", 10.0, 20.0, at_start=True, at_end=False,
                                      details={"whole_stream": True})], last=True),
        ]

    (from_start,) = _run(windows({"from_start": True}))[0].defects
    assert from_start.details == {"from_start": True, "whole_stream": True}
    (later,) = _run([_window(0, 0, 10, [_edge("freeze", 4.0, 10.0, at_start=False, at_end=True)]),
                     *windows({})[1:]])[0].defects
    assert "whole_stream" not in later.details
    assert _run(windows({"from_start": True}, discard=True))[0].defects == []
