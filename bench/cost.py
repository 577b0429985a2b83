"""Cost of our design against the per-second, per-detector design it replaced, measured.

    python -m bench.cost [--clip real|1080p|all] [--seconds 60] [--window-seconds 10] [--repeat 3]
                         [--warmup-seconds 5] [--no-scale-out] [--scale-out-designs ours,baseline]
                         [--scale-out-seconds 40] [--results DIR] [--replot]

Both designs run in one invocation against the same real servers (a Temporal dev
server and SeaweedFS as S3, started here on free ports), on the same clips, with
the same detectors and the same decoder:

  - ours: the product (StreamMonitorWorkflow, one `analyze_window` activity per 10 s);
  - baseline: bench/baseline (PerSecondWorkflow: per second, `convert_second` PUTs the
    frames and audio to S3, then one `detect_second` activity per detector GETs them).

Each design's worker is its own process, warmed up on a few seconds of the clip
(uncounted), then the designs take turns, --repeat streams each on the same warm
workers; times are the median of the repeats, and whether their counts agree is
recorded (`counts_identical`). Counted, per stream-minute: workflow history events,
activities, Temporal Cloud billable actions (from the histories by the rules in
bench/counting.py, plus heartbeats and queries from the server's own `action`
metric, which is also reported whole as a cross-check), the Step Functions state
transitions of the same shape (from the activities that ran), S3 requests by price
class and bytes (botocore hooks in the worker), worker CPU seconds, wall time and peak
RSS (/proc), and the Temporal and S3 servers' CPU. Each figure is priced with
PRICES below. Then (unless --no-scale-out) how many live-paced streams one worker
sustains in real time (bench/scaleout.py). Prints tables; writes
bench/results/cost.json and bench/results/cost.png.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg

from bench.baseline.contracts import PerSecondRequest
from bench.baseline.workflow import PerSecondWorkflow
from bench.clips import real_clip, synthetic_1080p_clip
from bench.counting import (
    count_history,
    cpu_seconds,
    not_in_history_actions,
    peak_rss_bytes,
    read_server_actions,
    step_functions_transitions,
    summarise_s3,
)
from bench.scaleout import scale_out
from bench.workers import WORKER_ENV, Worker, client_settings
from support.servers import (
    FRAMES_BUCKET,
    RESULTS_BUCKET,
    SOURCE_BUCKET,
    Servers,
    empty_bucket,
    running_servers,
)
from vqa.contracts import MediaInfo, StreamReport, StreamRequest, Track, workflow_id_for
from vqa.runtime import connect
from workflows import StreamMonitorWorkflow

RESULTS = Path(__file__).resolve().parent / "results"
STREAM_MONTH_MINUTES = 30 * 24 * 60  # one stream watched around the clock for 30 days

# Published list prices (USD), the only place they live; update them here.
PRICES: dict[str, tuple[float, str]] = {
    "temporal_cloud_action": (50.0 / 1_000_000, "Temporal Cloud, per Action ($50 per million, first tier)"),
    "step_functions_transition": (0.025 / 1000, "AWS Step Functions Standard, per state transition ($0.025 per 1,000)"),
    "s3_put_class_request": (0.005 / 1000, "Amazon S3 Standard, PUT/COPY/POST/LIST request ($0.005 per 1,000)"),
    "s3_get_class_request": (0.0004 / 1000, "Amazon S3 Standard, GET/SELECT and other requests ($0.0004 per 1,000)"),
    "vcpu_second": (0.04048 / 3600, "AWS Fargate Linux/x86 us-east-1, per vCPU-second of worker CPU ($0.04048 per vCPU-hour)"),
}

# The activity that is one turn of each design's loop, and the one it fans out (Step Functions model).
SHAPES = {
    "ours": {"loop_activity": "analyze_window", "map_activity": None},
    # Two groups: each window is two analyze_window tasks side by side (a Parallel state);
    # counted as a loop turn each, which overstates the transitions a little.
    "ours-groups": {"loop_activity": "analyze_window", "map_activity": None},
    "baseline": {"loop_activity": "convert_second", "map_activity": "detect_second"},
}


# --- clips ----------------------------------------------------------------------------------------

def active_detectors(media: MediaInfo, names: list[str] | None = None) -> dict[str, Track]:
    """The detectors the product runs on this media (as analyze_window decides), with their tracks."""
    import detectors

    present = {"video": media.video is not None, "audio": media.audio is not None}
    present["av"] = present["video"] or present["audio"]
    chosen: dict[str, Track] = {}
    for name in detectors.resolve(names):
        cls = detectors.REGISTRY[name]
        if present[cls.track] and not (cls.needs_both_tracks and not (present["video"] and present["audio"])):
            chosen[name] = cls.track
    return chosen


# --- one design, one run ----------------------------------------------------------------------------

HEAVY_GROUP = ("blockiness", "blur")  # the second group of the "ours-groups" design


def _merged_s3(*snapshots: dict[str, Any]) -> dict[str, Any]:
    """Workers' S3 counter snapshots, added up."""
    requests: dict[str, Counter[str]] = defaultdict(Counter)
    up: Counter[str] = Counter()
    down: Counter[str] = Counter()
    for snapshot in snapshots:
        for category, ops in snapshot.get("requests", {}).items():
            requests[category].update(ops)
        up.update(snapshot.get("bytes_up", {}))
        down.update(snapshot.get("bytes_down", {}))
    return {"requests": {c: dict(ops) for c, ops in requests.items()}, "bytes_up": dict(up), "bytes_down": dict(down)}


