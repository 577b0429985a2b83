"""The stream's HTML report: one self-contained page beside report.json.

`write_report` renders it from the report and what the windows already wrote
to the results location (their documents' `metrics.measures`, the defects'
evidence), so nothing more travels through the workflow. The page needs no
network and no script: the timeline is inline SVG (a channel's lanes, one per
rendition, are positioned boxes), the evidence is embedded as data: URIs (a WAV
too big to embed is linked, relative to the page), and it reads on a phone as
well as on a desktop.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from vqa.contracts import Defect, RenditionReport, StreamReport, WindowMetrics, WindowResult
from vqa.settings import Settings

from .errors import UnreadableSourceError
from .store import Store, store_for

logger = logging.getLogger(__name__)

# `000003.json`, or `000003-<group>.json` written by a detector group of window 3.
_WINDOW_NAME = re.compile(r"^(\d{6,})(?:-[^/]+)?\.json$")
# More windows than this are averaged in runs, so a days-long stream's page stays small.
MAX_POINTS = 1500
# A WAV snippet up to this size is embedded; bigger ones, or once the page
# already embeds EMBED_TOTAL_BYTES of evidence, are linked instead.
EMBED_AUDIO_BYTES = 256 * 1024
EMBED_TOTAL_BYTES = 8 * 1024 * 1024
_READ_THREADS = 16
_WIDTH = 1000  # SVG user units across the whole timeline
_LANE_HEIGHT = 18
_CHANNEL_LANE_HEIGHT = 34  # px: a rendition's name over its type and state
_WRAP = ' class="wrap"'  # a cell of remote text (a name, a URI, an error), broken anywhere to fit
_CHART_HEIGHT = 36

_KIND_ORDER = (
    "black", "freeze", "blockiness", "blur", "silence", "clipping", "loudness", "av_sync", "decode_error", "signal_loss",
)
_KIND_COLOURS = {
    "black": "#222222", "freeze": "#1f77b4", "blockiness": "#d62728", "blur": "#8c564b", "silence": "#9467bd",
    "clipping": "#ff7f0e", "loudness": "#e377c2", "av_sync": "#17becf", "decode_error": "#bcbd22",
    "signal_loss": "#7f7f7f", "manifest_error": "#5d4037",
}
_EXTRA_COLOURS = ("#2ca02c", "#6b4c9a", "#b8860b", "#008080")
# How each kind's value reads (CONTRACT.md); fractions are shown as percentages.
_VALUE_UNITS = {
    "freeze": "MAFD", "silence": "dBFS", "blockiness": "score", "blur": "px", "loudness": "LUFS",
    "av_sync": "ms", "decode_error": "errors", "signal_loss": "s",
}
_FRACTION_KINDS = {"black": "of pixels black", "clipping": "of samples clipped"}
_MEASURE_UNITS = (("_lufs", "LUFS"), ("_db", "dB"), ("_ms", "ms"), ("_px", "px"), ("_ratio", "fraction"))


# ---------------------------------------------------------------- reading the results location


def build_report_html(report: StreamReport, *, windows: str, settings: Settings | None = None) -> str:
    """The page for `report`, from the window documents under `windows` and the defects' evidence.

    A location that cannot be listed or read (say, no s3:ListBucket) still gets
    a page, with a note instead of the timeline; a transient error propagates,
    so the activity is retried.
    """
    settings = settings if settings is not None else Settings()
    notes: list[str] = []
    try:
        documents = read_windows(windows, settings=settings)
    except UnreadableSourceError as exc:
        documents = []
        notes.append(f"window results could not be read: {exc}")
    evidence = read_evidence(report.defects, settings=settings)
    try:
        return render_report_html(report, documents, evidence, notes=notes)
    except Exception as exc:  # noqa: BLE001 - a page that cannot be drawn must not fail the stream's analysis
        logger.exception("report page of %s not drawn", report.stream_id)
        return render_report_html(report, [], {}, notes=[*notes, f"the report page could not be drawn: {exc!r}"])


def read_windows(directory: str, *, settings: Settings | None = None) -> list[WindowResult]:
    """The window documents under `directory`, one per window: documents of the same
    index (one per detector group) merged, their measures together."""
    store = store_for(directory, settings)
    uris = [uri for uri in store.list(directory) if _WINDOW_NAME.match(uri.rsplit("/", 1)[-1])]
    documents = _read_all(store, uris)
    merged: dict[int, WindowResult] = {}
    for uri in sorted(documents):
        try:
            doc = json.loads(documents[uri])
            metrics = doc.get("metrics") or {}
            part = WindowResult(
                index=int(doc["index"]),
                start_s=float(doc["start_s"]),
                end_s=float(doc["end_s"]),
                metrics=WindowMetrics(
                    video_frames=int(metrics.get("video_frames") or 0),
                    audio_samples=int(metrics.get("audio_samples") or 0),
                    measures={k: float(v) for k, v in (metrics.get("measures") or {}).items() if _finite(v)},
                ),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("skipping window document %s: %s", uri, exc)
            continue
        window = merged.setdefault(part.index, part)
        if window is not part:
            window.start_s, window.end_s = min(window.start_s, part.start_s), max(window.end_s, part.end_s)
            window.metrics.video_frames = max(window.metrics.video_frames, part.metrics.video_frames)
            window.metrics.audio_samples = max(window.metrics.audio_samples, part.metrics.audio_samples)
            window.metrics.measures.update(part.metrics.measures)
    return [merged[i] for i in sorted(merged)]


def read_evidence(defects: Iterable[Defect], *, settings: Settings | None = None) -> dict[str, bytes]:
    """The evidence objects the defects link, by URI; one that cannot be read is left out."""
    uris = sorted({str(d.details["evidence"]) for d in defects if d.details.get("evidence")})
    found: dict[str, bytes] = {}
    try:
        for store, group in _by_store(uris, settings).items():
            found |= _read_all(store, group, missing_ok=True)
    except UnreadableSourceError as exc:
        logger.warning("evidence not readable: %s", exc)
        return {}
    return found


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _by_store(uris: list[str], settings: Settings | None) -> dict[Store, list[str]]:
    """The URIs grouped by the store that holds them (evidence lies beside the stream's results)."""
    settings = settings if settings is not None else Settings()
    groups: dict[Store, list[str]] = {}
    for uri in uris:
        groups.setdefault(store_for(uri, settings), []).append(uri)
    return groups


def _read_all(store: Store, uris: list[str], *, missing_ok: bool = False) -> dict[str, bytes]:
    """Many small documents, read in parallel where each is a request (S3), else one by one."""

    def read(uri: str) -> tuple[str, bytes | None]:
        try:
            return uri, store.read(uri)
        except (FileNotFoundError, UnreadableSourceError) as exc:
            if not missing_ok:
                raise UnreadableSourceError(f"cannot read {uri}: {exc}") from exc
            logger.warning("cannot read %s: %s", uri, exc)
            return uri, None

    if len(uris) <= 1 or not store.parallel_reads:
        pairs = [read(u) for u in uris]
    else:
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            pairs = list(pool.map(read, uris))
    return {uri: body for uri, body in pairs if body is not None}


# ---------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Point:
    start_s: float
    end_s: float
    value: float


def render_report_html(
    report: StreamReport, windows: list[WindowResult], evidence: dict[str, bytes], *, notes: Iterable[str] = ()
) -> str:
    """The whole page: header, timeline (defect lanes, one curve per measure), defect table.

    A channel's (a report with `renditions`) has one lane per rendition instead of one per
    kind, a table of its renditions, and its defects' scope and renditions in the table.
    `evidence` maps a defect's `details["evidence"]` URI to its bytes. Pure: no I/O.
    """
    span_s = _span(report, windows)
    channel = bool(report.renditions)
    lanes = _channel_lanes(report, span_s) if channel else _kind_lanes(report.defects, span_s)
    body = [
        _header(report, windows),
        *(f'<p class="note">{_e(note)}</p>' for note in notes),
        _timeline(lanes, windows, span_s, channel=channel),
        *([_rendition_table(report)] if channel else []),
        _defect_table(report.defects, evidence, channel=channel),
    ]
    title = f"VQA report: {report.stream_id}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><main>\n{chr(10).join(body)}\n</main></body></html>\n"
    )


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _span(report: StreamReport, windows: list[WindowResult]) -> float:
    ends = [w.end_s for w in windows] + [d.end_s for d in report.defects]
    if report.media is not None:
        ends.append(report.media.duration_s)
    for own in (r.report for r in report.renditions if r.report is not None):
        ends += [d.end_s for d in own.defects] + [own.analysed_s or 0.0]
        if own.media is not None:
            ends.append(own.media.duration_s)
    return max([*ends, 0.0]) or 1.0


