"""The commands users run: `python worker.py` and `python starter.py ...`, as subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from vqa.contracts import StreamReport
from vqa.devserver import free_port, temporal_binary

from . import media
from .conftest import REPO, TemporalServer, python_command, run_async, run_starter, running_worker, worker_subprocess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cli_queue() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def worker_process(temporal_server: TemporalServer, cli_queue: str, tmp_path_factory) -> Iterator[subprocess.Popen[bytes]]:  # type: ignore[no-untyped-def]
    with worker_subprocess(temporal_server.env(cli_queue), tmp_path_factory.mktemp("worker") / "worker.log") as proc:
        yield proc


_starter = run_starter


def _sid() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_wait_json_prints_exactly_one_report(temporal_server, cli_queue, worker_process, clips) -> None:  # type: ignore[no-untyped-def]
    done = _starter(temporal_server, cli_queue, str(clips("main")), "--wait", "--json", "--window-seconds", "4", "--stream-id", _sid())
    assert done.returncode == 0, done.stderr
    report = StreamReport.model_validate(json.loads(done.stdout))  # the whole of stdout is one document
    assert report.status == "completed" and report.windows == 8
    assert media.match(report.defects, media.MAIN_TRUTH) == []
    doc = json.loads(done.stdout)
    assert set(doc) >= {"stream_id", "source", "status", "error", "media", "window_seconds", "windows", "defects"}
    assert set(doc["defects"][0]) == {"kind", "track", "start_s", "end_s", "duration_s", "value", "details"}


def test_wait_prints_a_defect_table(temporal_server, cli_queue, worker_process, clips) -> None:  # type: ignore[no-untyped-def]
    done = _starter(temporal_server, cli_queue, str(clips("boundary")), "--wait", "--window-seconds", "5", "--stream-id", _sid())
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    rows = [row for row in lines if row and row[0] in ("black", "freeze", "silence")]
    assert [(r[0], float(r[2]), float(r[3])) for r in rows] == [
        ("black", pytest.approx(5.0, abs=0.2), pytest.approx(7.5, abs=0.2)),
        ("freeze", pytest.approx(10.0, abs=0.2), pytest.approx(14.0, abs=0.2)),
        ("silence", pytest.approx(15.0, abs=0.2), pytest.approx(17.5, abs=0.2)),
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "not found"), (b"", "empty file"), (b"\x00garbage" * 4096, "not a readable media file")],
    ids=["missing", "empty", "garbage"],
)
def test_unreadable_source_exits_nonzero_with_one_line(temporal_server, cli_queue, worker_process, tmp_path, content, reason) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "broken.mp4"
    if content is not None:
        path.write_bytes(content)
    done = _starter(temporal_server, cli_queue, str(path), "--wait", "--json", "--stream-id", _sid())
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and reason in done.stderr
    report = StreamReport.model_validate(json.loads(done.stdout))
    assert report.status == "failed" and reason in (report.error or "")
    assert worker_process.poll() is None, "the worker survives bad input"


@pytest.mark.parametrize(
    "args",
    [
        ["--detectors", "black,sparkle"],
        ["--set", "freeze.noise_db=12"],
        ["--set", "black.no_such_option=1"],
        ["--set", "nonsense"],
        ["--window-seconds", "0"],
        ["--stream-id", "bad id with spaces"],
    ],
    ids=["unknown-detector", "out-of-range", "unknown-option", "malformed-set", "zero-window", "bad-stream-id"],
)
def test_invalid_request_is_rejected_before_anything_starts(temporal_server, cli_queue, clips, args) -> None:  # type: ignore[no-untyped-def]
    done = _starter(temporal_server, cli_queue, str(clips("clean")), "--wait", *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error:")
    assert done.stdout == ""


def test_detectors_option_runs_only_those(temporal_server, cli_queue, worker_process, clips) -> None:  # type: ignore[no-untyped-def]
    """--detectors silence on the main clip (black, freeze and silence in it): only silence is looked for."""
    done = _starter(temporal_server, cli_queue, str(clips("main")), "--detectors", "silence", "--wait", "--json",
                    "--stream-id", _sid())
    assert done.returncode == 0, done.stderr
    report = StreamReport.model_validate_json(done.stdout)
    assert media.match(report.defects, [e for e in media.MAIN_TRUTH if e.kind == "silence"]) == []
    # The report names no detectors; each window's stored result carries the state of every detector that ran.
    assert report.results_uri is not None and report.results_uri.endswith("report.json")
    windows = sorted((Path(report.results_uri).parent / "windows").glob("*.json"))
    assert len(windows) == report.windows == 4
    assert [sorted(json.loads(w.read_text())["detectors"]) for w in windows] == [["silence"]] * 4


def test_unreachable_temporal_exits_3_with_one_line(clips) -> None:  # type: ignore[no-untyped-def]
    """Nothing listens at TEMPORAL_ADDRESS: exit 3 (README: Temporal unreachable), one line saying so."""
    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        python_command("starter.py", str(clips("clean")), "--wait", "--json", "--stream-id", _sid()),
        env={**os.environ, "TEMPORAL_ADDRESS": address}, capture_output=True, text=True, timeout=120, cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach Temporal at {address}" in lines[0], done.stderr


@pytest.mark.parametrize(("end", "reason"), [("cancel", "cancelled"), ("terminate", "terminated")])
def test_a_cancelled_or_terminated_stream_exits_1_with_one_line(temporal_server, end, reason, clips) -> None:  # type: ignore[no-untyped-def]
    """The analysis is cancelled (or terminated) while `--wait` waits: exit 1, one line that says so."""
    queue = f"cli-end-{uuid.uuid4().hex[:8]}"  # no worker polls it until the stream has been ended
    sid = _sid()
    with subprocess.Popen(
        python_command("starter.py", str(clips("clean")), "--wait", "--json", "--stream-id", sid),
        env=temporal_server.env(queue), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        stdin=subprocess.DEVNULL,
    ) as waiting:

        async def end_stream() -> None:
            client = await Client.connect(temporal_server.address)
            handle = client.get_workflow_handle(f"vqa-stream-{sid}")
            while True:  # until the starter has started the stream
                try:
                    await handle.describe()
                    break
                except RPCError:
                    assert waiting.poll() is None, waiting.communicate()
                    await asyncio.sleep(0.2)
            if end == "cancel":
                await handle.cancel()
                # A worker comes and runs the workflow, which finds itself cancelled.
                async with running_worker(temporal_server, queue):
                    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                        await asyncio.sleep(0.2)
            else:
                await handle.terminate("by the operator")

        run_async(end_stream())
        out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and reason in lines[0], err
    report = StreamReport.model_validate_json(out)
    assert report.status == "failed" and reason in (report.error or "")


def test_start_then_attach(temporal_server, cli_queue, worker_process, clips) -> None:  # type: ignore[no-untyped-def]
    sid = _sid()
    first = _starter(temporal_server, cli_queue, str(clips("clean")), "--stream-id", sid)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"vqa-stream-{sid}"
    second = _starter(temporal_server, cli_queue, str(clips("clean")), "--stream-id", sid, "--wait", "--json")
    assert second.returncode == 0, second.stderr
    assert StreamReport.model_validate_json(second.stdout).status == "completed"
    count = subprocess.run(
        [temporal_binary(), "workflow", "count", "--address", temporal_server.address,
         "--query", f"WorkflowId = 'vqa-stream-{sid}'"],
        capture_output=True, text=True, check=True,
    )
    assert count.stdout.split() == ["Total:", "1"], "the second command attached to the first analysis"


def test_default_stream_id_comes_from_the_file_name(temporal_server, cli_queue, worker_process, clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = f"talk{uuid.uuid4().hex[:6]}"
    path = tmp_path / f"{name}.mp4"
    path.write_bytes(clips("clean").read_bytes())
    done = _starter(temporal_server, cli_queue, str(path), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    report = StreamReport.model_validate_json(done.stdout)
    assert report.stream_id == name and report.source == str(path)
    # Another file with the same name elsewhere is another stream, not the first one's report.
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = other_dir / f"{name}.mp4"
    other.write_bytes(clips("video_only").read_bytes())
    again = _starter(temporal_server, cli_queue, str(other), "--wait", "--json")
    assert again.returncode == 0, again.stderr
    second = StreamReport.model_validate_json(again.stdout)
    assert second.source == str(other) and second.stream_id.startswith(f"{name}-")


def test_dev_works_on_a_fresh_machine(tmp_path: Path) -> None:
    """--dev with nothing running: starts the dev server and a worker, analyses the demo clip."""
    port = free_port()
    home = tmp_path / "home"
    env = dict(os.environ, TEMPORAL_ADDRESS=f"127.0.0.1:{port}", VQA_HOME=str(home), PYTHONUNBUFFERED="1")
    env.pop("TEMPORAL_UI_URL", None)
    try:
        done = subprocess.run(
            python_command("starter.py", "--dev", "--wait", "--json"),
            env=env, capture_output=True, text=True, timeout=240, cwd=REPO, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        report = StreamReport.model_validate_json(done.stdout)
        assert report.status == "completed" and report.stream_id == "demo"
        assert report.window_seconds == 10.0 and report.windows == 4, "the default window: 10 s (40 s demo clip)"
        assert media.match(
            report.defects,
            [media.Expected("black", 6.0, 9.5), media.Expected("freeze", 18.0, 23.0), media.Expected("silence", 28.0, 32.5)],
        ) == []
        assert f"http://127.0.0.1:{port + 1000}/namespaces/default/workflows/vqa-stream-demo" in done.stderr
        assert (home / "temporal.db").exists(), "the dev server keeps its state on disk"
    finally:
        pid_file = home / "temporal.pid"
        if pid_file.exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_a_still_image_channel_through_the_starter(temporal_server, cli_queue, worker_process, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A still-image programme (one picture over a voice) through the real worker: one freeze marked
    `whole_stream` in the report; `--set freeze.still_programme=true` (a channel static by design)
    reports nothing and exits 0."""
    from . import programmes
    from .realmedia import cache_dir

    made = cache_dir() / "programmes"
    made.mkdir(parents=True, exist_ok=True)
    path = str(programmes.still_image(made))
    done = _starter(temporal_server, cli_queue, path, "--wait", "--json", "--stream-id", _sid())
    assert done.returncode == 0, done.stderr
    report = StreamReport.model_validate(json.loads(done.stdout))
    assert [(d.kind, d.start_s, d.end_s) for d in report.defects] == [("freeze", 0.0, 30.0)]
    details = report.defects[0].details
    assert details["from_start"] is True and details["whole_stream"] is True
    assert "evidence" in details  # a thumbnail of the picture, as for any freeze
    quiet = _starter(temporal_server, cli_queue, path, "--wait", "--json", "--stream-id", _sid(),
                     "--set", "freeze.still_programme=true")
    assert quiet.returncode == 0, quiet.stderr
    assert StreamReport.model_validate(json.loads(quiet.stdout)).defects == []


