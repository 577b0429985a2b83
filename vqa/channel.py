"""A channel's rules, pure and deterministic (the channel workflow runs them): which renditions
are decoded, and how their defects merge into the channel's.

A defect seen on every decoded rendition of its type (video or audio) at overlapping times is
one defect, `details.scope = "source"`: the fault is upstream of the encoder ladder. Otherwise it
is `"rendition"`, one defect per overlapping group, and `details.renditions` names where it was
seen. Manifest defects (track `manifest`) carry their own `renditions` and are kept as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from vqa.contracts import Defect, RenditionInfo, RenditionReport

LOWEST, HIGHEST = "lowest", "highest"


def selected(renditions: Sequence[RenditionInfo], selection: Sequence[str]) -> list[str]:
    """The names of the renditions to decode: all when `selection` is empty; `lowest` and
    `highest` are the video renditions of least and most bandwidth (else height). Raises
    ValueError naming what the ladder lacks."""
    if not selection:
        return [r.name for r in renditions]
    names = {r.name for r in renditions}
    ladder = sorted((r for r in renditions if r.type == "video"), key=lambda r: (r.bandwidth or 0, r.height or 0))
    chosen: list[str] = []
    for token in selection:
        if token in (LOWEST, HIGHEST):
            if not ladder:
                raise ValueError(f"--renditions {token}: the channel has no video rendition")
            name = (ladder[0] if token == LOWEST else ladder[-1]).name
        elif token in names:
            name = token
        else:
            raise ValueError(f"--renditions names {token!r}; the channel has {', '.join(sorted(names))}")
        if name not in chosen:
            chosen.append(name)
    return chosen


def merge_defects(entries: Sequence[RenditionReport], manifest: Sequence[Defect] = ()) -> list[Defect]:
    """The channel's defects: each group of overlapping same-kind defects across renditions of one
    type once, scoped `source` when every decoded rendition of that type is in it; then `manifest`."""
    merged: list[Defect] = []
    for kind_of_rendition in ("video", "audio"):
        decoded = [e for e in entries if e.type == kind_of_rendition and e.report is not None]
        seen = [(e, d) for e in decoded for d in e.report.defects]  # type: ignore[union-attr]
        keys = sorted({(d.kind, d.track) for _, d in seen})
        for key in keys:
            found = sorted(((e, d) for e, d in seen if (d.kind, d.track) == key), key=lambda ed: ed[1].start_s)
            for group in _overlapping(found):
                merged.append(_one(group, everywhere=len({e.name for e, _ in group}) == len(decoded)))
    merged += list(manifest)
    return sorted(merged, key=lambda d: (d.start_s, d.kind, d.track))


def _overlapping(found: list[tuple[RenditionReport, Defect]]) -> list[list[tuple[RenditionReport, Defect]]]:
    """Defects (sorted by start) in groups whose spans overlap or touch, chained."""
    groups: list[list[tuple[RenditionReport, Defect]]] = []
    end = float("-inf")
    for entry, defect in found:
        if groups and defect.start_s <= end + 1e-6:
            groups[-1].append((entry, defect))
            end = max(end, defect.end_s)
        else:
            groups.append([(entry, defect)])
            end = defect.end_s
    return groups


def _one(group: list[tuple[RenditionReport, Defect]], *, everywhere: bool) -> Defect:
    """A group of one kind's defects as the channel's one defect: from the earliest start to the
    latest end, the mean of the values, the first's details with the scope and where it was seen."""
    first = group[0][1]
    start, end = min(d.start_s for _, d in group), max(d.end_s for _, d in group)
    values = [d.value for _, d in group if d.value is not None]
    names = sorted({e.name for e, _ in group})
    details = {**first.details, "scope": "source" if everywhere else "rendition", "renditions": names}
    languages = sorted({e.language for e, _ in group if e.language})
    if languages:
        details["language"] = languages[0] if len(languages) == 1 else languages
    return first.model_copy(update={
        "start_s": start, "end_s": end, "duration_s": round(end - start, 6),
        "value": round(sum(values) / len(values), 6) if values else None, "details": details,
    })