def _clock(t: float) -> str:
    """Seconds as m:ss.ss (h:mm:ss.ss from an hour on)."""
    sign = "-" if t < 0 else ""
    t = abs(t)
    hours, rest = divmod(t, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours >= 1:
        return f"{sign}{int(hours)}:{int(minutes):02d}:{seconds:05.2f}"
    return f"{sign}{int(minutes)}:{seconds:05.2f}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _colour(kind: str) -> str:
    if kind in _KIND_COLOURS:
        return _KIND_COLOURS[kind]
    return _EXTRA_COLOURS[sum(kind.encode()) % len(_EXTRA_COLOURS)]


def _header(report: StreamReport, windows: list[WindowResult]) -> str:
    media = report.media
    rows = [("source", _e(report.source)), ("status", f'<span class="status status-{_e(report.status)}">{_e(report.status)}</span>')]
    if report.error:
        rows.append(("error", _e(report.error)))
    if media is not None:
        rows.append(("duration", f"{_clock(media.duration_s)} ({media.duration_s:.1f} s)" + (" live" if media.live else "")))
        if media.video is not None:
            v = media.video
            rows.append(("video", _e(f"{v.codec} {v.width}x{v.height} {v.fps:g} fps")))
        if media.audio is not None:
            a = media.audio
            rows.append(("audio", _e(f"{a.codec} {a.sample_rate} Hz, {a.channels} ch")))
    if report.renditions:
        rows.append(("renditions", _e(_rendition_summary(report.renditions))))
        rows.append(("windows", f"{report.windows} × {report.window_seconds:g} s, across its renditions"))
    else:
        rows.append(("windows", f"{report.windows} × {report.window_seconds:g} s ({len(windows)} with results)"))
    rows.append(("defects", str(len(report.defects))))
    if report.results_uri:
        rows.append(("report.json", _e(report.results_uri)))
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f'<header id="summary"><h1>{_e(report.stream_id)}</h1><dl>{items}</dl></header>'


def _x(t: float, span_s: float) -> float:
    return round(min(max(t / span_s, 0.0), 1.0) * _WIDTH, 2)


def _ticks(span_s: float) -> str:
    steps = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400)
    step = next((s for s in steps if span_s / s <= 5), steps[-1] * math.ceil(span_s / 5 / steps[-1]))
    marks = []
    for i in range(int(span_s // step) + 1):
        t = i * step
        left = 100.0 * t / span_s
        align = "end" if left > 92 else "start" if left < 8 else "mid"
        marks.append(f'<span class="tick tick-{align}" style="left:{left:.2f}%">{_clock(t).removesuffix(".00")}</span>')
    return f'<div class="axis" aria-hidden="true">{"".join(marks)}</div>'


def _kinds(defects: list[Defect]) -> list[str]:
    present = {d.kind for d in defects}
    return [k for k in _KIND_ORDER if k in present] + sorted(present - set(_KIND_ORDER))


def _kind_lanes(defects: list[Defect], span_s: float) -> str:
    """A stream's defects: one lane per kind, each defect a band in its lane."""
    kinds = _kinds(defects)
    if not kinds:
        return '<p class="none">No defects.</p>'
    lanes = []
    for lane, kind in enumerate(kinds):
        y = lane * _LANE_HEIGHT
        lanes.append(f'<rect class="lane-bg" x="0" y="{y + 1}" width="{_WIDTH}" height="{_LANE_HEIGHT - 2}"/>')
        for number, d in enumerate(defects):
            if d.kind != kind:
                continue
            x0 = _x(d.start_s, span_s)
            width = max(_x(d.end_s, span_s) - x0, 3.0)  # a short defect on a long stream stays visible
            label = f"{d.kind} ({d.track}) {_clock(d.start_s)}–{_clock(d.end_s)}, {d.duration_s:.2f} s"
            lanes.append(
                f'<a href="#defect-{number + 1}"><rect class="defect-band" data-kind="{_e(d.kind)}" '
                f'data-track="{_e(d.track)}" data-start="{d.start_s:.3f}" data-end="{d.end_s:.3f}" '
                f'x="{x0}" y="{y + 2}" width="{width:.2f}" height="{_LANE_HEIGHT - 4}" fill="{_colour(kind)}">'
                f"<title>{_e(label)}</title></rect></a>"
            )
    labels = "".join(
        f'<li style="height:{_LANE_HEIGHT}px"><i style="background:{_colour(k)}"></i>{_e(k)}</li>' for k in kinds
    )
    height = len(kinds) * _LANE_HEIGHT
    return (
        f'<div class="lanes"><ul class="lane-labels">{labels}</ul>'
        f'<svg class="defect-lanes" viewBox="0 0 {_WIDTH} {height}" preserveAspectRatio="none" '
        f'style="height:{height}px" role="img" aria-label="defects by kind">{"".join(lanes)}</svg></div>'
    )


def _timeline(lanes: str, windows: list[WindowResult], span_s: float, *, channel: bool = False) -> str:
    opening = '<section id="timeline" class="channel">' if channel else '<section id="timeline">'
    parts = [f"{opening}<h2>Timeline</h2>", _ticks(span_s), lanes]
    measures = sorted({name for w in windows for name in w.metrics.measures})
    for name in measures:
        parts.append(_measure_chart(name, windows, span_s))
    if not measures:
        none = "Each rendition's measures are on its own page." if channel else "No per-window measures."
        parts.append(f'<p class="none">{none}</p>')
    parts.append("</section>")
    return "\n".join(parts)


def _series(name: str, windows: list[WindowResult]) -> list[_Point]:
    points = [_Point(w.start_s, w.end_s, w.metrics.measures[name]) for w in windows if name in w.metrics.measures]
    if len(points) <= MAX_POINTS:
        return points
    run = math.ceil(len(points) / MAX_POINTS)
    return [
        _Point(chunk[0].start_s, chunk[-1].end_s, sum(p.value for p in chunk) / len(chunk))
        for chunk in (points[i : i + run] for i in range(0, len(points), run))
    ]


def _measure_chart(name: str, windows: list[WindowResult], span_s: float) -> str:
    """One measure as a step curve: each window's value held over the window."""
    points = _series(name, windows)
    low, high = min(p.value for p in points), max(p.value for p in points)
    pad = (high - low) * 0.1 or max(abs(high) * 0.1, 1e-9)
    bottom, top = low - pad, high + pad

    def y(value: float) -> float:
        return round((top - value) / (top - bottom) * _CHART_HEIGHT, 2)

    path: list[str] = []
    previous_end: float | None = None
    for p in points:
        x0, x1, level = _x(p.start_s, span_s), _x(p.end_s, span_s), y(p.value)
        joined = previous_end is not None and abs(p.start_s - previous_end) < 1e-3
        path.append(f"{'L' if joined else 'M'}{x0} {level}H{x1}")
        previous_end = p.end_s
    unit = next((u for suffix, u in _MEASURE_UNITS if name.endswith(suffix)), "")
    scale = f"{_number(low)} … {_number(high)} {unit}".rstrip()
    return (
        f'<figure class="measure" data-measure="{_e(name)}"><figcaption><b>{_e(name)}</b> '
        f'<span class="range">{_e(scale)}</span></figcaption>'
        f'<svg viewBox="0 0 {_WIDTH} {_CHART_HEIGHT}" preserveAspectRatio="none" style="height:{_CHART_HEIGHT}px" '
        f'role="img" aria-label="{_e(name)} per window">'
        f'<path class="measure-curve" data-measure="{_e(name)}" d="{"".join(path)}">'
        f"<title>{_e(name)}: {_e(scale)}</title></path></svg></figure>"
    )


def _defect_table(defects: list[Defect], evidence: dict[str, bytes], *, channel: bool = False) -> str:
    """One row per defect; a channel's also say its scope and the renditions it was seen on."""
    if not defects:
        return '<section id="defects"><h2>Defects</h2><p class="none">No defects found.</p></section>'
    embedded = 0
    rows = []
    for number, d in enumerate(defects, start=1):
        cell, size = _evidence_cell(d, evidence, budget=EMBED_TOTAL_BYTES - embedded)
        embedded += size
        where = ""
        if channel:
            scope = str(d.details.get("scope") or ("manifest" if d.track == "manifest" else ""))
            where = (
                f'<td data-label="scope">{_e(scope)}</td>'
                f'<td data-label="renditions" class="where">{_e(", ".join(_names(d)))}</td>'
            )
        rows.append(
            f'<tr class="defect-row" id="defect-{number}" data-kind="{_e(d.kind)}" data-track="{_e(d.track)}" '
            f'data-start="{d.start_s:.3f}" data-end="{d.end_s:.3f}">'
            f'<td data-label="kind"><i class="swatch" style="background:{_colour(d.kind)}"></i>{_e(d.kind)}</td>'
            f'<td data-label="track">{_e(d.track)}</td>{where}'
            f'<td data-label="start" class="num">{_clock(d.start_s)}</td>'
            f'<td data-label="end" class="num">{_clock(d.end_s)}</td>'
            f'<td data-label="duration" class="num">{d.duration_s:.2f} s</td>'
            f'<td data-label="value" class="num">{_e(_value_text(d))}</td>'
            f'<td data-label="evidence" class="evidence">{cell}</td></tr>'
        )
    names = ("kind", "track", *(("scope", "renditions") if channel else ()), "start", "end", "duration", "value", "evidence")
    head = "".join(f"<th>{h}</th>" for h in names)
    return (
        f'<section id="defects"><h2>Defects</h2><table class="defects"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></section>'
    )


def _value_text(defect: Defect) -> str:
    if defect.kind == "manifest_error":
        check = str(defect.details.get("check") or "")
        return f"{check} {_number(defect.value)}".strip()
    if defect.value is None:
        return ""
    if defect.kind in _FRACTION_KINDS:
        return f"{defect.value * 100:.3g} % {_FRACTION_KINDS[defect.kind]}"
    return f"{_number(defect.value)} {_VALUE_UNITS.get(defect.kind, '')}".rstrip()


def _evidence_cell(defect: Defect, evidence: dict[str, bytes], *, budget: int) -> tuple[str, int]:
    """The defect's evidence: an embedded thumbnail or player, else a link beside the page; and bytes embedded."""
    uri = defect.details.get("evidence")
    if not uri:
        return "", 0
    name = str(uri).rsplit("/", 1)[-1]
    body = evidence.get(str(uri))
    relative = f"evidence/{name}"
    if body is None:
        return f'<span class="missing">{_e(name)} (not found)</span>', 0
    alt = f"{defect.kind} at {_clock(defect.start_s)}"
    if name.endswith(".jpg") and len(body) <= budget:
        data = base64.b64encode(body).decode()
        return f'<img class="evidence-image" alt="{_e(alt)}" src="data:image/jpeg;base64,{data}">', len(body)
    if name.endswith(".wav") and len(body) <= min(EMBED_AUDIO_BYTES, budget):
        data = base64.b64encode(body).decode()
        return (
            f'<audio class="evidence-audio" controls preload="metadata" aria-label="{_e(alt)}" '
            f'src="data:audio/wav;base64,{data}"></audio>',
            len(body),
        )
    return f'<a class="evidence-link" href="{_e(relative)}">{_e(name)}</a>', 0


# ---------------------------------------------------------------- a channel: one lane per rendition


def _rendition_state(rendition: RenditionReport) -> str:
    """completed, stopped or failed as its own report says; failed with no report (it could not be
    loaded or started); or not decoded (`--renditions` left it out)."""
    if rendition.report is not None:
        return rendition.report.status
    return "failed" if rendition.error else "not decoded"


def _rendition_error(rendition: RenditionReport) -> str | None:
    return rendition.error or (rendition.report.error if rendition.report is not None else None)


def _rendition_shape(rendition: RenditionReport) -> str:
    """A video rendition's picture size, an audio rendition's language."""
    if rendition.type == "audio":
        return rendition.language or ""
    if rendition.width and rendition.height:
        return f"{rendition.width}×{rendition.height}"
    return f"{rendition.height} lines" if rendition.height else ""


def _rendition_summary(renditions: list[RenditionReport]) -> str:
    states = Counter(_rendition_state(r) for r in renditions)
    types = Counter(r.type for r in renditions)
    kinds = ", ".join(f"{n} {t}" for t, n in sorted(types.items(), key=lambda tn: tn[0] != "video"))
    return f"{len(renditions)} ({kinds}): " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))


