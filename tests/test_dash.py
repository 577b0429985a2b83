"""DASH: an MPD's every Representation monitored as a rendition of a channel, as an HLS ladder's are.

The ladder is written by FFmpeg's DASH muxer (SegmentTemplate + SegmentTimeline, fragmented MP4)
from the same real footage and voices as tests/test_channels.py's HLS ladder, with the same
defects injected, and served over HTTP on 127.0.0.1. The parser is checked against the media
FFmpeg wrote (each segment's own first timestamp) and on hand-written MPDs for what FFmpeg
does not write (SegmentTemplate@duration, BaseURL, $Time$, several Periods, a live edge).
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import time
from pathlib import Path

import av
import pytest

from activities import manifest as manifest_watch
from activities.channel import probe_channel
from activities.decode import probe
from activities.errors import UnreadableSourceError
from activities.policy import SourcePolicy, SourceRefusedError
from activities.sources import dash, load_playlist, segmented
from cli.worker import build_worker
from support import hls
from support.ladder import LiveMpd, make_dash_ladder
from vqa.contracts import ChannelProbeRequest, StreamReport, StreamRequest
from vqa.runtime import connect
from vqa.settings import Settings
from workflows.channel import child_stream_id

from .ladders import ALL, SPEC, TOLERANCE_S, VIDEOS
from .ladders import only as _only
from . import realmedia
from .conftest import TemporalServer, run_async, running_worker, start_stream



@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("dash")
    make_dash_ladder(realmedia.fetch("bikes.mp4"), realmedia.fetch("lena.wav"), directory, SPEC)
    return directory


def _rules() -> tuple[SourcePolicy, Settings]:
    settings = Settings()
    return SourcePolicy.from_settings(settings), settings


# -- the parser ------------------------------------------------------------------------------


def _first_time(init: Path, segment: Path) -> float:
    """Where a segment's media starts (its earliest presentation time), read by FFmpeg with its init segment."""
    with av.open(io.BytesIO(init.read_bytes() + segment.read_bytes()), format="mp4") as container:
        packets = [p for p in container.demux() if p.pts is not None]
        return float(min(p.pts for p in packets) * packets[0].time_base)


def test_the_mpd_ffmpeg_wrote_lists_its_segments_where_the_media_has_them(ladder: Path) -> None:
    policy, settings = _rules()
    manifest = dash.load_manifest(str(ladder / "manifest.mpd"), policy=policy, settings=settings)
    assert not manifest.live
    kinds = [(r.type, r.height, r.language) for r in manifest.representations]
    assert kinds == [("video", 272, None), ("video", 204, None), ("video", 136, None), ("video", 96, None),
                     ("audio", None, "en"), ("audio", None, "es")]
    for representation in manifest.representations:
        playlist = representation.playlist
        assert playlist is not None and representation.error is None
        assert playlist.ended and playlist.media_sequence == 1
        files = sorted(ladder.glob(f"chunk-stream{representation.id}-*.m4s"))
        assert [Path(s.uri) for s in playlist.segments] == files, "one segment per file FFmpeg wrote, in order"
        assert playlist.duration_s == pytest.approx(SPEC.duration_s, abs=0.05)
        init = playlist.segments[0].init
        assert init is not None and Path(init.uri) == ladder / f"init-stream{representation.id}.m4s"
        for segment in playlist.segments:  # the timeline is the media's: each segment starts where its media does
            assert _first_time(Path(init.uri), Path(segment.uri)) == pytest.approx(segment.start_s, abs=0.03)
        for before, after in zip(playlist.segments, playlist.segments[1:]):
            assert after.start_s == pytest.approx(before.end_s, abs=1e-9)
    video = manifest.representations[0].playlist
    assert video is not None and [s.duration_s for s in video.segments] == [2.0] * 10


def test_a_representation_is_addressed_by_a_fragment_and_the_mpd_alone_is_its_first_video(ladder: Path) -> None:
    mpd = str(ladder / "manifest.mpd")
    assert segmented(mpd) is not None and segmented(dash.address(mpd, "5")) is not None
    assert dash.split_address(dash.address(mpd, "a b/1")) == (mpd, "a b/1")
    assert Path(load_playlist(dash.address(mpd, "5")).segments[0].uri).name == "chunk-stream5-00001.m4s"
    assert Path(load_playlist(mpd).segments[0].uri).name == "chunk-stream0-00001.m4s"
    media = probe(dash.address(mpd, "4"))
    assert media.video is None and media.audio is not None and media.duration_s == pytest.approx(20.0, abs=0.05)
    media = probe(mpd)
    assert media.video is not None and media.video.height == 272 and not media.live
    with pytest.raises(UnreadableSourceError, match="no Representation '9'"):
        load_playlist(dash.address(mpd, "9"))