# -- the console scripts and the command line, without a server -------------------------------


@pytest.mark.parametrize(("script", "usage"), [("vqa", "usage: vqa [-h] COMMAND"), ("vqa-worker", "usage: vqa-worker [-h]")])
def test_pip_install_puts_the_console_scripts_next_to_python(script: str, usage: str) -> None:
    """`pip install -e .` installs `vqa` (starter.py) and `vqa-worker` (worker.py) in the environment's bin."""
    found = shutil.which(script, path=str(Path(sys.executable).parent))
    assert found, f"{script} is not installed next to {sys.executable}: run pip install -e '.[dev]'"
    done = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(usage), done.stdout


def test_the_console_script_is_the_starter(tmp_path: Path) -> None:
    """`vqa SOURCE ...` is `python starter.py SOURCE ...`: the same validation, the same exit code and line."""
    vqa = shutil.which("vqa", path=str(Path(sys.executable).parent))
    assert vqa
    env = {**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    for command in ([vqa], python_command("starter.py")):
        done = subprocess.run([*command, "x.mp4", "--set", "nonsense"], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)
        assert done.returncode == 2 and done.stderr == "error: --set takes DETECTOR.OPTION=VALUE, got 'nonsense'\n"


@pytest.mark.parametrize(
    ("argv", "command", "source"),
    [
        (["show.mp4", "--wait"], "start", "show.mp4"),
        (["start", "show.mp4", "--wait"], "start", "show.mp4"),
        ([], "start", None),
        (["--dev", "--wait"], "start", None),
        (["status", "talk60"], "status", None),
        (["status", "--wait"], "start", "status"),  # no ID after it: a SOURCE named `status`
        (["stop"], "start", "stop"),
        (["list", "--json"], "list", None),
    ],
)
def test_a_first_word_is_a_command_or_a_source(argv: list[str], command: str, source: str | None, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from starter import _parser

    monkeypatch.chdir(tmp_path)
    args = _parser().parse_args(argv)
    assert args.command == command and getattr(args, "source", None) == source


@pytest.mark.parametrize("word", ["list", "start"])
def test_a_file_named_like_a_command_is_a_source(word: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from starter import _parser

    monkeypatch.chdir(tmp_path)
    (tmp_path / word).write_bytes(b"")
    args = _parser().parse_args([word, "--wait"])
    assert args.command == "start" and args.source == word


@pytest.mark.parametrize("script", ["starter.py", "worker.py"])
@pytest.mark.parametrize(
    ("variable", "value"), [("VQA_MAX_CONCURRENT_WINDOWS", "abc"), ("VQA_METRICS_PORT", "99999"), ("VQA_NETWORK_TIMEOUT_S", "-1")]
)
def test_a_malformed_setting_is_one_line_naming_it_and_exit_2(script: str, variable: str, value: str) -> None:
    args = ["list"] if script == "starter.py" else []
    done = subprocess.run(
        python_command(script, *args), env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1", variable: value},
        capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {variable}: "), done.stderr
    assert done.stdout == ""