def _names(defect: Defect) -> list[str]:
    """The renditions a channel defect names (`details.renditions`)."""
    names = defect.details.get("renditions")
    return [str(n) for n in names] if isinstance(names, list) else []


def _own_page(channel: StreamReport, rendition: RenditionReport) -> str | None:
    """The rendition's own page, relative to the channel's: both lie in the same results location."""
    theirs = rendition.report.report_html_uri if rendition.report is not None else None
    if not theirs or not channel.report_html_uri:
        return None
    mine, own = channel.report_html_uri.rsplit("/", 2), theirs.rsplit("/", 2)
    if len(mine) != 3 or len(own) != 3 or mine[0] != own[0]:
        return None
    return f"../{quote(own[1], safe='')}/{quote(own[2], safe='')}"


def _band(defect: Defect, number: int | None, *, span_s: float, lane: int, lanes: int, scope: str, where: str) -> str:
    """One defect as a band over `lanes` lanes from `lane`, linked to its row of the table."""
    left = 100.0 * _x(defect.start_s, span_s) / _WIDTH
    width = 100.0 * _x(defect.end_s, span_s) / _WIDTH - left
    top, height = lane * _CHANNEL_LANE_HEIGHT + 3, lanes * _CHANNEL_LANE_HEIGHT - 6
    label = (
        f"{defect.kind} ({defect.track}) {_clock(defect.start_s)}–{_clock(defect.end_s)}, "
        f"{defect.duration_s:.2f} s; {scope}: {where}"
    )
    link = f' href="#defect-{number}"' if number is not None else ""
    return (
        f'<a class="defect-band band-{_e(scope)}"{link} data-kind="{_e(defect.kind)}" data-track="{_e(defect.track)}" '
        f'data-start="{defect.start_s:.3f}" data-end="{defect.end_s:.3f}" data-scope="{_e(scope)}" '
        f'data-renditions="{_e(where)}" title="{_e(label)}" style="left:{left:.3f}%;width:{width:.3f}%;'
        f'top:{top}px;height:{height}px;background:{_colour(defect.kind)}"></a>'
    )


