"""What a channel costs: Temporal actions and worker CPU per channel-hour of a live HLS ladder.

    python -m bench.channel [--seconds 120] [--window-seconds 10] [--out bench/results/channel.json]

The ladder: FFmpeg's HLS muxer over real footage (bikes.mp4, 640x272, looped) and a real voice
(lena.wav) in two languages: four video renditions (272p, 204p, 136p, 96p) and two audio
renditions (en, es), 2 s segments, published live in real time on 127.0.0.1 (support/ladder.py).
A Temporal dev server (with its metrics: heartbeats and queries are billed but never in a
history) and one `python worker.py` process, as users run them. Three runs on the same ladder:

- `all`: the channel, every rendition decoded;
- `lowest-highest`: the channel with `--renditions lowest,highest`;
- `single`: the 272p rendition's media playlist as one stream (what each rendition should cost).

For each: the billable actions in every workflow's history (the channel's and its children's),
plus the server's own count of heartbeats, and the worker's CPU. Actions a stream takes once
(its start, a child's start, the probes, the report) are counted apart; the others recur and are
scaled to an hour by the run's length, as is the CPU. Writes the JSON and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.counting import count_history, cpu_seconds, not_in_history_actions, read_server_actions
from support import hls, realmedia
from support.ladder import LadderSpec, live_ladder, make_ladder
from support.servers import Servers, running_servers
from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from vqa.runtime import Settings, connect
from workflows import StreamMonitorWorkflow

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# What a stream or channel costs once, whatever its length: its start, a child's start, the
# probes and the report. Everything else in a history recurs as the stream goes on.
FIXED_ACTIVITIES = ("probe_source", "probe_channel", "write_report")
RUNS: dict[str, tuple[str, list[str]]] = {  # name -> (playlist, --renditions)
    "all": ("live-master.m3u8", []),
    "lowest-highest": ("live-master.m3u8", ["lowest", "highest"]),
    "single": ("272p/live.m3u8", []),
}


def _worker(servers: Servers, queue: str, log: Path) -> subprocess.Popen[bytes]:
    # a live window waits for its media in its activity: a slot per rendition and one for the watch
    env = {**servers.worker_env(os.environ), "VQA_TASK_QUEUE": queue, "VQA_MAX_CONCURRENT_WINDOWS": "8"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "worker.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _run(servers: Servers, queue: str, source: str, renditions: list[str], window_s: float,
               publishers: list[hls.LivePlaylist]) -> tuple[StreamReport, dict[str, Any]]:
    client = await connect(Settings(address=servers.temporal_address, task_queue=queue))
    request = StreamRequest(stream_id=f"bench-{uuid.uuid4().hex[:8]}", source=source, window_seconds=window_s,
                            renditions=renditions)
    handle = await client.start_workflow(StreamMonitorWorkflow.run, request, id=workflow_id_for(request.stream_id),
                                         task_queue=queue, result_type=StreamReport)
    for publisher in publishers:
        publisher.start()
    report = await handle.result()
    histories = {"channel" if report.renditions else "stream": await count_history(client, handle.id, handle.result_run_id or "")}
    for r in report.renditions:
        if r.report is not None:
            child = client.get_workflow_handle(workflow_id_for(r.report.stream_id))
            info = (await child.describe()).raw_description.workflow_execution_info
            histories[r.name] = await count_history(client, child.id, info.first_run_id or info.execution.run_id)
    return report, {name: h.billable_actions for name, h in histories.items()} | {
        "_activities": {name: dict(h.as_dict()["activities_scheduled"]) for name, h in histories.items()},
        "_fixed": sum(_fixed(h) for h in histories.values()),
        "_channel_fixed": _fixed(histories["channel"]) if "channel" in histories else 0,
    }


def _fixed(history: Any) -> int:
    """The actions a history holds once, whatever the stream's length (see FIXED_ACTIVITIES)."""
    once = history.actions["workflow_execution_started"] + history.actions["start_child_workflow_execution_initiated"]
    return once + sum(1 for a in history.activities if a.activity_type in FIXED_ACTIVITIES)


