"""Broken input: each case ends in a clear, non-retryable message or a report of what could be
analysed, never a crash or a hang; the worker analyses a good stream afterwards."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

import activities.decode
from activities.decode import SourceUnavailableError, UnreadableSourceError, probe
from activities.offline import analyse_file
from support import hls
from vqa.contracts import StreamReport, StreamRequest

from . import bad_media, media
from .conftest import REPO, TemporalServer, python_command, run_async, running_worker, start_stream


def _kinds(defects: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(d.kind, d.track) for d in defects]


def test_truncated_mp4_without_its_index_is_a_clear_error(clips: media.ClipFactory, tmp_path: Path) -> None:
    path = bad_media.truncated(clips("main"), tmp_path / "half.mp4", faststart=False)
    with pytest.raises(UnreadableSourceError, match="not a readable media file"):
        probe(str(path))


def test_truncated_faststart_mp4_reports_what_it_holds(clips: media.ClipFactory, tmp_path: Path) -> None:
    path = bad_media.truncated(clips("main"), tmp_path / "half.mp4", faststart=True)
    info = probe(str(path))
    assert info.duration_s == pytest.approx(32.0, abs=0.05), "the index still describes the whole programme"
    defects = analyse_file(path, window_s=8.0, media=info)
    # The part that is there is analysed; where the data stops, both tracks are lost to the end.
    lost = [d for d in defects if d.kind == "signal_loss"]
    assert sorted(d.track for d in lost) == ["audio", "video"]
    cut = min(d.start_s for d in lost)
    assert 5.0 < cut < 30.0 and all(d.end_s == pytest.approx(32.0, abs=0.05) for d in lost)
    before = [d for d in defects if d.kind in ("black", "freeze", "silence") and d.end_s <= cut]
    assert media.match(before, [e for e in media.MAIN_TRUTH if e.end_s <= cut]) == []


def test_resolution_and_frame_rate_change_mid_stream(tmp_path: Path) -> None:
    path = bad_media.resolution_change(tmp_path)
    for window_s in (3.0, 10.0):
        defects = analyse_file(path, window_s=window_s)
        assert _kinds(defects) == [("black", "video")], defects
        assert defects[0].start_s == pytest.approx(4.0, abs=0.2) and defects[0].end_s == pytest.approx(8.0, abs=0.2)


def test_variable_frame_rate(tmp_path: Path) -> None:
    path = bad_media.variable_frame_rate(tmp_path / "vfr.mp4")
    for window_s in (3.0, 8.0):
        defects = analyse_file(path, window_s=window_s)
        assert _kinds(defects) == [("black", "video")], defects
        assert defects[0].start_s == pytest.approx(2.0, abs=0.1) and defects[0].end_s == pytest.approx(5.0, abs=0.1)


@pytest.mark.parametrize("suffix", [".mp3", ".m4a"])
def test_cover_art_is_not_the_video(tmp_path: Path, suffix: str) -> None:
    path = bad_media.with_cover_art(tmp_path, suffix=suffix)
    info = probe(str(path))
    assert info.video is None and info.audio is not None
    defects = analyse_file(path, window_s=2.0, media=info)
    assert _kinds(defects) == [("silence", "audio")]
    assert defects[0].start_s == pytest.approx(1.0, abs=0.15) and defects[0].end_s == pytest.approx(4.0, abs=0.15)


def test_unsupported_codec_is_a_clear_error(clips: media.ClipFactory, tmp_path: Path) -> None:
    path = bad_media.unknown_video_codec(clips("clean"), tmp_path)
    with pytest.raises(UnreadableSourceError, match="video track .* does not decode .*unsupported codec"):
        probe(str(path))


def test_no_audio_or_video_track_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSourceError, match="no audio or video track"):
        probe(str(bad_media.subtitles_only(tmp_path)))


def test_absurd_dimensions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableSourceError, match="cannot open"):
        probe(str(bad_media.absurd_header(tmp_path / "huge.y4m")))


def test_a_2x2_video_is_analysed(tmp_path: Path) -> None:
    path = bad_media.tiny(tmp_path / "tiny.mkv")
    info = probe(str(path))
    assert info.video is not None and (info.video.width, info.video.height) == (2, 2)
    defects = analyse_file(path, window_s=2.0, media=info)
    assert _kinds(defects) == [("black", "video")]


@pytest.fixture
def hls_with_a_missing_segment(clips: media.ClipFactory, tmp_path: Path) -> Iterator[tuple[str, str]]:
    segments = hls.segment(clips("clean"), tmp_path, segment_s=2.0)
    gone = segments[3][0]
    (tmp_path / gone).unlink()
    server = hls.StaticServer(tmp_path)
    try:
        yield f"{server.url}/vod.m3u8", f"{server.url}/{gone}"
    finally:
        server.close()


def test_hls_segment_404_mid_stream_fails_naming_the_url(hls_with_a_missing_segment: tuple[str, str]) -> None:
    """Decided: a VOD segment that 404s is an error naming it (non-retryable), not a defect of the stream:
    the playlist promised it, so the source is broken rather than the signal lost."""
    source, missing = hls_with_a_missing_segment
    info = probe(source)
    assert info.duration_s == pytest.approx(12.0, abs=0.1)
    with pytest.raises(ApplicationError) as err:
        analyse_file(source, window_s=4.0, media=info)
    assert err.value.type == "UnreadableSource" and err.value.non_retryable
    assert missing in str(err.value) and "404" in str(err.value)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts TCP connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("path", ["/clip.mp4", "/live.m3u8"])
def test_a_url_that_never_answers_times_out(silent_server: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VQA_NETWORK_TIMEOUT_S", "2")  # sources and HLS playlists alike
    began = time.monotonic()
    with pytest.raises(SourceUnavailableError, match="did not answer|timed out"):
        probe(silent_server + path)
    assert time.monotonic() - began < 10, "a timeout, not a hang"


@pytest.mark.integration
def test_the_worker_survives_broken_input(temporal_server: TemporalServer, task_queue: str, clips, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = {
        "truncated": (bad_media.truncated(clips("clean"), tmp_path / "half.mp4", faststart=False), "not a readable"),
        "codec": (bad_media.unknown_video_codec(clips("clean"), tmp_path), "unsupported codec"),
        "no-tracks": (bad_media.subtitles_only(tmp_path), "no audio or video track"),
        "random": (tmp_path / "noise.mp4", "not a readable"),
    }
    # Fixed noise: some random draws probe as a container with no tracks (another clear message).
    (tmp_path / "noise.mp4").write_bytes(random.Random(1).randbytes(50_000))

    async def run(client, name: str, path: Path):  # type: ignore[no-untyped-def]
        request = StreamRequest(stream_id=f"{name}-{os.urandom(4).hex()}", source=str(path), window_seconds=4.0)
        handle = await start_stream(client, task_queue, request)
        return await handle.result()

    async def scenario() -> tuple[dict[str, str], StreamReport, StreamReport]:
        messages: dict[str, str] = {}
        async with running_worker(temporal_server, task_queue) as client:
            for name, (path, _) in broken.items():
                with pytest.raises(WorkflowFailureError) as err:
                    await run(client, name, path)
                messages[name] = str(err.value.cause)
            corrupt = await run(client, "corrupt", corrupted)
            return messages, corrupt, await run(client, "good", clips("boundary"))

    corrupted = tmp_path / "corrupted.mp4"
    t = media.corrupt_video_packet(clips("boundary"), corrupted, at_s=18.0)
    messages, corrupt, report = run_async(scenario())
    for name, (_, expected) in broken.items():
        assert expected in messages[name], (name, messages[name])
    # Corrupt packets mid-stream: a decode_error defect where they are, the rest analysed as usual.
    errors = [d for d in corrupt.defects if d.kind == "decode_error"]
    assert corrupt.status == "completed" and len(errors) == 1 and abs(errors[0].start_s - t) <= 0.2
    assert media.match([d for d in corrupt.defects if d.kind != "decode_error"], media.BOUNDARY_TRUTH) == []
    assert report.status == "completed" and media.match(report.defects, media.BOUNDARY_TRUTH) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--window-seconds", "-1"],
        ["--window-seconds", "nan"],
        ["--window-seconds", "601"],
        ["--stream-id", "a/b"],
        ["--stream-id", "x" * 201],
        ["--results", "ftp://host/dir"],
        ["--results", "s3://"],
        ["--notify", "file:///etc/passwd"],
        ["--set", "black.min_duration_s=-1"],
    ],
    ids=["negative-window", "nan-window", "huge-window", "slash-id", "long-id", "ftp-results", "bucketless-s3",
         "file-webhook", "negative-option"],
)
def test_invalid_values_are_rejected_by_validation(args: list[str], clips: media.ClipFactory) -> None:
    from starter import UsageError, _parser, build_request

    parsed = _parser().parse_args([str(clips("clean")), *args])
    with pytest.raises(UsageError, match="invalid"):
        build_request(parsed, parsed.source)


@pytest.mark.parametrize("args", [["--window-seconds", "abc"], ["--window-seconds", "0.0"], ["--stream-id", "-x"]])
def test_the_cli_rejects_before_connecting(args: list[str], clips: media.ClipFactory) -> None:
    """Nothing listens on port 1: exit 2 (not 'cannot reach Temporal') proves nothing was started."""
    done = subprocess.run(
        python_command("starter.py", str(clips("clean")), "--wait", *args),
        env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"}, capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot reach" not in done.stderr and done.stdout == ""
