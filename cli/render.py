"""What the commands print for people: the defect table (of a report, or of a status so far),
the `list` lines and the progress line. One renderer, so every table reads the same."""

from __future__ import annotations

from typing import Any

from vqa.contracts import Defect, RenditionStatus, StreamReport, StreamStatus

_HEADER = f"{'KIND':<14} {'TRACK':<8} {'START':>9} {'END':>9} {'DURATION':>9} {'VALUE':>10}"


def defect_table(rows: list[tuple[Defect, str | None]]) -> list[str]:
    """A header, a rule and one line per defect; a note (e.g. `open`) ends its line where given."""
    lines = ["", _HEADER, "-" * len(_HEADER)]
    for d, note in rows:
        value = "" if d.value is None else f"{d.value:.4g}"
        line = f"{d.kind:<14} {d.track:<8} {d.start_s:>9.2f} {d.end_s:>9.2f} {d.duration_s:>9.2f} {value:>10}"
        lines.append(line if note is None else f"{line} {note}".rstrip())
    return lines


def format_report(report: StreamReport) -> str:
    """`--wait`'s table: the stream, where its report went, and its defects."""
    media = report.media
    lines = [
        f"stream {report.stream_id}  status {report.status}"
        + (f"  {media.duration_s:.1f} s" if media else "")
        + f"  {report.windows} windows of {report.window_seconds:g} s",
        f"source {report.source}",
    ]
    if report.error:
        lines.append(f"error  {report.error}")
    if report.results_uri:
        lines.append(f"results {report.results_uri}")
    if report.report_html_uri:
        lines.append(f"html    {report.report_html_uri}")
    if report.renditions:
        lines += rendition_table(rendition_statuses(report))
    if not report.defects:
        lines.append("no defects found")
        return "\n".join(lines)
    lines += defect_table([(d, _where(d)) for d in report.defects])
    lines.append(f"{len(report.defects)} defect(s)")
    return "\n".join(lines)


def rendition_statuses(report: StreamReport) -> list[RenditionStatus]:
    """A finished channel's renditions as `status` shows them: state, how far each got, or its error."""
    return [
        RenditionStatus(name=r.name, type=r.type, decoded=r.report is not None or r.error is not None,
                        state=r.report.status if r.report else ("failed" if r.error else "skipped"),
                        position_s=(r.report.analysed_s or 0.0) if r.report else 0.0, error=r.error)
        for r in report.renditions
    ]


def _where(d: Defect) -> str | None:
    """A channel's defect: its scope and the renditions it was seen on."""
    if "renditions" not in d.details:
        return None
    return f"{d.details.get('scope', '')} {','.join(d.details['renditions'])}".strip()


def rendition_table(renditions: list[RenditionStatus]) -> list[str]:
    """A channel's renditions: name, type, state, position, open defects (or error)."""
    lines = ["", f"{'RENDITION':<16} {'TYPE':<6} {'STATE':<10} {'POSITION':>9}  OPEN DEFECTS"]
    for r in renditions:
        opened = ", ".join(sorted({d.kind for d in r.open_defects})) or (f"error: {r.error}" if r.error else "")
        lines.append(f"{r.name:<16} {r.type:<6} {r.state:<10} {r.position_s:>9.1f}  {opened}".rstrip())
    return lines


def format_status(status: StreamStatus) -> str:
    """`status ID`'s table: position, windows, lag (live), the defects so far and the open ones."""
    total = f"/{status.windows_total}" if status.windows_total is not None else ""
    duration = f"/{status.duration_s:.1f}" if status.duration_s is not None and not status.live else ""
    lines = [
        f"stream {status.stream_id}  state {status.state}  position {status.position_s:.1f}{duration} s  "
        f"{status.windows_done}{total} windows",
        f"source {status.source}",
    ]
    if status.live:
        edge = f"{status.live_edge_s:.1f} s" if status.live_edge_s is not None else "unknown"
        lag = f"{status.lag_s:.1f} s" if status.lag_s is not None else "unknown"
        lines.append(f"live   edge {edge}  lag {lag}")
    if status.renditions:
        lines += rendition_table(status.renditions)
    rows: list[tuple[Defect, str | None]] = [(d, _where(d) or "") for d in status.defects]
    rows += [(d, f"open {_where(d) or ''}".strip()) for d in status.open_defects]
    if not rows:
        lines.append("no defects so far")
        return "\n".join(lines)
    lines += defect_table(sorted(rows, key=lambda r: r[0].start_s))
    lines.append(f"{len(status.defects)} defect(s) so far, {len(status.open_defects)} open")
    return "\n".join(lines)


def format_listing(streams: list[dict[str, Any]]) -> str:
    """`list`'s lines: id, status, start time, defects (where the search attributes say), source."""
    lines = []
    for s in streams:
        defects = f"{s['defects']} defect(s), {s['open_defects']} open" if "defects" in s else ""
        source = s["source"] or ("(encrypted)" if "source_error" in s else "")
        of = f"  (rendition of {s['channel']})" if s.get("channel") else ""
        lines.append(f"{s['stream_id']:<32} {s['status']:<16} {s['start_time']}  {defects:<24} {source}{of}".rstrip())
    return "\n".join(lines)


def progress_line(status: StreamStatus, *, width: int = 30) -> str:
    """`--wait`'s line on a terminal: a bar (a file) or the position and lag (live), and the defects."""
    defects = f"{len(status.defects) + len(status.open_defects)} defect(s)"
    if status.live or not status.duration_s:
        lag = f"  lag {status.lag_s:.1f} s" if status.lag_s is not None else ""
        return f"{status.state} {status.position_s:.1f} s  {status.windows_done} windows{lag}  {defects}"
    fraction = min(1.0, status.position_s / status.duration_s)
    bar = "#" * round(fraction * width)
    total = f"/{status.windows_total}" if status.windows_total is not None else ""
    return (
        f"[{bar:<{width}}] {fraction:4.0%} {status.position_s:.1f}/{status.duration_s:.1f} s  "
        f"{status.windows_done}{total} windows  {defects}"
    )
