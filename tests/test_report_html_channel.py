"""A channel's HTML report: one lane per rendition, source-scoped defects drawn once across the
lanes of their type, rendition-scoped ones in their lanes, the manifest's in a lane of its own;
checked as a reader sees it, laid out by headless Chromium.

Most tests draw a channel's report made as the channel's workflow makes it: its renditions' own
reports (as their child workflows end), their defects merged by `vqa.channel.merge_defects`, a
manifest error from `activities.channel.manifest_error`; then `write_report` writes report.json
and report.html as it does at a channel's end. The last analyses a real ladder (FFmpeg's HLS
muxer, served over HTTP) through Temporal and reads the page the channel's workflow wrote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from activities.channel import manifest_error
from activities.report_html import render_report_html
from activities.results import write_report
from support import hls
from support.ladder import LadderSpec, make_ladder
from vqa.channel import merge_defects
from vqa.contracts import (
    Defect, MediaInfo, RenditionReport, StreamReport, StreamRequest, VideoInfo, WriteReportRequest,
)
from vqa.settings import Settings

from . import cdp, realmedia
from .conftest import TemporalServer, run_async, running_worker, start_stream
from .test_report_html import Page

CHANNEL = "chan"
DURATION_S = 20.0
# A rendition's name comes from a remote master playlist: it must show as text, never run.
HOSTILE = "<script>window.__pwned=1</script>\"'&"
HOSTILE_URI = 'https://origin.example/x"><img src=x onerror="window.__pwned=2">.m3u8'
FAILED_ERROR = "cannot read https://origin.example/204p/seg3.ts: HTTP Error 404: Not Found"
SOURCE_BLACK = (4.0, 7.0)
RENDITION_BLACK = (12.0, 15.0)  # 136p only
SILENCE_ES = (9.0, 12.0)  # audio-es only
STALE = (16.0, 18.0)  # the manifest: 204p's playlist stale
VIDEO_LANES = ["272p", "204p", "136p", "96p", HOSTILE]
AUDIO_LANES = ["audio-en", "audio-es"]
LANES = ["manifest", *VIDEO_LANES, *AUDIO_LANES]


def _defect(kind: str, track: str, span: tuple[float, float], **details: Any) -> Defect:
    start, end = span
    return Defect(kind=kind, track=track, start_s=start, end_s=end, duration_s=end - start, value=0.99, details=details)


def _own(name: str, results: Path, defects: list[Defect], *, video: bool) -> StreamReport:
    """A rendition's own report, as its child workflow returns it (written beside the channel's)."""
    media = MediaInfo(
        duration_s=DURATION_S, video=VideoInfo(codec="h264", width=640, height=272, fps=24.0) if video else None,
    )
    return StreamReport(
        stream_id=f"{CHANNEL}.{name}", source=f"https://origin.example/{name}.m3u8", status="completed", media=media,
        window_seconds=5.0, windows=4, analysed_s=DURATION_S, defects=defects,
        results_uri=str(results / f"{CHANNEL}.{name}" / "report.json"),
    )


def _channel_report(results: Path) -> StreamReport:
    evidence = results / f"{CHANNEL}.272p" / "evidence" / "black_video_4000.jpg"
    evidence.parent.mkdir(parents=True)
    Image.new("L", (64, 36), 0).save(evidence, "JPEG")
    black = _defect("black", "video", SOURCE_BLACK, evidence=str(evidence))
    entries = [
        RenditionReport(name="272p", uri="https://origin.example/272p.m3u8", type="video", bandwidth=900_000, width=640,
                        height=272, report=_own("272p", results, [black], video=True)),
        RenditionReport(name="204p", uri="https://origin.example/204p.m3u8", type="video", bandwidth=600_000, width=480,
                        height=204, error=FAILED_ERROR),
        RenditionReport(name="136p", uri="https://origin.example/136p.m3u8", type="video", bandwidth=300_000, width=320,
                        height=136, report=_own("136p", results, [
                            _defect("black", "video", (4.1, 7.0)), _defect("black", "video", RENDITION_BLACK),
                        ], video=True)),
        RenditionReport(name="96p", uri="https://origin.example/96p.m3u8", type="video", bandwidth=150_000, width=226,
                        height=96),
        RenditionReport(name=HOSTILE, uri=HOSTILE_URI, type="video", bandwidth=100_000, width=160, height=68,
                        report=_own("hostile", results, [_defect("black", "video", (4.0, 6.9))], video=True)),
        RenditionReport(name="audio-en", uri="https://origin.example/en.m3u8", type="audio", language="en",
                        report=_own("audio-en", results, [], video=False)),
        RenditionReport(name="audio-es", uri="https://origin.example/es.m3u8", type="audio", language="es",
                        report=_own("audio-es", results, [_defect("silence", "audio", SILENCE_ES)], video=False)),
    ]
    manifest = [manifest_error("stale_playlist", *STALE, value=9.0, renditions=["204p"])]
    return StreamReport(
        stream_id=CHANNEL, source="https://origin.example/master.m3u8", status="completed", window_seconds=5.0,
        windows=16, analysed_s=DURATION_S, defects=merge_defects(entries, manifest), renditions=entries,
    )


@dataclass(frozen=True)
class Written:
    report: StreamReport
    html_path: Path


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    results = tmp_path_factory.mktemp("channel-html") / "results"
    report = _channel_report(results)
    uri = write_report(WriteReportRequest(report=report, results=str(results)), settings=Settings())
    assert uri == str(results / CHANNEL / "report.json")
    return Written(report=StreamReport.model_validate_json(Path(uri).read_text()), html_path=results / CHANNEL / "report.html")


def test_the_merged_channel_is_what_the_page_is_drawn_from(written: Written) -> None:
    """The defects the page has to draw: one source black, one rendition black, one silence, the manifest's."""
    scopes = sorted(
        (d.kind, d.details.get("scope", "manifest"), tuple(d.details.get("renditions", []))) for d in written.report.defects
    )
    assert scopes == [
        ("black", "rendition", ("136p",)),
        ("black", "source", tuple(sorted(["272p", "136p", HOSTILE]))),
        ("manifest_error", "manifest", ("204p",)),
        ("silence", "rendition", ("audio-es",)),
    ]