def _channel_row(defects: list[Defect], own: Defect, name: str) -> tuple[int, Defect] | None:
    """The channel's defect (numbered as in the table) that `name`'s own defect is part of."""
    for number, d in enumerate(defects, start=1):
        overlaps = d.start_s <= own.end_s + 1e-6 and own.start_s <= d.end_s + 1e-6
        if d.kind == own.kind and d.track == own.track and name in _names(d) and overlaps:
            return number, d
    return None


def _lane_label(channel: StreamReport, rendition: RenditionReport) -> str:
    state, error = _rendition_state(rendition), _rendition_error(rendition)
    name = _e(rendition.name)
    page = _own_page(channel, rendition)
    if page is not None:
        name = f'<a href="{_e(page)}">{name}</a>'
    meta = " ".join(p for p in (rendition.type, _rendition_shape(rendition)) if p)
    tip = f"{rendition.name}: {rendition.uri}" + (f" ({error})" if error else "")
    return (
        f'<li class="lane-label" data-lane="{_e(rendition.name)}" data-state="{_e(state)}" title="{_e(tip)}" '
        f'style="height:{_CHANNEL_LANE_HEIGHT}px"><span class="lane-name">{name}</span>'
        f'<span class="lane-meta">{_e(meta)} <span class="state state-{_e(state.replace(" ", "-"))}">'
        f"{_e(state)}</span></span></li>"
    )


