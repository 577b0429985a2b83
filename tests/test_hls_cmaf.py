"""HLS with fragmented-MP4 (CMAF) segments and an #EXT-X-MAP init segment, VOD and live, on real
footage: bikes.mp4 looped to 30 s over a voice recording with a black (6-9 s), a freeze (17-20 s)
and a silence (26-28.5 s) injected (tests/programmes.py), encoded by x264 with its default long
GOP and a keyframe forced every 2 s (as a packager's encode), then cut by FFmpeg's HLS muxer."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from temporalio.client import WorkflowFailureError

from activities.decode import decode_window, probe
from activities.policy import SourceRefusedError
from detectors import VideoChunk
from support import hls
from support.seaweedfs import SeaweedFS
from vqa.contracts import Defect, StreamReport, StreamRequest

from . import programmes
from .conftest import TemporalServer, run_async, running_worker, start_stream
from .local import analyse_file
from .realmedia import cache_dir

METADATA = "http://169.254.169.254/latest/meta-data"
PROGRAMME = programmes.Programme()
FRAME_S = 1.0 / 25 + 1e-3  # bikes.mp4 is 25 fps
# Lossy audio spreads sound a codec frame into a muted stretch (AAC: 21 ms): silence edges are
# held to 50 ms, picture edges to a frame.
AUDIO_EDGE_S = 0.05
# FFmpeg's fMP4 muxer keeps the AAC priming (1024 samples) that the MP4 file's edit list drops,
# presented before the first picture: the playlist's timeline (from its first decoded frame, the
# priming) starts that much earlier, and everything on it comes that much later than in the file.
PRIMING_S = 1024 / 48000
_POLICY_VARIABLES = ("VQA_ALLOWED_SCHEMES", "VQA_ALLOWED_ROOTS", "VQA_ALLOW_PRIVATE_URLS", "VQA_REFUSE_PRIVATE_URLS")


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the default policy, whatever the environment running the suite sets."""
    for name in _POLICY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The programme as a packager encodes it: x264, a keyframe every 2 s, AAC sound."""
    made = cache_dir() / "programmes"
    made.mkdir(parents=True, exist_ok=True)
    source = programmes.make(made, "h264-aac-mp4", PROGRAMME)
    return hls.keyframes_every(source, tmp_path_factory.mktemp("cmaf-src") / "programme.mp4", every_s=2.0)


@pytest.fixture(scope="module")
def video_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    made = cache_dir() / "programmes"
    made.mkdir(parents=True, exist_ok=True)
    source = programmes.make(made, "h264-aac-mp4", programmes.Programme(silence=None, audio=False))
    return hls.keyframes_every(source, tmp_path_factory.mktemp("cmaf-video") / "video.mp4", every_s=2.0)


@pytest.fixture(scope="module")
def file_defects(encoded: Path) -> list[Defect]:
    return analyse_file(encoded, window_s=10.0)


# Three ways FFmpeg's HLS muxer writes fragmented MP4: its default fMP4, CMAF fragments, and one file
# the playlist names byte ranges of (BYTERANGE on #EXT-X-MAP, #EXT-X-BYTERANGE on each segment).
LAYOUTS = {"fmp4": {}, "cmaf": {"cmaf": True}, "byteranges": {"cmaf": True, "single_file": True}}


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory, encoded: Path) -> dict[str, tuple[Path, list[tuple[str, float]]]]:
    out = {}
    for name, options in LAYOUTS.items():
        directory = tmp_path_factory.mktemp(f"cmaf-{name}")
        out[name] = directory, hls.segment_fmp4(encoded, directory, segment_s=2.0, **options)  # type: ignore[arg-type]
    return out


def _edges(defects: list[Defect]) -> list[tuple[str, str, float, float]]:
    return sorted((d.kind, d.track, d.start_s, d.end_s) for d in defects)


def _assert_same(found: list[Defect], want: list[Defect], what: str) -> None:
    """The same defects (kind, track) with every edge within a frame (sound: AUDIO_EDGE_S)."""
    a, b = _edges(found), _edges(want)
    assert [(k, t) for k, t, _, _ in a] == [(k, t) for k, t, _, _ in b], f"{what}: {a} vs the file's {b}"
    for (kind, track, s0, e0), (_, _, s1, e1) in zip(a, b):
        tol = AUDIO_EDGE_S if track == "audio" else FRAME_S
        assert abs(s0 - s1) <= tol and abs(e0 - e1) <= tol, f"{what} {kind}: {(s0, e0)} vs the file's {(s1, e1)}"


def _assert_truth(defects: list[Defect], *, shift: float = 0.0) -> None:
    """Each injected defect found once, where it was put (+ `shift`), within a frame (sound: AUDIO_EDGE_S)."""
    for kind, truth, tol in (("black", PROGRAMME.black, FRAME_S), ("freeze", PROGRAMME.freeze, FRAME_S),
                             ("silence", PROGRAMME.silence, AUDIO_EDGE_S)):
        found = [(d.start_s, d.end_s) for d in defects if d.kind == kind]
        assert truth is not None and len(found) == 1, f"{kind}: expected one at {truth}, found {found}"
        (start, end), (t0, t1) = found[0], (truth[0] + shift, truth[1] + shift)
        assert abs(start - t0) <= tol and abs(end - t1) <= tol, (kind, found, truth, shift)


def test_the_file_has_the_injected_defects(file_defects: list[Defect]) -> None:
    """The oracle the playlists are held to: the file they are cut from, as injected."""
    _assert_truth(file_defects)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_vod_fmp4_playlist_has_the_defects_of_its_file(
    cut: dict[str, tuple[Path, list[tuple[str, float]]]], file_defects: list[Defect], layout: str
) -> None:
    directory, segments = cut[layout]
    text = (directory / "vod.m3u8").read_text()
    assert "#EXT-X-MAP:URI=" in text and len(segments) == 15
    assert ("#EXT-X-BYTERANGE:" in text) == (layout == "byteranges")
    info = probe(str(directory / "vod.m3u8"))
    assert not info.live and info.duration_s == pytest.approx(30.0, abs=0.1)
    assert info.video is not None and info.video.codec == "h264" and info.video.fps == pytest.approx(25.0)
    assert info.audio is not None and info.audio.codec == "aac"
    defects = analyse_file(directory / "vod.m3u8", window_s=10.0)
    _assert_same(defects, file_defects, layout)
    _assert_truth(defects, shift=PRIMING_S)


def test_a_vod_cmaf_playlist_over_http_through_temporal(
    temporal_server: TemporalServer, task_queue: str, cut: dict[str, tuple[Path, list[tuple[str, float]]]],
    file_defects: list[Defect],
) -> None:
    directory, _ = cut["cmaf"]
    server = hls.StaticServer(directory)
    try:
        async def scenario() -> StreamReport:
            async with running_worker(temporal_server, task_queue) as client:
                request = StreamRequest(stream_id=f"cmaf-{os.urandom(3).hex()}", source=f"{server.url}/vod.m3u8", window_seconds=4.0)
                return await (await start_stream(client, task_queue, request)).result()

        report = run_async(scenario())
    finally:
        server.close()
    assert report.status == "completed" and report.windows == 8
    _assert_same(report.defects, file_defects, "over HTTP")
    _assert_truth(report.defects, shift=PRIMING_S)
    assert report.live_edge_s is None


def test_a_live_cmaf_playlist_is_analysed_as_it_grows(
    temporal_server: TemporalServer, task_queue: str, cut: dict[str, tuple[Path, list[tuple[str, float]]]],
    file_defects: list[Defect],
) -> None:
    """Its 2-s segments published one a second (twice real time), the init segment named from the first."""
    directory, segments = cut["cmaf"]
    server = hls.StaticServer(directory)
    live = hls.LivePlaylist(directory, segments, initial=2, pace_s=1.0, init="init.mp4")
    window_s = 4.0
    try:
        request = StreamRequest(stream_id=f"cmaf-live-{os.urandom(3).hex()}", source=f"{server.url}/live.m3u8", window_seconds=window_s)
        report, seen = hls.analyse_live(temporal_server, task_queue, request, live)
    finally:
        live.stop()
        server.close()
    assert report.status == "completed"
    assert report.media is not None and report.media.live and report.media.duration_s == pytest.approx(30.0, abs=0.1)
    assert report.live_edge_s == pytest.approx(30.0, abs=0.1)
    assert report.max_lag_s is not None and 0.0 <= report.max_lag_s <= window_s + 4.0, report.max_lag_s
    assert any(s.live and s.state == "running" for _, s in seen)
    _assert_same(report.defects, file_defects, "live")
    black = next((edge for edge, s in seen if any(d.kind == "black" for d in s.defects + s.open_defects)), None)
    assert black is not None and black < 30.0, "the black picture was reported while the playlist was still written"


def _window(source: str, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The window's frame times, their pictures (copied) and its audio samples."""
    info = probe(source)
    chunks, report = decode_window(source, info, start_s=start_s, end_s=end_s)
    times, pictures = [], []
    for chunk in chunks:
        if isinstance(chunk, VideoChunk):
            times.append(np.asarray(chunk.times))
            pictures.append(np.array(chunk.luma))
    return np.concatenate(times), np.concatenate(pictures), report.audio_samples