def _write(directory: Path, text: str, name: str = "m.mpd") -> str:
    (directory / name).write_text(text)
    return str(directory / name)


_HEAD = '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011"'


def test_a_duration_template_base_urls_and_identifiers(tmp_path: Path) -> None:
    uri = _write(tmp_path, _HEAD + ''' type="static" mediaPresentationDuration="PT9S">
      <BaseURL>media/</BaseURL>
      <Period><AdaptationSet contentType="video" mimeType="video/mp4"><BaseURL>v/</BaseURL>
        <SegmentTemplate timescale="1000" duration="4000" startNumber="7" initialization="$RepresentationID$/init.mp4"
                         media="$RepresentationID$/$Bandwidth$-$Number%04d$.m4s"/>
        <Representation id="hd" bandwidth="5000" width="1280" height="720"/>
      </AdaptationSet></Period></MPD>''')
    playlist = load_playlist(dash.address(uri, "hd"))
    assert [Path(s.uri).relative_to(tmp_path).as_posix() for s in playlist.segments] == [
        "media/v/hd/5000-0007.m4s", "media/v/hd/5000-0008.m4s", "media/v/hd/5000-0009.m4s"]
    assert [(s.start_s, s.duration_s) for s in playlist.segments] == [(0.0, 4.0), (4.0, 4.0), (8.0, 4.0)]
    assert playlist.segments[0].init is not None and playlist.segments[0].init.uri == str(tmp_path / "media/v/hd/init.mp4")
    assert playlist.media_sequence == 7 and playlist.ended


def test_time_addressing_repeats_to_the_period_end_and_periods_join(tmp_path: Path) -> None:
    uri = _write(tmp_path, _HEAD + ''' type="static" mediaPresentationDuration="PT10S">
      <Period id="a" duration="PT6S"><AdaptationSet contentType="audio" lang="fr">
        <SegmentTemplate timescale="10" presentationTimeOffset="100" initialization="i.mp4" media="a-$Time$.m4s">
          <SegmentTimeline><S t="100" d="20" r="-1"/></SegmentTimeline></SegmentTemplate>
        <Representation id="fr" bandwidth="64000"/></AdaptationSet></Period>
      <Period id="b"><AdaptationSet contentType="audio" lang="fr">
        <SegmentTemplate timescale="10" initialization="i.mp4" media="b-$Time$.m4s">
          <SegmentTimeline><S t="0" d="20" r="1"/></SegmentTimeline></SegmentTemplate>
        <Representation id="fr" bandwidth="64000"/></AdaptationSet></Period></MPD>''')
    playlist = load_playlist(uri)  # no video: the first audio Representation
    assert [Path(s.uri).name for s in playlist.segments] == ["a-100.m4s", "a-120.m4s", "a-140.m4s", "b-0.m4s", "b-20.m4s"]
    assert [s.start_s for s in playlist.segments] == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_a_dynamic_mpd_lists_only_what_is_out_and_has_not_ended(tmp_path: Path) -> None:
    uri = _write(tmp_path, _HEAD + ''' type="dynamic" availabilityStartTime="2024-01-01T00:00:00Z">
      <Period start="PT0S"><AdaptationSet contentType="video"><Representation id="v" bandwidth="1" height="360">
        <SegmentTemplate timescale="1" duration="2" initialization="i.mp4" media="s$Number$.m4s"/>
      </Representation></AdaptationSet></Period></MPD>''')
    policy, settings = _rules()
    start = 1704067200.0  # 2024-01-01T00:00:00Z
    playlist = dash.load_playlist(uri, policy=policy, settings=settings, now=lambda: start + 7.0)
    assert [Path(s.uri).name for s in playlist.segments] == ["s1.m4s", "s2.m4s", "s3.m4s"]  # 3 have ended by 7 s
    assert not playlist.ended and playlist.wall_start == start
    manifest = dash.load_manifest(uri, policy=policy, settings=settings, now=lambda: start + 7.0)
    assert manifest.live and manifest.representations[0].playlist is not None