def _s3_delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """What a worker's S3 counts grew by between two snapshots."""
    requests = {}
    for category, ops in after.get("requests", {}).items():
        grown = Counter(ops)
        grown.subtract(before.get("requests", {}).get(category, {}))
        if +grown:
            requests[category] = dict(+grown)
    return {
        "requests": requests,
        "bytes_up": dict(+(Counter(after.get("bytes_up", {})) - Counter(before.get("bytes_up", {})))),
        "bytes_down": dict(+(Counter(after.get("bytes_down", {})) - Counter(before.get("bytes_down", {})))),
    }


@dataclass
class DesignWorkers:
    """One design's worker process(es), kept running across that design's streams (as in
    production, where a worker serves stream after stream)."""

    design: str
    concurrency: int
    worker: Worker
    group_worker: Worker | None = None  # "ours-groups": the second detector group's worker
    group: tuple[str, ...] = ()

    @classmethod
    def start(cls, servers: Servers, design: str, *, detectors: dict[str, Track], directory: Path,
              max_concurrent: int | None = None) -> DesignWorkers:
        # Ours: the product's default, a window per CPU; the baseline: a whole Map state at once,
        # as Step Functions would run its detector functions.
        concurrency = max_concurrent or ((os.cpu_count() or 2) if design != "baseline" else len(detectors) + 1)
        worker = Worker(servers, "ours" if design == "ours-groups" else design, max_concurrent=concurrency,
                        directory=directory)
        # "ours-groups": the heavy detectors as a second group, on a second worker process and queue.
        group = tuple(d for d in HEAVY_GROUP if d in detectors) if design == "ours-groups" else ()
        try:
            group_worker = Worker(servers, "ours", max_concurrent=1, directory=directory, group=list(group)) if group else None
        except BaseException:
            worker.stop()
            raise
        return cls(design, concurrency, worker, group_worker, group)

    @property
    def workers(self) -> list[Worker]:
        return [self.worker, *([self.group_worker] if self.group_worker else [])]

    def cpu_s(self) -> float:
        return sum(cpu_seconds(w.pid) for w in self.workers)

    def peak_rss_bytes(self) -> int:
        return sum(peak_rss_bytes(w.pid) for w in self.workers)

    def s3_counts(self) -> dict[str, Any]:
        return _merged_s3(*(w.counts() for w in self.workers))

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def _cpu(servers: Servers, workers: DesignWorkers) -> dict[str, float]:
    return {
        "worker": workers.cpu_s(),
        "temporal_server": cpu_seconds(servers.temporal.pid),
        "s3_server": cpu_seconds(servers.s3.process.pid),
    }


async def _settled_actions(servers: Servers, timeout_s: float = 20.0) -> Counter[str]:
    """The server's action counter once it stops moving (its metrics are flushed every second or so)."""
    last = read_server_actions(servers.metrics_url)
    deadline = time.monotonic() + timeout_s
    stable = 0
    while time.monotonic() < deadline and stable < 2:
        await asyncio.sleep(1.0)
        now = read_server_actions(servers.metrics_url)
        stable = stable + 1 if now == last else 0
        last = now
    return last


