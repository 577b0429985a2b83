"""The HTML report beside report.json: what it shows, that it stands alone, and how a browser renders it."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import av
import numpy as np
import pytest

from activities.report_html import read_windows, render_report_html
from support.seaweedfs import SeaweedFS
from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from workflows import StreamMonitorWorkflow

from . import browser, media
from .conftest import REPO, TemporalServer, run_async, run_starter, running_worker, worker_subprocess

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "tests" / "artifacts"
# Text a user could give (a source's name, an error naming it): it must show as text, never become markup.
HOSTILE = "main <img src=x onerror=alert(1)> & 'q\" <script>alert(2)</script>.mp4"


# ---------------------------------------------------------------- a small DOM of the page


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None
    text: str = ""
    children: list[Element] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def inside(self, element_id: str) -> bool:
        node = self.parent
        while node is not None:
            if node.attrs.get("id") == element_id:
                return True
            node = node.parent
        return False

    def descendants(self) -> Iterator[Element]:
        for child in self.children:
            yield child
            yield from child.descendants()


class Page(HTMLParser):
    """Every element with its attributes, parent and text (enough to check the page's structure)."""

    _VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._add(tag, attrs, closes=tag in self._VOID)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._add(tag, attrs, closes=True)

    def _add(self, tag: str, attrs: list[tuple[str, str | None]], *, closes: bool) -> None:
        parent = self._open[-1] if self._open else None
        element = Element(tag, {k: v or "" for k, v in attrs}, parent)
        if parent is not None:
            parent.children.append(element)
        self.elements.append(element)
        if not closes:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def find(self, *, tag: str | None = None, cls: str | None = None) -> list[Element]:
        return [e for e in self.elements if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)]

    def by_id(self, element_id: str) -> Element:
        (element,) = [e for e in self.elements if e.attrs.get("id") == element_id]
        return element


def _same_defect(element: Element, defect) -> bool:  # type: ignore[no-untyped-def]
    a = element.attrs
    return (
        a.get("data-kind") == defect.kind
        and a.get("data-track") == defect.track
        and abs(float(a.get("data-start", "nan")) - defect.start_s) < 1e-3
        and abs(float(a.get("data-end", "nan")) - defect.end_s) < 1e-3
    )


def _check_defects_drawn(page: Page, report: StreamReport) -> None:
    """Each defect: one coloured band in its kind's lane of the timeline and one table row."""
    bands = page.find(cls="defect-band")
    rows = page.find(tag="tr", cls="defect-row")
    assert len(bands) == len(rows) == len(report.defects)
    for defect in report.defects:
        band = [b for b in bands if _same_defect(b, defect)]
        row = [r for r in rows if _same_defect(r, defect)]
        assert len(band) == 1 and len(row) == 1, (defect, "one band and one row per defect")
        assert band[0].inside("timeline") and band[0].attrs.get("fill", "").startswith("#")
        assert float(band[0].attrs["width"]) > 0
        cells = [c.text for c in row[0].children]
        assert cells[0] == defect.kind and cells[1] == defect.track, cells


# ---------------------------------------------------------------- one real stream, through starter.py and worker.py


@dataclass(frozen=True)
class Analysed:
    report: StreamReport
    results: Path
    table: str

    @property
    def html_path(self) -> Path:
        return self.results / self.report.stream_id / "report.html"