def test_every_uri_an_mpd_names_passes_the_policy(tmp_path: Path) -> None:
    (tmp_path / "m.mpd").write_text(_HEAD + ''' type="static" mediaPresentationDuration="PT4S"><BaseURL>file:///etc/</BaseURL>
      <Period><AdaptationSet contentType="video"><Representation id="v" bandwidth="1">
        <SegmentTemplate timescale="1" duration="2" initialization="i.mp4" media="passwd"/>
      </Representation></AdaptationSet></Period></MPD>''')
    origin = hls.StaticServer(tmp_path)
    try:
        with pytest.raises(SourceRefusedError, match="local file named by a remote playlist"):
            load_playlist(f"{origin.url}/m.mpd")
    finally:
        origin.close()
    uri = _write(tmp_path, _HEAD + ''' type="static"><Period><AdaptationSet contentType="video">
      <Representation id="v" bandwidth="1"><SegmentBase indexRange="0-99"/></Representation></AdaptationSet></Period></MPD>''',
                 "base.mpd")
    with pytest.raises(UnreadableSourceError, match="SegmentBase"):
        load_playlist(uri)
    info = probe_channel(ChannelProbeRequest(source=uri))
    assert [(d.details["check"], d.details["renditions"]) for d in info.defects] == [("rendition_missing", ["video"])]


def test_the_channel_probe_names_every_representation(ladder: Path) -> None:
    info = probe_channel(ChannelProbeRequest(source=str(ladder / "manifest.mpd")))
    assert [r.name for r in info.renditions] == ALL and not info.live and info.defects == []
    assert info.target_duration_s == 2.0  # the MPD's maxSegmentDuration
    assert info.renditions[0].uri == dash.address(str(ladder / "manifest.mpd"), "0")
    assert info.renditions[-1].language == "es" and info.renditions[0].bandwidth and info.renditions[0].width == 640
    assert probe_channel(ChannelProbeRequest(source=info.renditions[0].uri)).renditions == [], "one Representation: one stream"


# -- through Temporal ------------------------------------------------------------------------


def _analyse(server: TemporalServer, task_queue: str, directory: Path, source: str = "manifest.mpd",
             **fields: object) -> StreamReport:
    origin = hls.StaticServer(directory)
    try:
        async def scenario() -> StreamReport:
            async with running_worker(server, task_queue) as client:
                request = StreamRequest(
                    stream_id=f"dash-{os.urandom(3).hex()}", source=f"{origin.url}/{source}",
                    window_seconds=5.0, **fields,  # type: ignore[arg-type]
                )
                return await (await start_stream(client, task_queue, request)).result()

        return run_async(scenario())
    finally:
        origin.close()


def test_every_representation_is_a_child_and_defects_merge_by_scope(
    temporal_server: TemporalServer, task_queue: str, ladder: Path
) -> None:
    report = _analyse(temporal_server, task_queue, ladder)
    assert report.status == "completed", report.error
    assert [r.name for r in report.renditions] == ALL
    by_name = {r.name: r for r in report.renditions}
    assert by_name["272p"].uri.endswith("/manifest.mpd#representation=0") and by_name["audio-es"].language == "es"
    for r in report.renditions:
        assert r.report is not None and r.report.status == "completed", (r.name, r.error)
        assert r.report.stream_id == child_stream_id(report.stream_id, r.name)
        assert r.report.analysed_s is not None and r.report.analysed_s >= 19.5, "followed to the MPD's end"
    for name in VIDEOS:
        blacks = _only(by_name[name].report.defects, "black")  # type: ignore[union-attr]
        assert len(blacks) == (2 if name == "136p" else 1), (name, blacks)
    blacks = _only(report.defects, "black")
    assert [(d.details["scope"], d.details["renditions"]) for d in blacks] == [
        ("source", sorted(VIDEOS)), ("rendition", ["136p"])
    ]
    assert blacks[0].start_s == pytest.approx(4.0, abs=TOLERANCE_S) and blacks[0].end_s == pytest.approx(7.0, abs=TOLERANCE_S)
    assert blacks[1].start_s == pytest.approx(12.0, abs=TOLERANCE_S) and blacks[1].end_s == pytest.approx(15.0, abs=TOLERANCE_S)
    silences = _only(report.defects, "silence")
    assert [(d.details["scope"], d.details["renditions"], d.details["language"]) for d in silences] == [
        ("rendition", ["audio-es"], "es")
    ]
    assert silences[0].start_s == pytest.approx(9.0, abs=TOLERANCE_S) and silences[0].end_s == pytest.approx(12.0, abs=TOLERANCE_S)
    assert _only(report.defects, "manifest_error") == []