@pytest.mark.parametrize("start_s", [10.0, 20.0])
def test_a_window_in_the_middle_has_the_file_timeline(cut: dict[str, tuple[Path, list[tuple[str, float]]]], encoded: Path, start_s: float) -> None:
    """A window reads the init segment and only the fragments it needs (from the one before it, for
    pre-roll): their times come from each fragment's tfdt, so its frames are the file's frames at
    the file's times (within a frame), picture for picture (the segments are stream copies)."""
    directory, _ = cut["cmaf"]
    times, pictures, samples = _window(str(directory / "vod.m3u8"), start_s, start_s + 10.0)
    file_times, file_pictures, file_samples = _window(str(encoded), start_s, start_s + 10.0)
    assert len(times) == len(file_times) == 250
    assert start_s - 1e-6 <= times[0] < start_s + FRAME_S and times[-1] < start_s + 10.0
    assert np.abs(times - file_times).max() <= FRAME_S
    assert np.array_equal(pictures, file_pictures), "the same pictures, frame for frame"
    assert samples == pytest.approx(file_samples, abs=48000 * 0.1)


@pytest.mark.integration
def test_a_byterange_playlist_on_s3_is_read_by_ranges(
    s3_env: SeaweedFS, cut: dict[str, tuple[Path, list[tuple[str, float]]]], encoded: Path
) -> None:
    """One fMP4 file on S3, the playlist naming byte ranges of it: each is an S3 range read."""
    directory, _ = cut["byteranges"]
    bucket = f"cmaf-{uuid.uuid4().hex[:10]}"
    s3_env.client().create_bucket(Bucket=bucket)
    for path in directory.iterdir():
        s3_env.client().upload_file(str(path), bucket, f"show/{path.name}")
    times, pictures, _ = _window(f"s3://{bucket}/show/vod.m3u8", 10.0, 20.0)
    file_times, file_pictures, _ = _window(str(encoded), 10.0, 20.0)
    assert len(times) == 250 and np.abs(times - file_times).max() <= FRAME_S
    assert np.array_equal(pictures, file_pictures)


