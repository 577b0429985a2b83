"""Stitching window results into stream defects: pure and deterministic.

The workflow uses it between windows; tests use it to analyse a file window by
window without Temporal. An event opened in one window and closed in a later
one becomes one defect.
"""

from __future__ import annotations

import base64

from . import gating
from .contracts import Defect, DefectEvent, EventPhase, RunEdge, StreamProgress, WindowResult, event_id


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
    progress.gating = gating.merge(progress.gating, result.gating)
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
        merged.edges.extend(other.edges)
        merged.gating = merged.gating or other.gating
        merged.states.update(other.states)
        merged.detectors.extend(other.detectors)
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


def stitch_window(progress: StreamProgress, result: WindowResult) -> WindowResult:
    """A self-contained window's result as if analysed after the windows before it: the runs at
    its start join the runs still going at the end of the window before (`progress.pending_runs`,
    updated), and each run that ends becomes one event; a run still going is announced `opened`
    once it is long enough. Windows are stitched in order; the result returned has no edges."""
    events = list(result.events)
    starts = [e for e in result.edges if e.at_start]
    followed: set[int] = set()
    pending: list[RunEdge] = []
    unused = progress.unused_evidence
    for run in progress.pending_runs:
        if not result.is_last and not _saw(result, run.defect.track):
            pending.append(run)  # a window with none of the run's media (no keyframe in its span): nothing changes
            continue
        follow = next((i for i, e in enumerate(starts) if i not in followed and _continues(run, e)), None)
        if follow is None:
            events += _closed(run, unused)
            continue
        followed.add(follow)
        joined = _join(run, starts[follow])
        if joined.at_end:
            pending.append(joined)
        else:
            events += _closed(joined, unused)
    for i, edge in enumerate(starts):
        if i not in followed:
            if edge.at_end:
                pending.append(edge)
            else:
                events += _closed(edge, unused)
    pending += [e for e in result.edges if e.at_end and not e.at_start]
    for i, run in enumerate(pending):
        if not run.announced and not run.discard and run.last_active_s - run.defect.start_s >= run.min_duration_s - 1e-9:
            pending[i] = run.model_copy(update={"announced": True})
            events.append(_event(run, "opened", run.last_active_s))
    progress.pending_runs = pending
    events.sort(key=lambda e: (e.defect.start_s, e.defect.kind))
    return result.model_copy(update={"events": events, "edges": []})


# A detail a later part of a run says that holds only if its first part says another (freeze:
# held to the stream's end is a whole-stream still only for a run from the stream's start).
_HOLDS_ONLY_WITH = {"whole_stream": "from_start"}


def _saw(result: WindowResult, track: str) -> bool:
    """Did the window have media of `track` (an "av" run: of either)?"""
    video, audio = result.metrics.video_frames > 0, result.metrics.audio_samples > 0
    return {"video": video, "audio": audio}.get(track, video or audio)


def _continues(before: RunEdge, after: RunEdge) -> bool:
    """Is `after` (at a window's start) the run `before` (at the previous window's end) going on?"""
    d, e = before.defect, after.defect
    if (d.kind, d.track, before.run) != (e.kind, e.track, after.run):
        return False
    if before.print_tolerance is None:
        return True
    if before.end_print is None or after.start_print is None:
        return False  # nothing shows the same picture is held across the edge
    a, b = base64.b64decode(before.end_print), base64.b64decode(after.start_print)
    return len(a) == len(b) > 0 and sum(abs(x - y) for x, y in zip(a, b)) / len(a) <= before.print_tolerance


def _join(before: RunEdge, after: RunEdge) -> RunEdge:
    if before.reduce == "max":
        total = max((r.value_total for r in (before, after) if r.value_count), default=0.0)
    else:
        total = before.value_total + after.value_total
    end = after.defect.end_s
    details = {**after.defect.details, **before.defect.details}
    defect = before.defect.model_copy(
        update={"end_s": end, "duration_s": round(end - before.defect.start_s, 4), "details": details}
    )
    return before.model_copy(
        update={
            "defect": defect,
            "last_active_s": after.last_active_s,
            "value_total": total,
            "value_count": before.value_count + after.value_count,
            "at_end": after.at_end,
            "end_print": after.end_print,
        }
    )


def _closed(run: RunEdge, unused_evidence: list[str]) -> list[DefectEvent]:
    """The event of a run that ended (at its defect's end), if it lasted long enough (else the
    evidence the window where it began wrote is unused)."""
    if run.discard or run.defect.end_s - run.defect.start_s < run.min_duration_s - 1e-9:
        if not run.at_start and "evidence" in run.defect.details:
            unused_evidence.append(event_id(run.defect.kind, run.defect.track, run.defect.start_s))
        return []
    return [_event(run, "closed", run.defect.end_s)]


def _event(run: RunEdge, phase: EventPhase, end_s: float) -> DefectEvent:
    d = run.defect
    value: float | None = None
    if run.value_count:
        value = run.value_total / run.value_count if run.reduce == "mean" else run.value_total
    defect = d.model_copy(
        update={
            "end_s": round(end_s, 4),
            "duration_s": round(end_s - d.start_s, 4),
            "value": None if value is None else round(value, 6),
            "details": {
                k: v for k, v in d.details.items() if k not in _HOLDS_ONLY_WITH or d.details.get(_HOLDS_ONLY_WITH[k])
            },
        }
    )
    return DefectEvent(id=event_id(d.kind, d.track, d.start_s), phase=phase, defect=defect)