def test_the_page_escapes_the_manifest_and_stays_self_contained(written: Written) -> None:
    text = written.html_path.read_text()
    page = Page(text)
    assert "<script>window" not in text and "<img src=x" not in text and 'onerror="window' not in text
    assert not page.find(tag="script") and not page.find(tag="link")
    labels = {e.attrs["data-lane"]: e for e in page.find(tag="li", cls="lane-label")}
    assert list(labels) == LANES
    for element in page.elements:
        for name in ("src", "href"):
            value = element.attrs.get(name, "")
            assert not value or value.startswith(("#", "data:", "../")), (element.tag, name, value[:80])
    own_links = {a.attrs["href"] for a in page.find(tag="a") if a.attrs.get("href", "").startswith("../")}
    assert f"../{CHANNEL}.272p/report.html" in own_links and f"../{CHANNEL}.audio-es/report.html" in own_links
    assert all("<" not in link for link in own_links)


def test_single_stream_page_has_no_channel_parts(written: Written) -> None:
    """A report without renditions keeps the one-lane-per-kind page."""
    own = written.report.renditions[0].report
    assert own is not None
    page = Page(render_report_html(own, [], {}))
    assert not page.find(cls="lane-label") and not page.find(cls="rendition-row")
    assert [e.text for e in page.find(tag="th")] == ["kind", "track", "start", "end", "duration", "value", "evidence"]
    assert len(page.find(tag="rect", cls="defect-band")) == 1


# ---------------------------------------------------------------- laid out in Chromium

# Runs before the page's own parsing: any script error, or a failed load of anything, is kept.
_CATCH = """window.__vqaErrors = [];
addEventListener("error", (e) => __vqaErrors.push(String(e.message || (e.target && e.target.outerHTML))), true);"""

_PROBE = """(() => {
  const box = (e) => { const r = e.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height}; };
  const all = (s) => [...document.querySelectorAll(s)];
  return {
    errors: window.__vqaErrors, pwned: window.__pwned === undefined ? null : window.__pwned,
    scripts: all("script").length, images: all("img").map((i) => i.naturalWidth),
    scrollWidth: document.documentElement.scrollWidth,
    tracks: box(document.querySelector(".lane-tracks")),
    labels: all(".lane-label").map((e) => ({lane: e.dataset.lane, text: e.innerText,
      name: e.querySelector(".lane-name").innerText, box: box(e)})),
    lanes: all(".lane").map((e) => ({lane: e.dataset.lane, text: e.innerText, box: box(e)})),
    bands: all(".defect-band").map((e) => ({kind: e.dataset.kind, scope: e.dataset.scope,
      start: +e.dataset.start, end: +e.dataset.end, href: e.getAttribute("href"), box: box(e)})),
    renditions: all(".rendition-row").map((e) => ({name: e.dataset.rendition, text: e.innerText, box: box(e)})),
    defects: all(".defect-row").map((e) => ({id: e.id, cells: [...e.cells].map((c) => c.innerText.trim())})),
  };
})()"""