def test_a_video_only_fmp4_playlist(tmp_path: Path, video_only: Path) -> None:
    hls.segment_fmp4(video_only, tmp_path, segment_s=2.0, cmaf=True)
    playlist = str(tmp_path / "vod.m3u8")
    info = probe(playlist)
    assert info.audio is None and info.video is not None and info.duration_s == pytest.approx(30.0, abs=0.1)
    times, pictures, _ = _window(playlist, 12.0, 22.0)
    file_times, file_pictures, _ = _window(str(video_only), 12.0, 22.0)
    assert len(times) == 250 and np.abs(times - file_times).max() <= FRAME_S
    assert np.array_equal(pictures, file_pictures)
    defects = analyse_file(tmp_path / "vod.m3u8", window_s=10.0)
    _assert_same(defects, analyse_file(video_only, window_s=10.0), "video only")


def _with_init(directory: Path, name: str, init: str) -> str:
    """A copy of the cut's VOD playlist whose #EXT-X-MAP names `init`."""
    text = (directory / "vod.m3u8").read_text().replace('#EXT-X-MAP:URI="init.mp4"', f'#EXT-X-MAP:URI="{init}"')
    assert f'URI="{init}"' in text
    (directory / name).write_text(text)
    return name


def test_the_init_segment_is_checked_by_the_policy(
    cut: dict[str, tuple[Path, list[tuple[str, float]]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, _ = cut["cmaf"]
    server = hls.StaticServer(directory)
    try:
        assert probe(f"{server.url}/vod.m3u8").video is not None
        with pytest.raises(SourceRefusedError, match=f"HLS init segment refused: {METADATA}/init.mp4 is a link-local address"):
            probe(f"{server.url}/{_with_init(directory, 'evil.m3u8', f'{METADATA}/init.mp4')}")
        with pytest.raises(SourceRefusedError, match="HLS init segment refused: file:///etc/passwd is a local file named by a remote playlist"):
            probe(f"{server.url}/{_with_init(directory, 'local.m3u8', 'file:///etc/passwd')}")
    finally:
        server.close()
    # A local playlist inside the allowed roots whose init segment lies outside them.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "init.mp4").write_bytes((directory / "init.mp4").read_bytes())
    monkeypatch.setenv("VQA_ALLOWED_ROOTS", str(directory))
    assert probe(str(directory / "vod.m3u8")).video is not None
    with pytest.raises(SourceRefusedError, match="HLS init segment refused: .*/elsewhere/init.mp4 is outside the allowed roots"):
        probe(str(directory / _with_init(directory, "outside.m3u8", str(outside / "init.mp4"))))


@pytest.mark.integration
def test_a_missing_init_segment_fails_clearly_and_the_worker_survives(
    temporal_server: TemporalServer, task_queue: str, cut: dict[str, tuple[Path, list[tuple[str, float]]]]
) -> None:
    directory, _ = cut["fmp4"]
    server = hls.StaticServer(directory)
    missing = f"{server.url}/{_with_init(directory, 'missing.m3u8', 'gone/init.mp4')}"

    async def scenario() -> tuple[WorkflowFailureError, StreamReport]:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, StreamRequest(stream_id=f"noinit-{os.urandom(3).hex()}", source=missing))
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
            good = StreamRequest(stream_id=f"after-{os.urandom(3).hex()}", source=f"{server.url}/vod.m3u8", window_seconds=10.0)
            return failure.value, await (await start_stream(client, task_queue, good)).result()

    try:
        failure, after = run_async(scenario())
    finally:
        server.close()
    assert f"HLS init segment not found (HTTP 404): {server.url}/gone/init.mp4" in str(failure.cause)
    assert after.status == "completed" and after.windows == 3
    _assert_truth(after.defects, shift=PRIMING_S)
