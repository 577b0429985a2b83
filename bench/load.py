"""Many streams at once on one worker: do they all finish, and does memory stay bounded?

    python -m bench.load [--streams 10,50] [--max-concurrent-windows 2] [--clip-seconds 6] [--window-seconds 2]
                         [--no-queue-row]

For each stream count, on a fresh Temporal dev server (free ports, in memory): starts ONE
`python worker.py --max-concurrent-windows N`, starts all the streams at once through the
client (generated clips with known defects), waits for every report, then reads every
history. Measures: streams completed (and reports matching the injected truth), wall time,
the worker's peak RSS (VmHWM of /proc/PID/status, and VmRSS sampled every 50 ms) and its RSS
once idle before the streams, the most window activities running at once (from the
histories' started/closed times), the longest a window waited for a slot (scheduled ->
started), and activity timeouts, failures and retries. A last row (skip it with
--no-queue-row) runs 50 streams of 60 s in 30 s windows on ONE slot, so that windows wait
for it longer than the window activity's 30 s heartbeat timeout: queueing must not time
anything out.
Prints a table and writes bench/results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from temporalio.client import Client

from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from vqa.devserver import free_port, start_dev_server, stop_process
from vqa.runtime import Settings, connect
from vqa.synth import ClipSpec, Segment, make_clip
from workflows import StreamMonitorWorkflow

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("VQA_BENCH_CACHE", Path.home() / ".cache" / "vqa-bench"))
CLIPS = 5  # distinct clips; stream i analyses clip i % CLIPS


def _clip(index: int, seconds: float) -> tuple[Path, list[tuple[str, float, float]]]:
    """A short 640x360 clip with one defect whose place depends on `index`; its truth."""
    start = 0.5 + (index % CLIPS) * (seconds - 3.0) / CLIPS
    kind = ("black", "freeze", "silence")[index % 3]
    segment = Segment(kind, round(start, 2), round(start + 2.5, 2))
    spec = ClipSpec(
        duration_s=seconds, width=640, height=360, keyframe_interval_s=1.0,
        video=[segment] if kind != "silence" else [], audio=[segment] if kind == "silence" else [],
    )
    path = CACHE / f"load-{index}-{seconds:g}s.mp4"
    if not path.exists():
        make_clip(path, spec)
    return path, [(kind, segment.start_s, segment.end_s)]


@dataclass
class _MemorySampler:
    """The worker's resident memory, read from /proc (no psutil) every `interval_s`."""

    pid: int
    interval_s: float = 0.05
    max_rss_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _read(self) -> dict[str, int]:
        values: dict[str, int] = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0])  # kB
        return values

    def rss_kib(self) -> int:
        return self._read()["VmRSS"]

    def hwm_kib(self) -> int:
        return self._read()["VmHWM"]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.max_rss_kib = max(self.max_rss_kib, self.rss_kib())
            except (OSError, KeyError):
                return

    def __enter__(self) -> _MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with code {proc.returncode}; see {log}")
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker did not start polling within {timeout_s:g} s; see {log}")


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals], key=lambda e: (e[0], e[1]))
    running = best = 0
    for _, delta in edges:
        running += delta
        best = max(best, running)
    return best


async def _history_figures(client: Client, workflow_ids: list[str]) -> dict[str, Any]:
    """Concurrency, queueing, timeouts and retries of the activities, from the histories."""
    windows: list[tuple[datetime, datetime]] = []
    activities: list[tuple[datetime, datetime]] = []
    waits: list[float] = []
    timed_out = failed = retried = retried_after_timeout = 0
    for workflow_id in workflow_ids:
        scheduled: dict[int, tuple[str, datetime]] = {}
        started: dict[int, datetime] = {}
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            when = event.event_time.ToDatetime()
            if event.HasField("activity_task_scheduled_event_attributes"):
                scheduled[event.event_id] = (event.activity_task_scheduled_event_attributes.activity_type.name, when)
            elif event.HasField("activity_task_started_event_attributes"):
                attrs = event.activity_task_started_event_attributes
                started[event.event_id] = when
                retried += attrs.attempt > 1
                retried_after_timeout += attrs.attempt > 1 and attrs.last_failure.HasField("timeout_failure_info")
                name, at = scheduled[attrs.scheduled_event_id]
                if name == "analyze_window" and attrs.attempt == 1:
                    waits.append((when - at).total_seconds())
            else:
                for kind in ("completed", "failed", "timed_out", "canceled"):
                    attr = f"activity_task_{kind}_event_attributes"
                    if event.HasField(attr):
                        closed = getattr(event, attr)
                        timed_out += kind == "timed_out"
                        failed += kind == "failed"
                        began = started.get(closed.started_event_id)
                        if began is not None:
                            interval = (began, when)
                            activities.append(interval)
                            if scheduled[closed.scheduled_event_id][0] == "analyze_window":
                                windows.append(interval)
    return {
        "window_activities": len(windows),
        "max_concurrent_windows_observed": _max_overlap(windows),
        "max_concurrent_activities_observed": _max_overlap(activities),
        "max_window_queue_wait_s": round(max(waits, default=0.0), 3),
        "activity_timeouts": timed_out,
        "activity_failures": failed,
        "activity_retries": retried,
        "activity_retries_after_a_timeout": retried_after_timeout,
    }


def _matches(report: StreamReport, truth: list[tuple[str, float, float]]) -> bool:
    found = [(d.kind, d.start_s, d.end_s) for d in report.defects]
    return len(found) == len(truth) and all(
        k == tk and abs(s - ts) <= 0.2 and abs(e - te) <= 0.2 for (k, s, e), (tk, ts, te) in zip(found, truth)
    )