@pytest.fixture(scope="module")
def analysed(temporal_server: TemporalServer, clips: media.ClipFactory, tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    """The MAIN clip (black, freeze, silence at known times) analysed by `worker.py` as
    started by `starter.py --wait` (the table, then attached to again with --json)."""
    directory = tmp_path_factory.mktemp("report-html")
    source = clips("main")
    results = directory / "results"
    queue, sid = f"test-{uuid.uuid4().hex[:12]}", f"html-{uuid.uuid4().hex[:6]}"
    args = (str(source), "--wait", "--stream-id", sid, "--window-seconds", "4", "--results", str(results))
    with worker_subprocess(temporal_server.env(queue), directory / "worker.log"):
        table = run_starter(temporal_server, queue, *args)
        assert table.returncode == 0, table.stderr
        attached = run_starter(temporal_server, queue, *args, "--json")
        assert attached.returncode == 0, attached.stderr
    report = StreamReport.model_validate_json(attached.stdout)
    assert report.status == "completed" and media.match(report.defects, media.MAIN_TRUTH) == []
    return Analysed(report=report, results=results, table=table.stdout)


def test_starter_says_where_the_html_report_is(analysed: Analysed) -> None:
    html_path = analysed.html_path
    assert html_path.is_file()
    assert analysed.report.report_html_uri == str(html_path)
    assert f"html    {html_path}" in analysed.table.splitlines()
    written = StreamReport.model_validate_json((html_path.parent / "report.json").read_text())
    assert written.report_html_uri == str(html_path) and written.defects == analysed.report.defects


def test_report_html_shows_every_defect_measure_and_evidence(analysed: Analysed) -> None:
    report, text = analysed.report, analysed.html_path.read_text()
    page = Page(text)

    summary = page.by_id("summary")
    assert report.stream_id in summary.text and "completed" in summary.text
    assert report.source in summary.text
    _check_defects_drawn(page, report)

    windows = [json.loads(p.read_text()) for p in (analysed.results / report.stream_id / "windows").glob("*.json")]
    assert len(windows) == report.windows == 8
    recorded = Counter(name for w in windows for name in w["metrics"]["measures"])
    assert {"black_frame_ratio", "audio_rms_db", "loudness_integrated_lufs", "blockiness_mean"} <= set(recorded)
    curves = {c.attrs["data-measure"]: c for c in page.find(cls="measure-curve")}
    assert set(curves) == set(recorded), "one curve per measure the windows recorded"
    for name, curve in curves.items():
        assert curve.inside("timeline")
        assert curve.attrs["d"].count("H") == recorded[name], (name, "one step per window that measured it")
    assert curves["black_frame_ratio"].attrs["d"].startswith("M0.0 ") and curves["black_frame_ratio"].attrs["d"].endswith(
        "H1000.0"
    ), "a measure every window has spans the whole timeline"

    # Self-contained: nothing to fetch but the page itself.
    assert not page.find(tag="script") and not page.find(tag="link") and "url(" not in text and "@import" not in text
    for element in page.elements:
        for name in ("src", "href", "xlink:href"):
            value = element.attrs.get(name)
            if value is not None:
                external = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:|//", value) and not value.startswith("data:")
                assert not external, (element.tag, name, value[:80])

    # The evidence is in the page: the same bytes the windows wrote.
    for number, defect in enumerate(report.defects, start=1):
        evidence = Path(defect.details["evidence"]).read_bytes()
        row = page.by_id(f"defect-{number}")
        tag, mime = ("img", "image/jpeg") if defect.track == "video" else ("audio", "audio/wav")
        (player,) = [e for e in row.descendants() if e.tag == tag]
        prefix = f"data:{mime};base64,"
        assert player.attrs["src"].startswith(prefix)
        assert base64.b64decode(player.attrs["src"][len(prefix) :]) == evidence, defect.kind


def test_user_text_is_shown_as_text_never_as_markup(analysed: Analysed) -> None:
    report = analysed.report.model_copy(update={"source": HOSTILE, "error": f"cannot read {HOSTILE}"})
    text = render_report_html(report, [], {}, notes=[HOSTILE])
    page = Page(text)
    assert HOSTILE in page.by_id("summary").text and f"cannot read {HOSTILE}" in page.by_id("summary").text
    assert "<img src=x" not in text and "<script>" not in text
    assert not page.find(tag="script") and len(page.find(tag="img")) == 0, "no evidence given: no image at all"


def test_window_documents_of_detector_groups_are_merged(analysed: Analysed, tmp_path: Path) -> None:
    """A window analysed by several detector groups, each writing `NNNNNN-<group>.json`, is one point per measure."""
    windows = tmp_path / "windows"
    shutil.copytree(analysed.results / analysed.report.stream_id / "windows", windows)
    main_doc = json.loads((windows / "000002.json").read_text())
    audio = {k: v for k, v in main_doc["metrics"]["measures"].items() if k.startswith(("audio_", "loudness_"))}
    assert audio
    group_doc = json.loads(json.dumps(main_doc))
    group_doc["metrics"]["measures"] = {**audio, "group_only_score": 0.25}
    main_doc["metrics"]["measures"] = {k: v for k, v in main_doc["metrics"]["measures"].items() if k not in audio}
    (windows / "000002.json").write_text(json.dumps(main_doc))
    (windows / "000002-vqa-audio.json").write_text(json.dumps(group_doc))

    merged = read_windows(str(windows))
    assert [w.index for w in merged] == list(range(analysed.report.windows))
    assert merged[2].metrics.measures == {**main_doc["metrics"]["measures"], **audio, "group_only_score": 0.25}
    assert set(audio) <= set(merged[3].metrics.measures) and "group_only_score" not in merged[3].metrics.measures
    page = Page(render_report_html(analysed.report, merged, {}))
    (curve,) = [c for c in page.find(cls="measure-curve") if c.attrs["data-measure"] == "group_only_score"]
    assert curve.attrs["d"].count("H") == 1, "a measure of one window is one step"


# ---------------------------------------------------------------- in a real browser

_PROBE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="page" style="border:0;display:block;width:%(width)dpx;height:%(height)dpx" srcdoc="%(page)s"></iframe>
<script>
addEventListener("load", () => {
  const doc = document.getElementById("page").contentDocument;
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
  document.body.dataset.probe = JSON.stringify({
    scrollWidth: doc.documentElement.scrollWidth,
    images: [...doc.querySelectorAll("img")].map((i) => [i.naturalWidth, i.getBoundingClientRect().width]),
    bands: [...doc.querySelectorAll(".defect-band")].map(box),
    curves: [...doc.querySelectorAll(".measure-curve")].map(box),
    rows: [...doc.querySelectorAll(".defect-row")].map(box),
  });
});
</script></body></html>"""


def _layout(page_html: str, *, width: int, height: int, directory: Path) -> dict:  # type: ignore[type-arg]
    """The page laid out `width` CSS px wide (in a frame of that size): what a reader of that screen gets."""
    probe = directory / f"probe-{width}.html"
    probe.write_text(_PROBE % {"width": width, "height": height, "page": html.escape(page_html)})
    dom = browser.dump_dom(probe.as_uri(), budget_ms=5000, width=width + 20, height=height)
    found = re.search(r'<body[^>]*\bdata-probe="([^"]*)"', dom)
    assert found, "the probe ran in the browser"
    return json.loads(html.unescape(found.group(1)))


def _png_pixels(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_report_renders_in_chromium_on_desktop_and_phone(analysed: Analysed, tmp_path: Path) -> None:
    report, url = analysed.report, analysed.html_path.as_uri()

    rendered = Page(browser.dump_dom(url, budget_ms=2000))
    assert rendered.by_id("timeline").tag == "section"
    _check_defects_drawn(rendered, report)

    page_html = analysed.html_path.read_text()
    for width, height in ((1280, 1600), (390, 844)):
        layout = _layout(page_html, width=width, height=height, directory=tmp_path)
        assert layout["scrollWidth"] <= width, (width, "no sideways scrolling")
        assert len(layout["images"]) == 3 and all(natural > 0 and shown > 0 for natural, shown in layout["images"]), (
            width, layout["images"], "the embedded thumbnails decode and show",
        )
        assert len(layout["bands"]) == len(report.defects) and all(w > 0 and h > 0 for w, h in layout["bands"]), width
        assert len(layout["rows"]) == len(report.defects) and all(w > 0 and h > 0 for w, h in layout["rows"]), width
        assert all(w > 0 for w, _ in layout["curves"]) and max(w for w, _ in layout["curves"]) > width * 0.6, (
            width, "the curves are drawn across the timeline",
        )

    for name, width, height in (("desktop", 1280, 1600), ("phone", 390, 844)):
        shot = browser.screenshot(url, ARTIFACTS / f"report-{name}.png", width=width, height=height)
        pixels = _png_pixels(shot)
        assert pixels.shape[:2] == (height, width)
        assert pixels.std() > 20, (name, "the screenshot shows the page, not a blank screen")


# ---------------------------------------------------------------- on S3


def test_report_html_on_s3(temporal_server: TemporalServer, task_queue: str, s3_env: SeaweedFS, clips: media.ClipFactory) -> None:
    bucket = f"results-{uuid.uuid4().hex[:10]}"
    client = s3_env.client()
    client.create_bucket(Bucket=bucket)
    sid = f"html-s3-{uuid.uuid4().hex[:6]}"
    request = StreamRequest(stream_id=sid, source=str(clips("main")), window_seconds=8.0, results=f"s3://{bucket}/vqa")

    async def scenario() -> StreamReport:
        async with running_worker(temporal_server, task_queue) as temporal:
            return await temporal.execute_workflow(
                StreamMonitorWorkflow.run, request, id=workflow_id_for(sid), task_queue=task_queue, result_type=StreamReport
            )

    report = run_async(scenario())
    assert report.results_uri == f"s3://{bucket}/vqa/{sid}/report.json"
    stored = client.get_object(Bucket=bucket, Key=f"vqa/{sid}/report.html")
    assert stored["ContentType"].startswith("text/html")
    page = Page(stored["Body"].read().decode())
    _check_defects_drawn(page, report)
    assert len(page.find(cls="measure-curve")) >= 10, "the windows' measures, read back from S3"
    assert len([i for i in page.find(tag="img") if i.attrs["src"].startswith("data:image/jpeg;base64,")]) == 3
    written = StreamReport.model_validate_json(client.get_object(Bucket=bucket, Key=f"vqa/{sid}/report.json")["Body"].read())
    assert written.report_html_uri == f"s3://{bucket}/vqa/{sid}/report.html"


def test_audio_evidence_too_big_to_embed_is_linked_beside_the_page(analysed: Analysed) -> None:
    report = analysed.report
    evidence = {d.details["evidence"]: Path(d.details["evidence"]).read_bytes() for d in report.defects}
    (silence,) = [d for d in report.defects if d.kind == "silence"]
    evidence[silence.details["evidence"]] = bytes(400 * 1024)
    page = Page(render_report_html(report, [], evidence))
    assert len(page.find(tag="img")) == 3 and not page.find(tag="audio")
    (link,) = page.find(tag="a", cls="evidence-link")
    assert (analysed.html_path.parent / link.attrs["href"]).resolve() == Path(silence.details["evidence"]).resolve()