def test_renditions_lowest_highest_and_a_missing_representation(
    temporal_server: TemporalServer, task_queue: str, ladder: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "dash"
    shutil.copytree(ladder, broken)
    text = (broken / "manifest.mpd").read_text()
    # 204p's SegmentTemplate loses its @media: its segments cannot be listed (rendition_missing)
    head, block = text.split('<Representation id="1"', 1)
    block, tail = block.split("</Representation>", 1)
    block = re.sub(r' media="[^"]*"', "", block)
    (broken / "manifest.mpd").write_text(f'{head}<Representation id="1"{block}</Representation>{tail}')
    report = _analyse(temporal_server, task_queue, broken, renditions=["lowest", "highest"])
    assert report.status == "completed", report.error
    assert sorted(r.name for r in report.renditions if r.report is not None) == ["272p", "96p"]
    missing = _only(report.defects, "manifest_error")
    assert [(d.details["check"], d.details["renditions"]) for d in missing] == [("rendition_missing", ["204p"])]
    blacks = _only(report.defects, "black")
    assert [(d.details["scope"], d.details["renditions"]) for d in blacks] == [("source", ["272p", "96p"])]


def test_one_representation_is_one_stream(temporal_server: TemporalServer, task_queue: str, ladder: Path) -> None:
    report = _analyse(temporal_server, task_queue, ladder, source="manifest.mpd#representation=2")
    assert report.status == "completed", report.error
    assert report.renditions == [] and len(_only(report.defects, "black")) == 2


def test_a_live_mpd_is_followed_in_real_time(
    temporal_server: TemporalServer, task_queue: str, ladder: Path, tmp_path: Path
) -> None:
    live = tmp_path / "dash"
    shutil.copytree(ladder, live)
    publisher = LiveMpd(live)
    origin = hls.StaticServer(live)

    async def scenario() -> StreamReport:
        client = await connect(temporal_server.settings(task_queue))
        async with build_worker(client, task_queue=task_queue, max_concurrent_windows=8):
            request = StreamRequest(stream_id=f"dash-live-{os.urandom(3).hex()}", source=f"{origin.url}/live.mpd",
                                    window_seconds=4.0, renditions=["highest", "audio-es"])
            handle = await start_stream(client, task_queue, request)
            publisher.start()
            return await asyncio.wait_for(handle.result(), timeout=120)

    began = time.monotonic()
    try:
        report = asyncio.run(scenario())
    finally:
        publisher.stop()
        origin.close()
    assert report.status == "completed", report.error
    assert time.monotonic() - began >= SPEC.duration_s - 1.0, "followed as it was published, not read at once"
    decoded = {r.name: r.report for r in report.renditions if r.report is not None}
    assert sorted(decoded) == ["272p", "audio-es"]
    for name, child in decoded.items():
        assert child.status == "completed" and child.media is not None and child.media.live, name
        assert child.analysed_s is not None and child.analysed_s >= 19.5, name
        assert child.max_lag_s is not None and child.max_lag_s <= 5.0, (name, child.max_lag_s)
    blacks = _only(report.defects, "black")
    assert [(d.details["scope"], d.details["renditions"]) for d in blacks] == [("source", ["272p"])]
    silences = _only(report.defects, "silence")
    assert [(d.details["renditions"], d.details["language"]) for d in silences] == [(["audio-es"], "es")]
    # The live manifest watch (activities/manifest.py) loads each rendition with hls.load_playlist, which
    # reads no MPD: every DASH rendition shows as rendition_missing until it loads them with
    # activities.sources.load_playlist (either format). Checked as soon as it does.
    if manifest_watch.load_playlist is load_playlist:
        assert _only(report.defects, "manifest_error") == [], "a healthy live MPD has healthy manifests"