def _evaluate(page: cdp.LivePage, expression: str) -> Any:
    result = page.call("Runtime.evaluate", expression=expression, returnByValue=True)
    assert "exceptionDetails" not in result, result["exceptionDetails"]
    return result["result"].get("value")


def _laid_out(url: str, *, width: int, height: int) -> dict[str, Any]:
    """The page as Chromium lays it out `width` CSS px wide: boxes, texts, and any script error."""
    with cdp.live_page(url, width=width, height=height) as page:
        page.call("Page.addScriptToEvaluateOnNewDocument", source=_CATCH)
        page.call("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while not _evaluate(page, "document.readyState === 'complete' && Array.isArray(window.__vqaErrors)"):
            assert time.monotonic() < deadline, "the page never loaded"
            time.sleep(0.1)
        return dict(_evaluate(page, _PROBE))


def _x(layout: dict[str, Any], t: float, span_s: float) -> float:
    tracks = layout["tracks"]
    return tracks["left"] + tracks["width"] * t / span_s


@pytest.fixture(scope="module")
def desktop(written: Written) -> dict[str, Any]:
    return _laid_out(written.html_path.as_uri(), width=1280, height=1400)


def test_one_lane_per_rendition_with_its_name_type_and_state(desktop: dict[str, Any], written: Written) -> None:
    assert desktop["errors"] == [] and desktop["pwned"] is None and desktop["scripts"] == 0
    assert [label["lane"] for label in desktop["labels"]] == LANES
    assert [lane["lane"] for lane in desktop["lanes"]] == LANES
    labels = {label["lane"]: label for label in desktop["labels"]}
    lanes = {lane["lane"]: lane for lane in desktop["lanes"]}
    assert labels[HOSTILE]["name"] == HOSTILE, "the hostile name shows as text"
    assert "video 640×272" in labels["272p"]["text"] and "completed" in labels["272p"]["text"]
    assert "audio es" in labels["audio-es"]["text"]
    assert "failed" in labels["204p"]["text"] and "not decoded" in labels["96p"]["text"]
    for name in LANES:  # each label beside its lane, lanes one under the other
        label, lane = labels[name]["box"], lanes[name]["box"]
        assert abs(label["top"] - lane["top"]) < 1.5 and abs(label["bottom"] - lane["bottom"]) < 1.5, name
        assert lane["height"] > 20 and lane["width"] > 600 and label["right"] <= lane["left"] + 1, name
    tops = [lanes[n]["box"]["top"] for n in LANES]
    assert tops == sorted(tops) and len(set(tops)) == len(LANES)
    # A failed rendition shows its error in its lane and in the renditions' table; one not decoded says so.
    assert FAILED_ERROR in lanes["204p"]["text"] and lanes["204p"]["text"].startswith("failed")
    assert lanes["96p"]["text"] == "not decoded" and lanes["272p"]["text"] == ""
    rows = {row["name"]: row for row in desktop["renditions"]}
    assert list(rows) == [r.name for r in written.report.renditions]
    assert FAILED_ERROR in rows["204p"]["text"] and rows["204p"]["box"]["height"] > 0
    assert HOSTILE in rows[HOSTILE]["text"] and HOSTILE_URI in rows[HOSTILE]["text"]


def test_source_band_spans_every_video_lane_and_rendition_bands_stay_in_theirs(
    desktop: dict[str, Any], written: Written
) -> None:
    lanes = {lane["lane"]: lane["box"] for lane in desktop["lanes"]}
    bands = desktop["bands"]
    span_s = DURATION_S
    (source,) = [b for b in bands if b["scope"] == "source"]
    assert source["kind"] == "black"
    top, bottom = source["box"]["top"], source["box"]["bottom"]
    assert lanes[VIDEO_LANES[0]]["top"] <= top <= lanes[VIDEO_LANES[0]]["top"] + 4
    assert lanes[VIDEO_LANES[-1]]["bottom"] - 4 <= bottom <= lanes[VIDEO_LANES[-1]]["bottom"]
    assert bottom <= lanes["audio-en"]["top"] and top >= lanes["manifest"]["bottom"], "video lanes only"
    assert source["box"]["left"] == pytest.approx(_x(desktop, SOURCE_BLACK[0], span_s), abs=1.5)
    assert source["box"]["right"] == pytest.approx(_x(desktop, SOURCE_BLACK[1], span_s), abs=1.5)

    def inside(band: dict[str, Any], lane: str) -> bool:
        box = lanes[lane]
        return box["top"] <= band["box"]["top"] and band["box"]["bottom"] <= box["bottom"]

    rendition = [b for b in bands if b["scope"] == "rendition"]
    assert sorted((b["kind"], b["start"]) for b in rendition) == [("black", 12.0), ("silence", 9.0)], (
        "the source black is drawn once, not again in each lane"
    )
    expected = {"black": ("136p", RENDITION_BLACK), "silence": ("audio-es", SILENCE_ES)}
    for band in rendition:
        lane, span = expected[band["kind"]]
        assert inside(band, lane) and not any(inside(band, other) for other in LANES if other != lane), lane
        assert band["box"]["left"] == pytest.approx(_x(desktop, span[0], span_s), abs=1.5)
        assert band["box"]["right"] == pytest.approx(_x(desktop, span[1], span_s), abs=1.5)
    (stale,) = [b for b in bands if b["scope"] == "manifest"]
    assert inside(stale, "manifest") and stale["kind"] == "manifest_error"
    # Each band links to its row of the channel's defects.
    rows = {row["id"]: row["cells"] for row in desktop["defects"]}
    assert len(rows) == len(written.report.defects) == len(bands)
    for band in bands:
        cells = rows[band["href"].removeprefix("#")]
        assert cells[0] == band["kind"] and cells[2] == band["scope"], (band, cells)


def test_defect_table_lists_scope_and_renditions(desktop: dict[str, Any], written: Written) -> None:
    table = [row["cells"] for row in desktop["defects"]]
    assert [cells[:4] for cells in table] == [
        ["black", "video", "source", ", ".join(sorted(["272p", "136p", HOSTILE]))],
        ["silence", "audio", "rendition", "audio-es"],
        ["black", "video", "rendition", "136p"],
        ["manifest_error", "manifest", "manifest", "204p"],
    ]
    assert table[3][7].startswith("stale_playlist"), "a manifest error's check"
    assert desktop["images"] == [64], "the source black's evidence, embedded and decoded"


def test_channel_page_fits_a_phone(written: Written) -> None:
    phone = _laid_out(written.html_path.as_uri(), width=390, height=844)
    assert phone["errors"] == [] and phone["pwned"] is None
    assert phone["scrollWidth"] <= 390, "no sideways scrolling"
    assert [label["lane"] for label in phone["labels"]] == LANES
    assert all(lane["box"]["width"] > 150 for lane in phone["lanes"])
    (source,) = [b for b in phone["bands"] if b["scope"] == "source"]
    assert source["box"]["width"] > 0 and source["box"]["height"] > 4 * 30
    (failed,) = [row for row in phone["renditions"] if row["name"] == "204p"]
    assert FAILED_ERROR in failed["text"] and failed["box"]["width"] <= 390


# ---------------------------------------------------------------- a real ladder, through Temporal


@pytest.mark.integration
def test_a_real_channels_page_draws_its_renditions(
    temporal_server: TemporalServer, task_queue: str, tmp_path: Path
) -> None:
    spec = LadderSpec(duration_s=12.0, black_everywhere=(2.0, 4.0), black_in={"136p": (7.0, 9.0)},
                      videos=(("204p", 204), ("136p", 136)), languages=("en",))
    make_ladder(realmedia.fetch("bikes.mp4"), realmedia.fetch("lena.wav"), tmp_path / "ladder", spec)
    origin = hls.StaticServer(tmp_path / "ladder")
    try:
        async def scenario() -> StreamReport:
            async with running_worker(temporal_server, task_queue) as client:
                request = StreamRequest(stream_id=f"html-{task_queue[-6:]}", source=f"{origin.url}/master.m3u8",
                                        window_seconds=4.0, results=str(tmp_path / "results"))
                return await (await start_stream(client, task_queue, request)).result()

        report = run_async(scenario())
    finally:
        origin.close()
    assert report.status == "completed", report.error
    assert report.report_html_uri is not None
    html_path = Path(report.report_html_uri)
    layout = _laid_out(html_path.as_uri(), width=1280, height=1200)
    assert layout["errors"] == [] and [label["lane"] for label in layout["labels"]] == ["204p", "136p", "audio-en"]
    lanes = {lane["lane"]: lane["box"] for lane in layout["lanes"]}
    (source,) = [b for b in layout["bands"] if b["scope"] == "source"]
    assert source["box"]["top"] <= lanes["204p"]["top"] + 4 and source["box"]["bottom"] >= lanes["136p"]["bottom"] - 4
    assert source["box"]["bottom"] <= lanes["audio-en"]["top"]
    (one,) = [b for b in layout["bands"] if b["scope"] == "rendition"]
    assert lanes["136p"]["top"] <= one["box"]["top"] and one["box"]["bottom"] <= lanes["136p"]["bottom"]
    links = {a.attrs["href"] for a in Page(html_path.read_text()).find(tag="a") if a.attrs.get("href", "").startswith("../")}
    assert len(links) == 3 and all((html_path.parent / link).is_file() for link in links), "each rendition's own page"