async def run_design(
    servers: Servers,
    workers: DesignWorkers,
    *,
    source: str,
    media: MediaInfo,
    detectors: dict[str, Track],
    window_seconds: float = 10.0,
) -> dict[str, Any]:
    """Analyse `source` once with `workers.design` and count everything it cost (`window_seconds`: ours)."""
    design = workers.design
    run_id = uuid.uuid4().hex[:8]
    stream_id = f"cost-{design}-{run_id}"
    client = await connect(client_settings(servers, workers.worker.task_queue))
    actions_before = await _settled_actions(servers)
    s3_before = workers.s3_counts()
    cpu_before = _cpu(servers, workers)
    started = time.perf_counter()
    if design in ("ours", "ours-groups"):
        group_queue = workers.group_worker.task_queue if workers.group_worker else None
        handle = await client.start_workflow(
            StreamMonitorWorkflow.run,
            StreamRequest(stream_id=stream_id, source=source, detectors=list(detectors),
                          window_seconds=window_seconds, results=f"s3://{RESULTS_BUCKET}/{design}",
                          detector_groups={group_queue: list(workers.group)} if group_queue else {}),
            id=workflow_id_for(stream_id), task_queue=workers.worker.task_queue,
        )
    else:
        handle = await client.start_workflow(
            PerSecondWorkflow.run,
            PerSecondRequest(stream_id=stream_id, source=source, detectors=detectors,
                             frames=f"s3://{FRAMES_BUCKET}/{run_id}", results=f"s3://{RESULTS_BUCKET}/{design}"),
            id=f"per-second-{stream_id}", task_queue=workers.worker.task_queue,
        )
    report: StreamReport = await handle.result()
    wall_s = time.perf_counter() - started
    cpu_after = _cpu(servers, workers)
    actions_after = await _settled_actions(servers)
    s3 = summarise_s3(_s3_delta(workers.s3_counts(), s3_before))
    history = await count_history(client, handle.id, handle.first_execution_run_id or handle.result_run_id or "")
    server_delta = actions_after - actions_before
    extra = not_in_history_actions(server_delta)
    if design == "baseline":
        empty_bucket(servers, FRAMES_BUCKET, f"{run_id}/")  # disk space; deletes are free and uncounted
    return {
        "design": design,
        "workflow_id": handle.id,
        "stream_seconds": report.media.duration_s if report.media else media.duration_s,
        "detectors": list(detectors),
        "max_concurrent_activities": workers.concurrency,
        "wall_s": wall_s,
        "cpu_s": {k: cpu_after[k] - cpu_before[k] for k in cpu_after},
        "worker_peak_rss_bytes": workers.peak_rss_bytes(),
        "history": history.as_dict(),
        "heartbeats": extra["heartbeats"],
        "queries": extra["queries"],
        "billable_actions": history.billable_actions + extra["heartbeats"] + extra["queries"],
        "server_action_metric": dict(server_delta),
        "server_action_metric_total": sum(server_delta.values()),
        "step_functions": step_functions_transitions(history, **SHAPES[design]),  # type: ignore[arg-type]
        "s3": s3,
        "report_status": report.status,
        "defects": [(d.kind, d.track, d.start_s, d.end_s) for d in report.defects],
    }


def _counted(run: dict[str, Any]) -> tuple[Any, ...]:
    """What a run counts (as opposed to times): the same in every repeat of a design."""
    return (run["billable_actions"], run["history"]["activities_scheduled"], run["s3"]["operations"],
            run["s3"]["bytes_up"], run["step_functions"], run["defects"])