def _lane(rendition: RenditionReport, lane: int) -> str:
    """The lane's ground: a note across it when the rendition has nothing to draw (not decoded, failed)."""
    state, error = _rendition_state(rendition), _rendition_error(rendition)
    note = f"{state}: {error}" if error else ("not decoded" if rendition.report is None else "")
    text = f'<span class="lane-note">{_e(note)}</span>' if note else ""
    return (
        f'<div class="lane lane-{_e(state.replace(" ", "-"))}" data-lane="{_e(rendition.name)}" '
        f'data-type="{_e(rendition.type)}" style="top:{lane * _CHANNEL_LANE_HEIGHT}px;'
        f'height:{_CHANNEL_LANE_HEIGHT}px">{text}</div>'
    )


def _channel_lanes(report: StreamReport, span_s: float) -> str:
    """A lane per rendition (video, then audio, so that a source band covers one block of lanes), and
    one for the manifest when it has defects. A rendition's own defects are bands in its lane; a
    source-scoped defect is one band across every lane of its type, instead of one per lane."""
    renditions = sorted(report.renditions, key=lambda r: r.type != "video")
    manifest = [(n, d) for n, d in enumerate(report.defects, start=1) if d.track == "manifest"]
    first = 1 if manifest else 0
    labels, ground, bands = [], [], []
    if manifest:
        labels.append(
            f'<li class="lane-label" data-lane="manifest" style="height:{_CHANNEL_LANE_HEIGHT}px">'
            '<span class="lane-name">manifest</span><span class="lane-meta">playlists</span></li>'
        )
        ground.append(f'<div class="lane" data-lane="manifest" style="top:0;height:{_CHANNEL_LANE_HEIGHT}px"></div>')
        for number, d in manifest:
            bands.append(_band(d, number, span_s=span_s, lane=0, lanes=1, scope="manifest", where=", ".join(_names(d))))
    for lane, rendition in enumerate(renditions, start=first):
        labels.append(_lane_label(report, rendition))
        ground.append(_lane(rendition, lane))
        for own in rendition.report.defects if rendition.report is not None else []:
            found = _channel_row(report.defects, own, rendition.name)
            if found is not None and found[1].details.get("scope") == "source":
                continue  # drawn once, across the lanes
            number = found[0] if found is not None else None
            bands.append(_band(own, number, span_s=span_s, lane=lane, lanes=1, scope="rendition", where=rendition.name))
    bands += _source_bands(report.defects, renditions, span_s=span_s, first=first)
    height = (first + len(renditions)) * _CHANNEL_LANE_HEIGHT
    kinds = _kinds(report.defects)
    legend = "".join(f'<li><i style="background:{_colour(k)}"></i>{_e(k)}</li>' for k in kinds)
    return (
        f'<div class="lanes channel-lanes"><ul class="lane-labels">{"".join(labels)}</ul>'
        f'<div class="lane-tracks" role="group" aria-label="defects by rendition" style="height:{height}px">'
        f'{"".join(ground)}{"".join(bands)}</div></div>'
        + (f'<ul class="legend">{legend}<li><i class="source-key"></i>source: every rendition of its type</li></ul>'
           if kinds else '<p class="none">No defects.</p>')
    )


