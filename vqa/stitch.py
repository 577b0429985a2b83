"""Stitching window results into stream defects: pure and deterministic.

The workflow uses it between windows; tests use it to analyse a file window by
window without Temporal. An event opened in one window and closed in a later
one becomes one defect.
"""

from __future__ import annotations

from .contracts import Defect, DefectEvent, StreamProgress, WindowResult


def apply_window(progress: StreamProgress, result: WindowResult) -> None:
    """Fold one window's result into the stream's progress."""
    open_events = {e.id: e for e in progress.open_events}
    for event in result.events:
        if event.phase == "opened":
            open_events[event.id] = event
        else:
            open_events.pop(event.id, None)
            progress.defects.append(event.defect)
    progress.open_events = list(open_events.values())
    progress.states = result.states
    progress.next_index = result.index + 1
    progress.windows_done += 1
    progress.position_s = result.end_s
    progress.ended = progress.ended or result.is_last
    if result.live_edge_s is not None:
        progress.live_edge_s = result.live_edge_s


def report_defects(progress: StreamProgress, *, position_s: float) -> list[Defect]:
    """All defects so far, sorted; events still open end at `position_s` (a stopped stream)."""
    defects = list(progress.defects) + [_closed_at(e, position_s) for e in progress.open_events]
    return sorted(defects, key=lambda d: (d.start_s, d.kind))


def _closed_at(event: DefectEvent, end_s: float) -> Defect:
    d = event.defect
    end = max(end_s, d.end_s)
    return d.model_copy(update={"end_s": end, "duration_s": round(end - d.start_s, 4)})


def merge_group_results(results: list[WindowResult]) -> WindowResult:
    """One window's result from its detector groups' results (disjoint detectors, same window).

    Each group decoded the window itself; their events, states and measures are
    simply put together. A live window's end is where the furthest group got.
    """
    if len(results) == 1:
        return results[0]
    merged = results[0].model_copy(deep=True)
    for other in results[1:]:
        merged.events.extend(other.events)
        merged.states.update(other.states)
        merged.metrics.measures.update(other.metrics.measures)
        merged.metrics.video_frames = max(merged.metrics.video_frames, other.metrics.video_frames)
        merged.metrics.audio_samples = max(merged.metrics.audio_samples, other.metrics.audio_samples)
        merged.end_s = max(merged.end_s, other.end_s)
        merged.is_last = merged.is_last or other.is_last
        merged.notify_targets = merged.notify_targets or other.notify_targets
        if other.live_edge_s is not None:
            merged.live_edge_s = max(merged.live_edge_s or 0.0, other.live_edge_s)
    merged.events.sort(key=lambda e: (e.defect.start_s, e.defect.kind))
    return merged
