"""One design's worker, in its own process, for `python -m bench.cost` to measure.

    python -m bench.cost_worker --design ours|baseline --task-queue Q --stats FILE [--max-concurrent N] [--detectors a,b]

`ours` is the product's worker (`cli.worker.build_worker`: StreamMonitorWorkflow and
the window activities); `baseline` runs PerSecondWorkflow with the product's probe and
report activities plus `convert_second` and `detect_second`. Every S3 request its boto3
clients send is counted (bench/counting.py); FILE gets the counts when the worker stops
(SIGTERM), FILE.snapshot the counts so far on SIGUSR1, and FILE.ready appears once it
polls. Settings come from the environment, as for `worker.py`; VQA_BENCH_S3_CATEGORIES
(JSON: bucket -> category) names the buckets.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as worker.py

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.counting import S3RequestCounter  # noqa: E402

_COUNTER = S3RequestCounter(json.loads(os.environ.get("VQA_BENCH_S3_CATEGORIES", "{}")))
_COUNTER.install()  # before any S3 client exists

from temporalio.worker import Worker  # noqa: E402

from cli.worker import build_worker  # noqa: E402
from vqa.runtime import Settings, connect  # noqa: E402


def _baseline_worker(client, *, task_queue: str, max_concurrent: int) -> Worker:  # type: ignore[no-untyped-def]
    from activities import StreamActivities
    from bench.baseline.activities import BASELINE_ACTIVITIES
    from bench.baseline.workflow import PerSecondWorkflow

    acts = StreamActivities(Settings.from_env())
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[PerSecondWorkflow],
        activities=[acts.probe_source, acts.write_report, *BASELINE_ACTIVITIES],
        activity_executor=ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="per-second"),
        max_concurrent_activities=max_concurrent,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )


async def _run(args: argparse.Namespace) -> None:
    client = await connect(Settings.from_env())
    if args.design == "ours":
        detectors = [d for d in (args.detectors or "").split(",") if d] or None
        worker = build_worker(
            client, task_queue=args.task_queue, max_concurrent_windows=args.max_concurrent, detectors=detectors
        )
    else:
        worker = _baseline_worker(client, task_queue=args.task_queue, max_concurrent=args.max_concurrent)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # SIGUSR1: the counts so far, to FILE.snapshot (a warm worker runs several streams in a row).
    loop.add_signal_handler(signal.SIGUSR1, _write_counts, args.stats + ".snapshot")
    async with worker:
        Path(args.stats + ".ready").write_text(str(os.getpid()))
        await stop.wait()
    _write_counts(args.stats)


def _write_counts(path: str) -> None:
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps({"s3": _COUNTER.snapshot()}))
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", choices=["ours", "baseline"], required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--max-concurrent", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--detectors", help="ours only: serve this detector group (worker.py --detectors)")
    args = parser.parse_args()
    asyncio.run(_run(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as worker.py: avoid the temporalio interpreter-exit abort


if __name__ == "__main__":
    main()