def combine_repeats(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """One design's repeated runs as one: the counts of the first (whether every repeat counted
    the same is `counts_identical`), the median of each CPU and wall time, the highest peak
    RSS, and every repeat's times under "each_run"."""
    first = repeats[0]
    combined = dict(first)
    combined["counts_identical"] = all(_counted(other) == _counted(first) for other in repeats[1:])
    if not combined["counts_identical"]:  # e.g. a retried S3 request: kept, and said
        print(f"warning: {first['design']}'s repeats counted differently; the first run's counts are shown",
              flush=True)
    combined["cpu_s"] = {k: statistics.median(r["cpu_s"][k] for r in repeats) for k in first["cpu_s"]}
    combined["wall_s"] = statistics.median(r["wall_s"] for r in repeats)
    combined["worker_peak_rss_bytes"] = max(r["worker_peak_rss_bytes"] for r in repeats)
    combined["repeats"] = len(repeats)
    combined["each_run"] = {
        "workflow_id": [r["workflow_id"] for r in repeats],
        "worker_cpu_s": [r["cpu_s"]["worker"] for r in repeats],
        "all_cpu_s": [sum(r["cpu_s"].values()) for r in repeats],
        "wall_s": [r["wall_s"] for r in repeats],
        "history_events": [r["history"]["events"] for r in repeats],
    }
    return combined


async def compare(
    servers: Servers,
    clip: Path,
    *,
    directory: Path,
    detector_names: list[str] | None = None,
    window_seconds: float = 10.0,
    with_groups: bool = False,
    repeat: int = 1,
    warmup: Path | None = None,
) -> dict[str, Any]:
    """Both designs on one clip, uploaded to S3 first; returns both runs and the per-minute figures.

    Each design's worker first analyses `warmup` (a few seconds of the same media), uncounted:
    a worker that runs for months pays its imports and first connections once, not per stream.
    Then the designs take turns, `repeat` streams each, on the same warm workers; CPU and wall
    time are the median of the repeats (`combine_repeats`).
    `with_groups`: ours once more, with blockiness and blur as a second detector group on a
    second worker (what a second group costs)."""
    from activities.decode import probe

    media = probe(str(clip))
    detectors = active_detectors(media, detector_names)
    decode_only = decode_only_cpu_s(clip)
    key = f"{uuid.uuid4().hex[:6]}/{clip.name}"
    servers.admin().upload_file(str(clip), SOURCE_BUCKET, key)
    source = f"s3://{SOURCE_BUCKET}/{key}"
    warmup_source = None
    if warmup is not None:
        warmup_key = f"{uuid.uuid4().hex[:6]}/warmup-{warmup.name}"
        servers.admin().upload_file(str(warmup), SOURCE_BUCKET, warmup_key)
        warmup_source = f"s3://{SOURCE_BUCKET}/{warmup_key}"
    designs = ("ours", "baseline", *(["ours-groups"] if with_groups else []))
    started: dict[str, DesignWorkers] = {}
    repeats: dict[str, list[dict[str, Any]]] = {d: [] for d in designs}
    try:
        for design in designs:
            started[design] = DesignWorkers.start(servers, design, detectors=detectors, directory=directory)
            if warmup_source is not None:
                await run_design(servers, started[design], source=warmup_source, media=probe(str(warmup)),
                                 detectors=detectors, window_seconds=window_seconds)
        for _ in range(repeat):
            for design in designs:
                repeats[design].append(await run_design(
                    servers, started[design], source=source, media=media, detectors=detectors,
                    window_seconds=window_seconds,
                ))
    finally:
        for workers in started.values():
            workers.stop()
    runs = {design: combine_repeats(found) | {"decode_only_cpu_s": decode_only} for design, found in repeats.items()}
    return {
        "clip": clip.name,
        "media": media.model_dump(),
        "detectors": detectors,
        "window_seconds": window_seconds,
        "repeat": repeat,
        "warmup": warmup.name if warmup is not None else None,
        "runs": runs,
        "lines": lines(runs),
        **({"group_cost": group_cost(runs)} if with_groups else {}),
    }


def decode_only_cpu_s(clip: Path) -> float:
    """CPU seconds FFmpeg spends decoding the whole clip and nothing else, with one thread:
    what either design must spend at least, since both decode every frame once."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-threads", "1",
                    "-i", str(clip), "-f", "null", "-"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def group_cost(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per stream-minute, ours with one group and with a second (blockiness, blur) on its own worker."""
    one, two = _line_values(runs["ours"]), _line_values(runs["ours-groups"])
    keys = ("activities", "billable_actions", "s3_get_class", "worker_cpu_s", "usd_month_total_temporal")
    return {k: {"one_group": one[k], "two_groups": two[k]} for k in keys}


def group_table(result: dict[str, Any]) -> str:
    out = ["| per stream-minute | one group | + blockiness,blur as a second group | added |", "|---|---:|---:|---:|"]
    for key, line in result["group_cost"].items():
        added = line["two_groups"] - line["one_group"]
        out.append(f"| {LINE_LABELS[key]} | {_fmt(line['one_group'])} | {_fmt(line['two_groups'])} | {_fmt(added)} |")
    return "\n".join(out)


# --- figures ---------------------------------------------------------------------------------------

def _per_minute(run: dict[str, Any], value: float) -> float:
    return value * 60.0 / float(run["stream_seconds"])


def _s3_category(run: dict[str, Any], category: str) -> int:
    return sum(run["s3"]["by_category"].get(category, {}).get(c, 0) for c in ("put", "get"))


# (key, label, unit, value of a run per stream-minute). Money is per stream-month.
def _line_values(run: dict[str, Any]) -> dict[str, float]:
    m = lambda v: _per_minute(run, v)  # noqa: E731
    price = {k: p for k, (p, _) in PRICES.items()}
    actions = m(run["billable_actions"])
    transitions = m(run["step_functions"]["total"])
    s3_cost = m(run["s3"]["put_class"]) * price["s3_put_class_request"] + m(run["s3"]["get_class"]) * price["s3_get_class_request"]
    compute = m(run["cpu_s"]["worker"]) * price["vcpu_second"]
    month = STREAM_MONTH_MINUTES
    return {
        "history_events": m(run["history"]["events"]),
        "activities": m(sum(run["history"]["activities_scheduled"].values())),
        "billable_actions": actions,
        "heartbeats": m(run["heartbeats"]),
        "server_action_metric": m(run["server_action_metric_total"]),
        "step_functions_transitions": transitions,
        "s3_put_class": m(run["s3"]["put_class"]),
        "s3_get_class": m(run["s3"]["get_class"]),
        "s3_intermediate_requests": m(_s3_category(run, "intermediate")),
        "s3_source_requests": m(_s3_category(run, "source")),
        "s3_mb_moved": m(run["s3"]["bytes_up"] + run["s3"]["bytes_down"]) / 1e6,
        "worker_cpu_s": m(run["cpu_s"]["worker"]),
        "decode_only_cpu_s": m(run.get("decode_only_cpu_s", 0.0)),
        "worker_cpu_beyond_decode_s": m(run["cpu_s"]["worker"] - run.get("decode_only_cpu_s", 0.0)),
        "all_cpu_s": m(sum(run["cpu_s"].values())),
        "wall_s": m(run["wall_s"]),
        "worker_peak_rss_mb": run["worker_peak_rss_bytes"] / 1e6,
        "temporal_server_cpu_s": m(run["cpu_s"]["temporal_server"]),
        "s3_server_cpu_s": m(run["cpu_s"]["s3_server"]),
        "usd_month_temporal_actions": actions * price["temporal_cloud_action"] * month,
        "usd_month_step_functions": transitions * price["step_functions_transition"] * month,
        "usd_month_s3_requests": s3_cost * month,
        "usd_month_compute": compute * month,
        "usd_month_total_temporal": (actions * price["temporal_cloud_action"] + s3_cost + compute) * month,
        "usd_month_total_step_functions": (transitions * price["step_functions_transition"] + s3_cost + compute) * month,
    }


LINE_LABELS: dict[str, str] = {
    "history_events": "workflow history events",
    "activities": "activities scheduled",
    "billable_actions": "Temporal Cloud billable actions",
    "heartbeats": "  of which heartbeats (server-counted)",
    "server_action_metric": "  server's `action` metric (cross-check)",
    "step_functions_transitions": "Step Functions transitions, same shape",
    "s3_put_class": "S3 PUT-class requests",
    "s3_get_class": "S3 GET-class requests",
    "s3_intermediate_requests": "  of which intermediate objects",
    "s3_source_requests": "  of which source reads",
    "s3_mb_moved": "S3 MB moved (up + down)",
    "worker_cpu_s": "worker CPU s",
    "decode_only_cpu_s": "  FFmpeg decoding the clip alone, 1 thread (the floor of both)",
    "worker_cpu_beyond_decode_s": "  worker CPU s beyond decoding",
    "all_cpu_s": "CPU s, worker + Temporal + S3 servers",
    "wall_s": "wall s",
    "worker_peak_rss_mb": "worker peak RSS MB (not per minute)",
    "temporal_server_cpu_s": "Temporal server CPU s",
    "s3_server_cpu_s": "S3 server (SeaweedFS) CPU s",
    "usd_month_temporal_actions": "$/stream-month: Temporal Cloud actions",
    "usd_month_step_functions": "$/stream-month: Step Functions transitions",
    "usd_month_s3_requests": "$/stream-month: S3 requests",
    "usd_month_compute": "$/stream-month: worker compute (Fargate vCPU)",
    "usd_month_total_temporal": "$/stream-month: total on Temporal Cloud",
    "usd_month_total_step_functions": "$/stream-month: total on Step Functions",
}


def lines(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    ours, baseline = _line_values(runs["ours"]), _line_values(runs["baseline"])
    return {
        key: {"ours": ours[key], "baseline": baseline[key],
              "ratio": ours[key] / baseline[key] if baseline[key] else None}
        for key in LINE_LABELS
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(result: dict[str, Any]) -> str:
    """A Markdown table of one clip's lines (per stream-minute unless the label says otherwise)."""
    out = ["| per stream-minute | ours | per-second baseline | ours / baseline |", "|---|---:|---:|---:|"]
    for key, label in LINE_LABELS.items():
        line = result["lines"][key]
        ratio = line["ratio"]
        out.append(f"| {label} | {_fmt(line['ours'])} | {_fmt(line['baseline'])} | "
                   f"{'–' if ratio is None else f'{ratio:.3g}'} |")
    return "\n".join(out)


def targets(result: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets: >= 99 % fewer billable orchestration operations, zero intermediate
    S3 requests, >= 10x less worker CPU per stream-minute."""
    lines_ = result["lines"]
    return {
        "actions_99pct_fewer": lines_["billable_actions"]["ours"] <= 0.01 * lines_["billable_actions"]["baseline"],
        "transitions_99pct_fewer": lines_["step_functions_transitions"]["ours"] <= 0.01 * lines_["step_functions_transitions"]["baseline"],
        "zero_intermediate_s3": lines_["s3_intermediate_requests"]["ours"] == 0,
        "cpu_10x_less": lines_["worker_cpu_s"]["ours"] * 10 <= lines_["worker_cpu_s"]["baseline"],
        "cpu_10x_less_all_processes": lines_["all_cpu_s"]["ours"] * 10 <= lines_["all_cpu_s"]["baseline"],
    }


CHART_LINES = [
    "history_events", "activities", "billable_actions", "step_functions_transitions", "s3_put_class",
    "s3_get_class", "s3_intermediate_requests", "s3_mb_moved", "worker_cpu_s", "temporal_server_cpu_s",
    "s3_server_cpu_s", "usd_month_total_temporal",
]


def chart(results: list[dict[str, Any]], path: Path, *, title: str) -> None:
    """Horizontal bars, log scale: ours against the baseline per line, one panel per clip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(7.5 * len(results), 7), squeeze=False)
    for ax, result in zip(axes[0], results):
        labels = [LINE_LABELS[k].strip() for k in CHART_LINES]
        ys = list(range(len(CHART_LINES)))[::-1]
        values = {d: [result["lines"][k][d] for k in CHART_LINES] for d in ("ours", "baseline")}
        floor = min(v for d in values.values() for v in d if v) / 10
        for offset, design, color in ((0.2, "baseline", "#c0504d"), (-0.2, "ours", "#4f81bd")):
            bars = [max(v, floor) for v in values[design]]
            ax.barh([y + offset for y in ys], bars, height=0.38, color=color,
                    label="per-second baseline" if design == "baseline" else "ours (one activity per window)")
            for y, v in zip(ys, values[design]):
                ax.text(max(v, floor) * 1.15, y + offset, _fmt(v), va="center", fontsize=7)
        ax.set_xscale("log")
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_xlim(floor, max(v for d in values.values() for v in d) * 30)
        ax.set_title(f"{result['label']}\nper stream-minute ($: per stream-month)", fontsize=9)
        ax.grid(axis="x", which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=2, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _chart(results: list[dict[str, Any]], path: Path, *, seconds: float, info: dict[str, Any]) -> None:
    chart(results, path, title=f"VQA vs the per-second design, {seconds:g} s of stream each, measured on "
                               f"{info['cpus']} CPUs ({info['cpu_model']})")


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", choices=["real", "1080p", "all"], default="all")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of stream per design and clip")
    parser.add_argument("--window-seconds", type=float, default=10.0, help="our window length (the product's default)")
    parser.add_argument("--no-scale-out", action="store_true", help="skip the live scale-out search")
    parser.add_argument("--no-groups", action="store_true", help="skip ours with a second detector group")
    parser.add_argument("--scale-out-designs", default="ours,baseline")
    parser.add_argument("--scale-out-seconds", type=float, default=40.0, help="length of each live stream")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--repeat", type=int, default=3,
                        help="streams per design and clip, the designs taking turns; CPU and wall time: the median")
    parser.add_argument("--warmup-seconds", type=float, default=5.0,
                        help="each design's worker first analyses this much of the clip, uncounted (0: none)")
    parser.add_argument("--decode-threads", type=int, default=1,
                        help="decoder threads per activity in both designs' workers (0: the product's adaptive default)")
    parser.add_argument("--replot", action="store_true",
                        help="no run: recompute the lines (at today's PRICES), tables and cost.png from cost.json's counts")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads((args.results / "cost.json").read_text())
        saved["prices_usd"] = {k: {"price": p, "what": what} for k, (p, what) in PRICES.items()}
        for result in saved["clips"]:
            result["lines"] = lines(result["runs"])
            result["targets"] = targets(result)
            if "ours-groups" in result["runs"]:
                result["group_cost"] = group_cost(result["runs"])
            print(f"\n== {result['label']}\n{table(result)}\ntargets: {result['targets']}")
        (args.results / "cost.json").write_text(json.dumps(saved, indent=2, default=str))
        _chart(saved["clips"], args.results / "cost.png", seconds=saved["stream_seconds"], info=saved["machine"])
        return
    WORKER_ENV["VQA_DECODE_THREADS"] = str(args.decode_threads)
    makers = {"real": real_clip, "1080p": synthetic_1080p_clip}
    chosen = list(makers) if args.clip == "all" else [args.clip]
    clips = [makers[name](args.seconds) for name in chosen]
    warmups = {clip.key: makers[clip.key](args.warmup_seconds).path if args.warmup_seconds > 0 else None
               for clip in clips}
    info = machine()
    started = dt.datetime.now(dt.timezone.utc)
    print(f"machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gib']} GiB, {info['platform']}", flush=True)
    results: list[dict[str, Any]] = []
    scale: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vqa-bench-cost-") as tmp, running_servers(Path(tmp) / "servers") as servers:
        for clip in clips:
            print(f"\n== {clip.label}: {clip.path.name}, both designs ...", flush=True)
            result = asyncio.run(compare(servers, clip.path, directory=Path(tmp), window_seconds=args.window_seconds,
                                         with_groups=not args.no_groups, repeat=args.repeat,
                                         warmup=warmups[clip.key]))
            result |= {"key": clip.key, "label": clip.label, "targets": targets(result)}
            results.append(result)
            print(table(result), flush=True)
            if "group_cost" in result:
                print(group_table(result), flush=True)
            print("targets:", result["targets"], flush=True)
        if not args.no_scale_out:
            for clip, result in zip(clips, results):
                for design in [d.strip() for d in args.scale_out_designs.split(",") if d.strip()]:
                    found = scale_out(servers, clip, design, result, directory=Path(tmp),
                                      stream_seconds=args.scale_out_seconds)
                    scale.append(found)
                    print(f"scale-out {clip.key} {design}: {found['sustained_streams']} streams sustained "
                          f"in real time (first failing: {found['first_failing']})", flush=True)
    out = {
        "date": started.isoformat(timespec="seconds"),
        "machine": info | {"load_average_at_end": os.getloadavg()},
        "prices_usd": {k: {"price": p, "what": what} for k, (p, what) in PRICES.items()},
        "stream_seconds": args.seconds,
        "worker_env": dict(WORKER_ENV),
        "clips": results,
        "scale_out": scale,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "cost.json").write_text(json.dumps(out, indent=2, default=str))
    _chart(results, args.results / "cost.png", seconds=args.seconds, info=info)
    print(f"\nwritten: {args.results / 'cost.json'}, {args.results / 'cost.png'}")
    if scale:
        print("\n| clip | design | streams sustained in real time | first failing | max lag at the sustained count (s) |")
        print("|---|---|---:|---:|---:|")
        for s in scale:
            print(f"| {s['clip']} | {s['design']} | {s['sustained_streams']} | {s['first_failing']} | "
                  f"{_fmt(s.get('max_lag_s_at_sustained'))} |")


if __name__ == "__main__":
    main()
