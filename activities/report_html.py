"""The stream's HTML report: one self-contained page beside report.json.

`write_report` renders it from the report and what the windows already wrote
to the results location (their documents' `metrics.measures`, the defects'
evidence), so nothing more travels through the workflow. The page needs no
network and no script: the timeline is inline SVG, the evidence is embedded
as data: URIs (a WAV too big to embed is linked, relative to the page), and
it reads on a phone as well as on a desktop.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from vqa.contracts import Defect, StreamReport, WindowMetrics, WindowResult
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
_CHART_HEIGHT = 36

_KIND_ORDER = (
    "black", "freeze", "blockiness", "blur", "silence", "clipping", "loudness", "av_sync", "decode_error", "signal_loss",
)
_KIND_COLOURS = {
    "black": "#222222", "freeze": "#1f77b4", "blockiness": "#d62728", "blur": "#8c564b", "silence": "#9467bd",
    "clipping": "#ff7f0e", "loudness": "#e377c2", "av_sync": "#17becf", "decode_error": "#bcbd22",
    "signal_loss": "#7f7f7f",
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

    `evidence` maps a defect's `details["evidence"]` URI to its bytes. Pure: no I/O.
    """
    span_s = _span(report, windows)
    body = [
        _header(report, windows),
        *(f'<p class="note">{_e(note)}</p>' for note in notes),
        _timeline(report.defects, windows, span_s),
        _defect_table(report.defects, evidence),
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


def _timeline(defects: list[Defect], windows: list[WindowResult], span_s: float) -> str:
    parts = ['<section id="timeline"><h2>Timeline</h2>', _ticks(span_s)]
    kinds = _kinds(defects)
    if kinds:
        lanes = []
        for lane, kind in enumerate(kinds):
            y = lane * _LANE_HEIGHT
            lanes.append(
                f'<rect class="lane-bg" x="0" y="{y + 1}" width="{_WIDTH}" height="{_LANE_HEIGHT - 2}"/>'
            )
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
        parts.append(
            f'<div class="lanes"><ul class="lane-labels">{labels}</ul>'
            f'<svg class="defect-lanes" viewBox="0 0 {_WIDTH} {height}" preserveAspectRatio="none" '
            f'style="height:{height}px" role="img" aria-label="defects by kind">{"".join(lanes)}</svg></div>'
        )
    else:
        parts.append('<p class="none">No defects.</p>')
    measures = sorted({name for w in windows for name in w.metrics.measures})
    for name in measures:
        parts.append(_measure_chart(name, windows, span_s))
    if not measures:
        parts.append('<p class="none">No per-window measures.</p>')
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


def _defect_table(defects: list[Defect], evidence: dict[str, bytes]) -> str:
    if not defects:
        return '<section id="defects"><h2>Defects</h2><p class="none">No defects found.</p></section>'
    embedded = 0
    rows = []
    for number, d in enumerate(defects, start=1):
        cell, size = _evidence_cell(d, evidence, budget=EMBED_TOTAL_BYTES - embedded)
        embedded += size
        value = _value_text(d)
        rows.append(
            f'<tr class="defect-row" id="defect-{number}" data-kind="{_e(d.kind)}" data-track="{_e(d.track)}" '
            f'data-start="{d.start_s:.3f}" data-end="{d.end_s:.3f}">'
            f'<td data-label="kind"><i class="swatch" style="background:{_colour(d.kind)}"></i>{_e(d.kind)}</td>'
            f'<td data-label="track">{_e(d.track)}</td>'
            f'<td data-label="start" class="num">{_clock(d.start_s)}</td>'
            f'<td data-label="end" class="num">{_clock(d.end_s)}</td>'
            f'<td data-label="duration" class="num">{d.duration_s:.2f} s</td>'
            f'<td data-label="value" class="num">{_e(value)}</td>'
            f'<td data-label="evidence" class="evidence">{cell}</td></tr>'
        )
    head = "".join(f"<th>{h}</th>" for h in ("kind", "track", "start", "end", "duration", "value", "evidence"))
    return (
        f'<section id="defects"><h2>Defects</h2><table class="defects"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></section>'
    )


def _value_text(defect: Defect) -> str:
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
table.defects{border-collapse:collapse;width:100%;background:#fff}
.defects th,.defects td{border-bottom:1px solid #e3e3e3;padding:.35rem .5rem;text-align:left;vertical-align:middle}
.defects .num{font-variant-numeric:tabular-nums;white-space:nowrap}
.evidence-image{display:block;width:128px;max-width:100%;height:auto;border-radius:3px;background:#000}
.evidence-audio{width:220px;max-width:100%}
.missing{color:#999}
a{color:#1565c0}
@media (max-width:640px){
 main{padding:8px}
 #timeline{--label-w:4.6rem;padding:6px}
 table.defects,.defects tbody,.defects tr,.defects td{display:block;width:100%}
 .defects thead{display:none}
 .defects tr{border:1px solid #ddd;border-radius:6px;margin:.5rem 0;padding:.3rem .5rem}
 .defects td{border:0;padding:.15rem 0;display:grid;grid-template-columns:5.5rem minmax(0,1fr)}
 .defects td::before{content:attr(data-label);color:#666}
}
"""