def run_load(*, streams: int, slots: int, clip_seconds: float, window_seconds: float, workdir: Path) -> dict[str, Any]:
    clips = [_clip(i, clip_seconds) for i in range(CLIPS)]
    port = free_port()
    server = start_dev_server(port=port, ui_port=None, db_path=None, log_path=workdir / f"temporal-{streams}.log")
    queue = f"load-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "VQA_"))}
    env.update(
        TEMPORAL_ADDRESS=f"127.0.0.1:{port}", TEMPORAL_NAMESPACE="default", VQA_TASK_QUEUE=queue,
        VQA_RESULTS=str(workdir / f"results-{streams}"), PYTHONUNBUFFERED="1",
    )
    log = workdir / f"worker-{streams}.log"
    try:
        with open(log, "wb") as out:
            worker = subprocess.Popen(
                [sys.executable, str(REPO / "worker.py"), "--max-concurrent-windows", str(slots)],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            )
        try:
            _wait_for_line(log, "worker polling task queue", worker)
            time.sleep(1.0)  # settle: the worker's connections and pollers are up
            with _MemorySampler(worker.pid) as memory:
                idle_rss = memory.rss_kib()
                figures = asyncio.run(_drive(env, queue, streams, clips, window_seconds))
                hwm = memory.hwm_kib()
            peak = max(hwm, memory.max_rss_kib)
        finally:
            stop_process(worker, timeout_s=30)
    finally:
        stop_process(server)
    return {
        "streams": streams,
        "max_concurrent_windows": slots,
        "clip_seconds": clip_seconds,
        "window_seconds": window_seconds,
        **figures,
        "worker_idle_rss_mib": round(idle_rss / 1024, 1),
        "worker_peak_rss_mib": round(peak / 1024, 1),
    }


async def _drive(
    env: dict[str, str], queue: str, streams: int, clips: list[tuple[Path, list[tuple[str, float, float]]]],
    window_seconds: float,
) -> dict[str, Any]:
    client = await connect(Settings.from_env(env))
    run = uuid.uuid4().hex[:6]
    requests = [
        StreamRequest(stream_id=f"load-{run}-{i:03d}", source=str(clips[i % CLIPS][0]), window_seconds=window_seconds)
        for i in range(streams)
    ]
    began = time.perf_counter()
    handles = await asyncio.gather(*(
        client.start_workflow(
            StreamMonitorWorkflow.run, r, id=workflow_id_for(r.stream_id), task_queue=queue, result_type=StreamReport
        )
        for r in requests
    ))
    outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)
    wall = time.perf_counter() - began
    reports = [o for o in outcomes if isinstance(o, StreamReport)]
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        key = outcome.status if isinstance(outcome, StreamReport) else type(outcome).__name__
        statuses[key] = statuses.get(key, 0) + 1
    correct = sum(_matches(o, clips[i % CLIPS][1]) for i, o in enumerate(outcomes) if isinstance(o, StreamReport))
    windows = sum(r.windows for r in reports)
    return {
        "statuses": statuses,
        "completed": statuses.get("completed", 0),
        "reports_matching_truth": correct,
        "windows": windows,
        "wall_s": round(wall, 2),
        "windows_per_s": round(windows / wall, 2),
        "media_s_per_wall_s": round(sum(r.media.duration_s for r in reports if r.media) / wall, 1),
        **await _history_figures(client, [h.id for h in handles]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="10,50", help="stream counts to run, comma-separated (default 10,50)")
    parser.add_argument("--max-concurrent-windows", type=int, default=2, help="the worker's window slots (default 2)")
    parser.add_argument("--clip-seconds", type=float, default=6.0, help="length of each stream (default 6)")
    parser.add_argument("--window-seconds", type=float, default=2.0, help="window length (default 2)")
    parser.add_argument("--no-queue-row", dest="queue_row", action="store_false",
                        help="skip the 50 x 60 s streams in 30 s windows on one slot (long waits for it)")
    args = parser.parse_args(argv)
    slots = args.max_concurrent_windows
    runs = [(int(n), slots, args.clip_seconds, args.window_seconds) for n in args.streams.split(",") if n.strip()]
    if args.queue_row:
        runs.append((50, 1, 60.0, 30.0))
    with tempfile.TemporaryDirectory(prefix="vqa-load-") as tmp:
        rows = [
            run_load(streams=n, slots=n_slots, clip_seconds=clip_s, window_seconds=window_s, workdir=Path(tmp))
            for n, n_slots, clip_s, window_s in runs
        ]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    print(f"One worker (`worker.py --max-concurrent-windows SLOTS`); streams of 640x360 25 fps "
          f"H.264 + AAC stereo, one defect each; machine: {machine}")
    header = ("streams", "stream s", "window s", "slots", "completed", "correct", "windows", "wall s", "win/s",
              "max windows", "max wait s", "timeouts", "retries", "idle RSS MiB", "peak RSS MiB")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(str(v) for v in (
            r["streams"], f"{r['clip_seconds']:g}", f"{r['window_seconds']:g}", r["max_concurrent_windows"],
            r["completed"], r["reports_matching_truth"], r["windows"], r["wall_s"], r["windows_per_s"],
            r["max_concurrent_windows_observed"], r["max_window_queue_wait_s"], r["activity_timeouts"],
            r["activity_retries"], r["worker_idle_rss_mib"], r["worker_peak_rss_mib"],
        )))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "load.json"
    out.write_text(json.dumps({"machine": machine, "python": platform.python_version(), "rows": rows}, indent=2))
    print(f"written: {out}")
    failed = [r for r in rows if r["completed"] != r["streams"] or r["activity_timeouts"] or r["activity_retries"]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