def run_one(servers: Servers, ladder: Path, name: str, seconds: float, window_s: float, work: Path) -> dict[str, Any]:
    """One run on a fresh copy of the ladder published live; its actions, heartbeats and CPU."""
    playlist, renditions = RUNS[name]
    copy = work / name
    shutil.copytree(ladder, copy)
    _, publishers = live_ladder(copy)
    origin = hls.StaticServer(copy)
    queue = f"bench-channel-{uuid.uuid4().hex[:6]}"
    worker = _worker(servers, queue, work / f"worker-{name}.log")
    try:
        time.sleep(3)  # the worker connects
        cpu_before, server_before = cpu_seconds(worker.pid), read_server_actions(servers.metrics_url)
        started = time.monotonic()
        report, actions = asyncio.run(_run(servers, queue, f"{origin.url}/{playlist}", renditions, window_s, publishers))
        wall = time.monotonic() - started
        time.sleep(3)  # the server's metrics flush
        server_delta = read_server_actions(servers.metrics_url) - server_before
        cpu = cpu_seconds(worker.pid) - cpu_before
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        for publisher in publishers:
            publisher.stop()
        origin.close()
    extra = not_in_history_actions(server_delta)
    decoded = [r.name for r in report.renditions if r.report is not None] or ["(one stream)"]
    total = sum(v for k, v in actions.items() if not k.startswith("_")) + extra["heartbeats"]
    per_hour = 3600.0 / seconds
    recurring, channel_recurring = total - actions["_fixed"], actions.get("channel", 0) - actions["_channel_fixed"]
    return {
        "run": name, "status": report.status, "decoded": decoded, "wall_s": round(wall, 1), "media_s": seconds,
        "actions_in_histories": {k: v for k, v in actions.items() if not k.startswith("_")},
        "activities": actions["_activities"], "heartbeats": extra["heartbeats"],
        "actions": total, "actions_once": actions["_fixed"], "actions_per_hour": round(recurring * per_hour),
        "channel_own_actions_once": actions["_channel_fixed"],
        "channel_own_actions_per_hour": round(channel_recurring * per_hour),
        "actions_per_rendition_hour": round((recurring - channel_recurring) * per_hour / len(decoded)),
        "worker_cpu_s": round(cpu, 2), "worker_cpu_s_per_hour": round(cpu * per_hour),
        "defects": [(d.kind, d.details.get("scope"), d.details.get("renditions")) for d in report.defects],
    }


def table(result: dict[str, Any]) -> str:
    lines = ["| run | renditions decoded | actions once | actions / hour | the channel's own / hour | "
             "per rendition-hour | worker CPU s / hour |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| {r['run']} | {len(r['decoded'])} | {r['actions_once']} | {r['actions_per_hour']} | "
                     f"{r['channel_own_actions_per_hour']} | {r['actions_per_rendition_hour']} | {r['worker_cpu_s_per_hour']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the live ladder (default 120)")
    parser.add_argument("--window-seconds", type=float, default=10.0)
    parser.add_argument("--runs", default=",".join(RUNS), help="which runs (default all of them): " + ",".join(RUNS))
    parser.add_argument("--out", type=Path, default=RESULTS / "channel.json")
    args = parser.parse_args(argv)
    names = [n for n in RUNS if n in args.runs.split(",")]
    cache = realmedia.cache_dir(os.environ)
    with tempfile.TemporaryDirectory(prefix="vqa-bench-channel-") as tmp:
        work = Path(tmp)
        spec = LadderSpec(duration_s=args.seconds, black_everywhere=(4.0, 7.0), silence_in={"es": (9.0, 12.0)})
        ladder = work / "ladder"
        make_ladder(realmedia.fetch("bikes.mp4", cache), realmedia.fetch("lena.wav", cache), ladder, spec)
        with running_servers(work / "servers") as servers:
            runs = [run_one(servers, ladder, name, args.seconds, args.window_seconds, work) for name in names]
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"), "seconds": args.seconds, "window_seconds": args.window_seconds, "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
