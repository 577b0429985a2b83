"""How many live streams one worker keeps up with, in real time, on this machine.

A trial runs k streams at once on one worker process: each stream is a live HLS
playlist (support/hls.py's LivePlaylist, served over HTTP from this process) that
publishes one 1-second segment per second, the streams' starts spread over 10 s.
Both designs read the live playlist the same way (the product's HLS reader: a
window, or a second, waits until its segments are published). The lag of a
window (a second, for the per-second design) is the time from the publication
of the last segment it needs to the completion of its analysis, read from the
workflow histories. k is sustained when every stream completes and no lag
exceeds LAG_LIMIT_S; the search grows k by half until a trial fails, then
narrows the gap.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench.baseline.contracts import PerSecondRequest
from bench.baseline.workflow import PerSecondWorkflow
from bench.clips import BenchClip
from bench.counting import count_history, cpu_seconds
from bench.workers import Worker, client_settings
from support import hls
from support.servers import FRAMES_BUCKET, RESULTS_BUCKET, Servers, empty_bucket
from vqa.contracts import StreamRequest, workflow_id_for
from vqa.runtime import connect
from workflows import StreamMonitorWorkflow

LAG_LIMIT_S = 5.0  # a window done within this of its media's arrival keeps up
START_SPREAD_S = 10.0  # the streams' starts are spread over one of our windows
MAX_STREAMS = 256


def _lags(history: Any, design: str, arrival: list[float]) -> list[float]:
    """Per window (ours) or per second (baseline): completion minus arrival of its last segment."""
    done: dict[float, float] = {}
    wanted = "analyze_window" if design == "ours" else "detect_second"
    for a in history.activities:
        if a.activity_type != wanted or a.completed_at is None or not isinstance(a.input, dict):
            continue
        end = round(float(a.input["end_s"]), 3)
        done[end] = max(done.get(end, 0.0), a.completed_at)
    lags = []
    for end, completed in sorted(done.items()):
        last_segment = min(len(arrival) - 1, max(0, math.ceil(end - 1e-6) - 1))
        lags.append(completed - arrival[last_segment])
    return lags


async def _trial_streams(
    servers: Servers, design: str, worker: Worker, *, k: int, root: Path, url: str,
    segments: list[tuple[str, float]], detectors: dict[str, str], tag: str,
) -> dict[str, Any]:
    client = await connect(client_settings(servers, worker.task_queue))
    wall_offset = time.time() - time.monotonic()  # LivePlaylist records monotonic times
    playlists: list[hls.LivePlaylist] = []
    handles = []
    try:
        for i in range(k):
            directory = root / tag / f"s{i}"
            directory.mkdir(parents=True)
            playlist = hls.LivePlaylist(directory, [(f"../../segments/{n}", d) for n, d in segments], initial=1)
            playlists.append(playlist.start())
            source = f"{url}/{tag}/s{i}/live.m3u8"
            stream_id = f"live-{tag}-{i}"
            if design == "ours":
                handles.append(await client.start_workflow(
                    StreamMonitorWorkflow.run,
                    StreamRequest(stream_id=stream_id, source=source, detectors=list(detectors),
                                  results=f"s3://{RESULTS_BUCKET}/live"),
                    id=workflow_id_for(stream_id), task_queue=worker.task_queue,
                ))
            else:
                handles.append(await client.start_workflow(
                    PerSecondWorkflow.run,
                    PerSecondRequest(stream_id=stream_id, source=source, detectors=detectors,  # type: ignore[arg-type]
                                     frames=f"s3://{FRAMES_BUCKET}/{tag}", results=f"s3://{RESULTS_BUCKET}/live"),
                    id=f"per-second-{stream_id}", task_queue=worker.task_queue,
                ))
            await asyncio.sleep(START_SPREAD_S / k)
        budget = sum(d for _, d in segments) + 120.0
        reports = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles), return_exceptions=True), budget)
    finally:
        for playlist in playlists:
            playlist.stop()
    completed = sum(1 for r in reports if not isinstance(r, BaseException) and r.status == "completed")
    problems = sorted({repr(r)[:300] if isinstance(r, BaseException) else f"{r.status}: {r.error}"
                       for r in reports if isinstance(r, BaseException) or r.status != "completed"})
    lags: list[float] = []
    per_stream_max: list[float] = []
    for handle, playlist in zip(handles, playlists):
        history = await count_history(client, handle.id, handle.first_execution_run_id or "")
        arrival = [t + wall_offset for t in playlist.published_at]
        stream_lags = _lags(history, design, arrival)
        lags.extend(stream_lags)
        per_stream_max.append(max(stream_lags, default=math.inf))
    return {"completed": completed, "lags": lags, "per_stream_max_lag": per_stream_max, "problems": problems}


def _trial(
    servers: Servers, clip: BenchClip, design: str, k: int, *, directory: Path, url: str,
    segments: list[tuple[str, float]], detectors: dict[str, str],
) -> dict[str, Any]:
    tag = f"{design}-{k}-{uuid.uuid4().hex[:6]}"
    # Every stream always has a window (or a second and its detectors) waiting for media: give them slots.
    slots = k + 2 if design == "ours" else k * (len(detectors) + 1) + 2
    worker = Worker(servers, design, max_concurrent=slots, directory=directory)
    cpu_before = cpu_seconds(worker.pid)
    started = time.perf_counter()
    try:
        found = asyncio.run(_trial_streams(
            servers, design, worker, k=k, root=directory / f"hls-{clip.key}", url=url, segments=segments,
            detectors=detectors, tag=tag,
        ))
        cpu = cpu_seconds(worker.pid) - cpu_before
    except asyncio.TimeoutError:
        found, cpu = {"completed": 0, "lags": [], "per_stream_max_lag": [], "problems": ["timed out"]}, math.nan
    finally:
        worker.stop()
        if design == "baseline":
            empty_bucket(servers, FRAMES_BUCKET, f"{tag}/")
    lags = found["lags"]
    max_lag = max(lags, default=math.inf)
    sustained = found["completed"] == k and max_lag <= LAG_LIMIT_S
    result = {
        "streams": k,
        "sustained": sustained,
        "completed": found["completed"],
        "max_lag_s": max_lag,
        "median_lag_s": statistics.median(lags) if lags else None,
        "worker_cpu_s": cpu,
        "wall_s": time.perf_counter() - started,
        "load_average_after": os.getloadavg(),  # other work on the machine shows here
        "problems": found["problems"][:5],
    }
    print(f"  {clip.key} {design}: {k} live streams -> {'sustained' if sustained else 'NOT sustained'} "
          f"(max lag {max_lag:.2f} s, {found['completed']}/{k} completed)"
          + (f"; {found['problems'][0]}" if found["problems"] else ""), flush=True)
    return result


def scale_out(
    servers: Servers,
    clip: BenchClip,
    design: str,
    cost_result: dict[str, Any],
    *,
    directory: Path,
    stream_seconds: float = 40.0,
    max_trials: int = 7,
) -> dict[str, Any]:
    """The largest number of concurrent live streams `design` sustains on one worker."""
    segment_dir = directory / f"hls-{clip.key}" / "segments"
    if (segment_dir / "vod.m3u8").exists():
        segments = _segments(segment_dir)
    else:
        segments = hls.segment(clip.path, segment_dir, segment_s=1.0)
    segments = segments[: max(1, int(stream_seconds))]
    server = hls.StaticServer(directory / f"hls-{clip.key}")
    detectors = cost_result["detectors"]
    run = cost_result["runs"][design]
    cpu_per_stream_s = run["cpu_s"]["worker"] / run["stream_seconds"]
    cores = len(os.sched_getaffinity(0))
    estimate = max(1, min(MAX_STREAMS, int(cores * 0.5 / max(cpu_per_stream_s, 1e-6))))
    trials: list[dict[str, Any]] = []
    passed, failed = 0, None
    try:
        k = estimate
        while len(trials) < max_trials:
            t = _trial(servers, clip, design, k, directory=directory, url=server.url, segments=segments,
                       detectors=detectors)
            trials.append(t)
            if t["sustained"]:
                passed = max(passed, k)
            else:
                failed = k if failed is None else min(failed, k)
            if failed is None:
                if k >= MAX_STREAMS:
                    break
                k = min(MAX_STREAMS, max(k + 1, int(k * 1.5)))
            elif passed == 0 and failed > 1:
                k = max(1, failed // 2)
            elif failed - passed <= max(1, passed // 8):
                break
            else:
                k = (passed + failed) // 2
    finally:
        server.close()
    at = next((t for t in trials if t["streams"] == passed), None)
    return {
        "clip": clip.key,
        "label": clip.label,
        "design": design,
        "stream_seconds": len(segments),
        "lag_limit_s": LAG_LIMIT_S,
        "estimate_from_cpu": estimate,
        "sustained_streams": passed,
        "first_failing": failed,
        "max_lag_s_at_sustained": at["max_lag_s"] if at else None,
        "trials": trials,
    }


def _segments(directory: Path) -> list[tuple[str, float]]:
    text = (directory / "vod.m3u8").read_text()
    return [(name, float(d)) for d, name in re.findall(r"#EXTINF:([\d.]+),\s*\n(\S+)", text)]
