"""`python starter.py status ID`, `list` and `stop ID`, as subprocesses against a `python worker.py`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from support import hls
from vqa.contracts import StreamReport, StreamStatus
from vqa.devserver import free_port
from vqa.synth import ClipSpec, Segment, make_clip

from .conftest import REPO, TemporalServer, python_command, worker_subprocess, run_starter

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin_queue() -> str:
    return f"admin-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def admin_worker(temporal_server: TemporalServer, admin_queue: str, tmp_path_factory) -> Iterator[subprocess.Popen[bytes]]:  # type: ignore[no-untyped-def]
    with worker_subprocess(temporal_server.env(admin_queue), tmp_path_factory.mktemp("admin-worker") / "worker.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def live_playlist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live HLS playlist that never grows and never ends: its stream runs until stopped."""
    directory = tmp_path_factory.mktemp("admin-hls")
    clip = make_clip(directory / "live.mp4", ClipSpec(duration_s=6.0, video=[Segment("black", 1.0, 4.0)], keyframe_interval_s=1.0))
    segments = hls.segment(clip, directory, segment_s=1.0)
    server = hls.StaticServer(directory)
    live = hls.LivePlaylist(directory, segments, initial=4, pace_s=3600, end=False).start()
    try:
        yield f"{server.url}/live.m3u8"
    finally:
        live.stop()
        server.close()


_starter = run_starter


def _sid() -> str:
    return f"admin-{uuid.uuid4().hex[:8]}"


def _status(server: TemporalServer, queue: str, sid: str) -> StreamStatus:
    done = _starter(server, queue, "status", sid, "--json")
    assert done.returncode == 0, done.stderr
    return StreamStatus.model_validate_json(done.stdout)


def test_status_of_a_finished_stream(temporal_server, admin_queue, admin_worker, clips) -> None:  # type: ignore[no-untyped-def]
    sid = _sid()
    done = _starter(temporal_server, admin_queue, str(clips("main")), "--wait", "--json", "--window-seconds", "4", "--stream-id", sid)
    assert done.returncode == 0, done.stderr
    report = StreamReport.model_validate_json(done.stdout)

    status = _status(temporal_server, admin_queue, sid)
    assert status.state == "completed" and status.stream_id == sid
    assert status.windows_done == report.windows == 8
    assert status.defects == report.defects and status.open_defects == []

    table = _starter(temporal_server, admin_queue, "status", sid)
    assert table.returncode == 0, table.stderr
    assert f"stream {sid}" in table.stdout and "state completed" in table.stdout and "8/8 windows" in table.stdout
    assert {line.split()[0] for line in table.stdout.splitlines() if line.split()} >= {d.kind for d in report.defects}


def test_stop_ends_a_running_live_stream_and_list_shows_it(temporal_server, admin_queue, admin_worker, live_playlist) -> None:  # type: ignore[no-untyped-def]
    sid = _sid()
    started = _starter(temporal_server, admin_queue, live_playlist, "--stream-id", sid, "--window-seconds", "1")
    assert started.returncode == 0, started.stderr

    deadline = time.monotonic() + 60
    status = _status(temporal_server, admin_queue, sid)
    while status.windows_done < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
        status = _status(temporal_server, admin_queue, sid)
    assert status.state == "running" and status.live and status.windows_done == 4
    assert status.lag_s is not None and status.lag_s == pytest.approx(0.0, abs=0.1)

    listed = _list_until(temporal_server, admin_queue, lambda streams: streams.get(sid, {}).get("status") == "running")
    assert listed[sid]["source"] == live_playlist
    lines = _starter(temporal_server, admin_queue, "list").stdout.splitlines()
    assert any(line.split()[:2] == [sid, "running"] for line in lines)

    stop = _starter(temporal_server, admin_queue, "stop", sid)
    assert stop.returncode == 0, stop.stderr
    assert sid in stop.stdout

    # The same stream id attaches to the analysis and waits for its (stopped) end.
    report = StreamReport.model_validate_json(
        _starter(temporal_server, admin_queue, live_playlist, "--stream-id", sid, "--wait", "--json").stdout
    )
    assert report.status == "stopped" and report.windows == 4
    assert _status(temporal_server, admin_queue, sid).state == "stopped"
    listed = _list_until(temporal_server, admin_queue, lambda streams: streams.get(sid, {}).get("status") == "completed")
    assert listed[sid]["status"] == "completed"


def _list_until(server: TemporalServer, queue: str, ready, timeout_s: float = 20.0) -> dict[str, dict]:  # type: ignore[no-untyped-def, type-arg]
    """Visibility is eventually consistent: poll `list --json` until `ready` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = _starter(server, queue, "list", "--json")
        assert done.returncode == 0, done.stderr
        streams = {s["stream_id"]: s for s in json.loads(done.stdout)}
        if ready(streams) or time.monotonic() > deadline:
            return streams
        time.sleep(0.5)


@pytest.mark.parametrize("command", ["status", "stop"])
def test_unknown_stream_exits_1_with_one_line(temporal_server, admin_queue, command) -> None:  # type: ignore[no-untyped-def]
    sid = f"nosuch-{uuid.uuid4().hex[:8]}"
    done = _starter(temporal_server, admin_queue, command, sid)
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error:") and sid in done.stderr


def test_admin_commands_report_an_unreachable_server() -> None:
    env = {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    for args in (["list"], ["status", "x"], ["stop", "x"]):
        done = subprocess.run(
            python_command("starter.py", *args), env={**os.environ, **env},
            capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 3, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


def test_wait_shows_progress_on_a_terminal(temporal_server, admin_queue, admin_worker, clips) -> None:  # type: ignore[no-untyped-def]
    """On a TTY, --wait draws a progress line on stderr from the status query; stdout stays the report."""
    import pty
    import threading

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            python_command("starter.py", str(clips("main")), "--wait", "--json", "--window-seconds", "2", "--stream-id", _sid()),
            env=temporal_server.env(admin_queue), stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120, cwd=REPO,
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(slave)
        reader.join(timeout=5)
        os.close(master)
    assert done.returncode == 0
    assert StreamReport.model_validate_json(done.stdout).windows == 16
    terminal = b"".join(chunks).decode(errors="replace")
    # The line left on the terminal is where the stream ended: all of it, every window.
    report = StreamReport.model_validate_json(done.stdout)
    final = re.search(r"\[(#+)\s*\]\s+100%\s+32\.0/32\.0 s\s+16/16 windows\s+(\d+) defect\(s\)\r?\n", terminal)
    assert final, terminal
    assert len(final.group(1)) == 30
    assert int(final.group(2)) == len(report.defects)