def _source_bands(defects: list[Defect], renditions: list[RenditionReport], *, span_s: float, first: int) -> list[str]:
    """Each source-scoped defect as one band over the block of lanes of its type (video or audio)."""
    types = {r.name: r.type for r in renditions}
    bands = []
    for number, d in enumerate(defects, start=1):
        if d.details.get("scope") != "source":
            continue
        named = {types[n] for n in _names(d) if n in types}
        kind = named.pop() if len(named) == 1 else ("audio" if d.track.startswith("audio") else "video")
        lanes = [i for i, r in enumerate(renditions, start=first) if r.type == kind] or [
            i for i, _ in enumerate(renditions, start=first)
        ]
        bands.append(_band(
            d, number, span_s=span_s, lane=lanes[0], lanes=lanes[-1] - lanes[0] + 1, scope="source",
            where=", ".join(_names(d)),
        ))
    return bands


def _rendition_table(report: StreamReport) -> str:
    """Every rendition as the master lists it, its state and error, and where its own page is."""
    rows = []
    for r in report.renditions:
        state, error = _rendition_state(r), _rendition_error(r)
        page = _own_page(report, r)
        name = f'<a href="{_e(page)}">{_e(r.name)}</a>' if page else _e(r.name)
        own = r.report
        cells = (
            ("rendition", name), ("type", _e(r.type)), ("size / lang", _e(_rendition_shape(r))),
            ("bandwidth", _e(f"{r.bandwidth / 1e6:.3g} Mb/s" if r.bandwidth else "")),
            ("state", f'<span class="state state-{_e(state.replace(" ", "-"))}">{_e(state)}</span>'),
            ("windows", str(own.windows) if own is not None else ""),
            ("defects", str(len(own.defects)) if own is not None else ""),
            ("error", f'<span class="error">{_e(error)}</span>' if error else ""), ("playlist", _e(r.uri)),
        )
        tds = "".join(
            f'<td data-label="{label}"{_WRAP if label in ("rendition", "error", "playlist") else ""}>{value}</td>'
            for label, value in cells
        )
        rows.append(f'<tr class="rendition-row" data-rendition="{_e(r.name)}" data-state="{_e(state)}">{tds}</tr>')
    head = "".join(f"<th>{h}</th>" for h in (
        "rendition", "type", "picture / language", "bandwidth", "state", "windows", "defects", "error", "playlist",
    ))
    return (
        f'<section id="renditions"><h2>Renditions</h2><table class="renditions"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></section>'
    )


