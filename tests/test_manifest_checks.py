"""The live manifest checks, one by one: playlists served over HTTP on 127.0.0.1 and changed
between the watch's polls, the watch's clock stepped by the test (activities/manifest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.channel import long_segments
from activities.manifest import Watch
from activities.sources.hls import load_playlist
from support import hls
from vqa.contracts import DefectEvent, ManifestWatchRequest, RenditionInfo
from vqa.settings import Settings

TARGET_S = 2.0


class Origin:
    """Two renditions' live playlists (`a`, `b`) on a real HTTP server; segments are small files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server = hls.StaticServer(directory)
        self.now = 1000.0
        self.playlists: list = []
        self.open: list[DefectEvent] = []

    def write(self, name: str, first: int, count: int, *, durations: dict[int, float] | None = None,
              missing: tuple[int, ...] = (), ended: bool = False) -> None:
        folder = self.directory / name
        folder.mkdir(exist_ok=True)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{TARGET_S:g}", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for n in range(first, first + count):
            segment = folder / f"s{n}.ts"
            if n in missing:
                segment.unlink(missing_ok=True)
            else:
                segment.write_bytes(b"\x47" * 188)
            lines += [f"#EXTINF:{(durations or {}).get(n, TARGET_S):.3f},", segment.name]
        if ended:
            lines.append("#EXT-X-ENDLIST")
        (folder / "live.m3u8").write_text("\n".join(lines) + "\n")

    def poll(self, *, after_s: float = 1.0) -> list[DefectEvent]:
        """One poll of the watch, `after_s` later than the last; returns its events."""
        self.now += after_s
        renditions = [RenditionInfo(name=n, uri=f"{self.server.url}/{n}/live.m3u8", type="video")
                      for n in ("a", "b") if (self.directory / n).exists()]
        request = ManifestWatchRequest(channel_id="c", renditions=renditions, target_duration_s=TARGET_S,
                                       playlists=self.playlists, open_events=self.open)
        watch = Watch(request, Settings(), wall=lambda: self.now)
        watch.poll()
        result = watch.result()
        self.playlists = result.playlists
        for e in result.events:
            if e.phase == "opened":
                self.open.append(e)
            else:
                self.open = [o for o in self.open if o.id != e.id]
        return result.events


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Origin]:
    o = Origin(tmp_path)
    try:
        yield o
    finally:
        o.server.close()


def _checks(events: list[DefectEvent]) -> list[tuple[str, str, list[str]]]:
    return [(e.phase, e.defect.details["check"], e.defect.details["renditions"]) for e in events]


def test_a_healthy_live_playlist_raises_nothing(origin: Origin) -> None:
    for step in range(5):
        origin.write("a", 0, 3 + step)
        assert origin.poll(after_s=TARGET_S) == []


def test_stale_opens_after_one_and_a_half_target_durations_and_closes_when_it_grows(origin: Origin) -> None:
    origin.write("a", 0, 3)
    assert origin.poll() == []
    assert origin.poll(after_s=2.0) == []  # 2 s without an update: within 1.5 x 2 s
    opened = origin.poll(after_s=1.5)  # 3.5 s
    assert _checks(opened) == [("opened", "stale_playlist", ["a"])]
    assert opened[0].defect.start_s == pytest.approx(6.0) and opened[0].defect.track == "manifest"
    assert origin.poll(after_s=1.0) == [], "still stale: announced once"
    origin.write("a", 0, 4)
    closed = origin.poll(after_s=0.5)
    assert _checks(closed) == [("closed", "stale_playlist", ["a"])]
    assert closed[0].defect.value == pytest.approx(5.0)  # seconds without an update


def test_an_ended_playlist_is_never_stale(origin: Origin) -> None:
    origin.write("a", 0, 3, ended=True)
    assert origin.poll() == [] and origin.poll(after_s=10.0) == []


@pytest.mark.parametrize(("first", "direction", "value"), [(1, "backwards", -2.0), (12, "skipped", 7.0)])
def test_media_sequence_going_backwards_or_skipping(origin: Origin, first: int, direction: str, value: float) -> None:
    origin.write("a", 3, 2)  # segments 3, 4: the next new one is 5
    assert origin.poll() == []
    origin.write("a", first, 2)
    events = origin.poll()
    assert _checks(events) == [("opened", "media_sequence", ["a"]), ("closed", "media_sequence", ["a"])]
    assert events[1].defect.details["direction"] == direction and events[1].defect.value == value


def test_a_sliding_window_is_not_a_media_sequence_error(origin: Origin) -> None:
    origin.write("a", 0, 5)
    assert origin.poll() == []
    origin.write("a", 2, 5)  # two segments slid out, two new ones came
    assert origin.poll() == []


def test_a_new_segment_longer_than_the_target_duration(origin: Origin) -> None:
    origin.write("a", 0, 3)
    assert origin.poll() == []
    origin.write("a", 0, 4, durations={3: 3.4})
    events = origin.poll()
    assert _checks(events) == [("opened", "target_duration", ["a"]), ("closed", "target_duration", ["a"])]
    assert events[1].defect.value == pytest.approx(3.4) and events[1].defect.start_s == pytest.approx(6.0)
    # a VOD playlist is checked whole, once, by the probe: one defect per run of long segments
    origin.write("b", 0, 6, durations={1: 2.6, 2: 3.0, 4: 2.4}, ended=True)
    playlist = load_playlist(f"{origin.server.url}/b/live.m3u8", settings=Settings())
    found = long_segments(playlist, "b")
    assert [(d.start_s, d.end_s, d.value) for d in found] == [(2.0, pytest.approx(7.6), 3.0)]


def test_a_segment_answering_404_opens_and_a_later_one_closes(origin: Origin) -> None:
    origin.write("a", 0, 3)
    assert origin.poll() == []
    origin.write("a", 0, 4, missing=(3,))
    events = origin.poll()
    assert _checks(events) == [("opened", "segment_unavailable", ["a"])]
    assert "404" in events[0].defect.details["error"] and events[0].defect.start_s == pytest.approx(6.0)
    origin.write("a", 0, 5, missing=(3,))
    assert _checks(origin.poll()) == [("closed", "segment_unavailable", ["a"])]


def test_a_rendition_playlist_that_disappears_and_comes_back(origin: Origin) -> None:
    origin.write("a", 0, 3)
    origin.write("b", 0, 3)
    assert origin.poll() == []
    (origin.directory / "b" / "live.m3u8").unlink()
    assert _checks(origin.poll()) == [("opened", "rendition_missing", ["b"])]
    origin.write("a", 0, 4)
    origin.write("b", 0, 4)
    assert _checks(origin.poll()) == [("closed", "rendition_missing", ["b"])]


def test_renditions_drifting_apart_name_the_one_behind(origin: Origin) -> None:
    origin.write("a", 0, 3)
    origin.write("b", 0, 3)
    assert origin.poll() == []
    origin.write("a", 0, 5)  # a is two segments (4 s) ahead of b: more than a target duration
    origin.write("b", 0, 3)
    assert _checks(origin.poll(after_s=0.5)) == [("opened", "rendition_drift", ["b"])]
    origin.write("b", 0, 5)
    assert _checks(origin.poll(after_s=0.5)) == [("closed", "rendition_drift", ["b"])]