_CSS = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:12px}
h1{font-size:1.4rem;margin:.2rem 0 .6rem;overflow-wrap:anywhere}
h2{font-size:1.1rem;margin:1.2rem 0 .5rem}
header{margin-bottom:1rem}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.15rem .8rem;margin:0}
dt{color:#666}
dd{margin:0;overflow-wrap:anywhere;min-width:0}
.status{padding:0 .4em;border-radius:3px;color:#fff;background:#2e7d32}
.status-failed{background:#c62828}
.status-stopped{background:#ef6c00}
.note{background:#fff3cd;padding:.4rem .6rem;border-radius:4px;overflow-wrap:anywhere}
.none{color:#666}
#timeline{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 10px}
svg{display:block;width:100%}
.axis{position:relative;height:1.2em;margin-left:var(--label-w);font-size:.75rem;color:#666}
.tick{position:absolute;top:0;white-space:nowrap;transform:translateX(-50%)}
.tick-start{transform:none}
.tick-end{transform:translateX(-100%)}
#timeline{--label-w:6.5rem}
.lanes{display:grid;grid-template-columns:var(--label-w) minmax(0,1fr)}
.lane-labels{list-style:none;margin:0;padding:0;font-size:.75rem}
.lane-labels li{display:flex;align-items:center;gap:.3em;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.lane-labels i,.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;flex:none}
.swatch{margin-right:.35em;vertical-align:-.05em}
.lane-bg{fill:#f1f1f1}
.defect-band{opacity:.85}
.measure{margin:.5rem 0 0 var(--label-w);border-top:1px solid #eee}
.measure figcaption{font-size:.75rem;display:flex;flex-wrap:wrap;gap:0 .6em;overflow-wrap:anywhere}
.measure .range{color:#666}
.measure-curve{fill:none;stroke:#1565c0;stroke-width:1.5;vector-effect:non-scaling-stroke}
table.defects,table.renditions{border-collapse:collapse;width:100%;background:#fff}
:is(.defects,.renditions) th,:is(.defects,.renditions) td{border-bottom:1px solid #e3e3e3;padding:.35rem .5rem;text-align:left;vertical-align:middle}
.defects .num{font-variant-numeric:tabular-nums;white-space:nowrap}
.evidence-image{display:block;width:128px;max-width:100%;height:auto;border-radius:3px;background:#000}
.evidence-audio{width:220px;max-width:100%}
.missing{color:#999}
#timeline.channel{--label-w:10rem}
.channel-lanes .lane-labels li{flex-direction:column;align-items:stretch;justify-content:center;gap:0;line-height:1.2}
.lane-name,.lane-meta{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.lane-name{font-weight:600}
.lane-meta{color:#555}
.lane-tracks{position:relative;overflow:hidden}
.lane{position:absolute;left:0;right:0;background:#f1f1f1;border-top:1px solid #fff;border-bottom:1px solid #fff;overflow:hidden}
.lane-not-decoded{background:repeating-linear-gradient(135deg,#f4f4f4 0 6px,#e6e6e6 6px 12px)}
.lane-failed{background:#fdecea}
.lane-note{display:block;padding:0 .4em;font-size:.75rem;line-height:30px;color:#555;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.lane-failed .lane-note{color:#b71c1c}
.channel-lanes .defect-band{position:absolute;display:block;min-width:3px;border-radius:2px}
.band-source{opacity:.55;outline:2px dashed #000;outline-offset:-2px}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:.2rem .9rem;margin:.4rem 0 0 var(--label-w);padding:0;font-size:.75rem}
.legend li{display:flex;align-items:center;gap:.3em}
.legend i{display:inline-block;width:.8em;height:.8em;border-radius:2px}
.legend .source-key{background:#999;opacity:.55;outline:2px dashed #000;outline-offset:-2px;width:1.4em}
.state{font-size:.8em;padding:0 .35em;border-radius:3px;background:#e8f5e9;color:#1b5e20}
.state-failed{background:#fdecea;color:#b71c1c}
.state-stopped{background:#fff3e0;color:#e65100}
.state-not-decoded{background:#eee;color:#555}
.renditions .error{color:#b71c1c}
.renditions td{white-space:nowrap}
.state{justify-self:start}
.renditions td.wrap{white-space:normal;overflow-wrap:anywhere;min-width:6rem}
.defects .where{overflow-wrap:anywhere}
a{color:#1565c0}
@media (max-width:640px){
 main{padding:8px}
 #timeline{--label-w:4.6rem;padding:6px}
 #timeline.channel{--label-w:6rem}
 table:is(.defects,.renditions),:is(.defects,.renditions) :is(tbody,tr,td){display:block;width:100%}
 :is(.defects,.renditions) thead{display:none}
 :is(.defects,.renditions) tr{border:1px solid #ddd;border-radius:6px;margin:.5rem 0;padding:.3rem .5rem}
 :is(.defects,.renditions) td{border:0;padding:.15rem 0;display:grid;grid-template-columns:5.5rem minmax(0,1fr)}
 :is(.defects,.renditions) td::before{content:attr(data-label);color:#666}
 .renditions td:empty{display:none}
}
"""
