"""Run a VQA worker: polls the task queue, runs stream workflows and window activities.

Connects to TEMPORAL_ADDRESS (default localhost:7233), namespace TEMPORAL_NAMESPACE
(default `default`), task queue VQA_TASK_QUEUE (default `vqa`). With --metrics-port
(env VQA_METRICS_PORT; off by default) it serves Prometheus metrics on that port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import NoReturn

from temporalio.client import Client
from temporalio.worker import Worker

from activities import StreamActivities
from vqa.runtime import connect, prometheus_runtime
from vqa.settings import Settings, SettingsError
from workflows import StreamMonitorWorkflow

from .common import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, err, exit_now
from .request import detector_names


def build_worker(
    client: Client,
    *,
    task_queue: str,
    max_concurrent_windows: int,
    detectors: list[str] | None = None,
    settings: Settings | None = None,
) -> Worker:
    """A worker that runs stream workflows and window activities on `task_queue`.

    Window activities are synchronous (decode and numpy), so they run in a thread
    pool; its size bounds how many windows decode at once on this worker. With
    `detectors`, it serves only that detector group's window activities (streams
    route the group to `task_queue` with `detector_groups`), and no workflows.
    `settings` None: `Settings()` from this process's environment, read now.
    """
    activities = StreamActivities(settings if settings is not None else Settings(), only_detectors=detectors or None)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[] if detectors else [StreamMonitorWorkflow],
        activities=activities.registered(),
        activity_executor=ThreadPoolExecutor(max_workers=max_concurrent_windows, thread_name_prefix="vqa-window"),
        max_concurrent_activities=max_concurrent_windows,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )


def _parser(settings: Settings) -> argparse.ArgumentParser:
    """`worker.py`'s options; their defaults are the settings' (the environment's)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-queue", default=settings.task_queue, help="task queue to poll (env VQA_TASK_QUEUE)")
    parser.add_argument(
        "--max-concurrent-windows", type=int, default=settings.max_concurrent_windows,
        help="windows decoded at once on this worker (env VQA_MAX_CONCURRENT_WINDOWS; default: CPU count)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=settings.metrics_port,
        help="serve Prometheus metrics at http://0.0.0.0:PORT/metrics (env VQA_METRICS_PORT; default: off)",
    )
    parser.add_argument(
        "--detectors", default=(settings.worker_detectors or "").strip() or None,
        help="serve only this detector group (comma-separated names) on --task-queue: window activities "
        "of streams started with --group QUEUE=NAMES, no workflows (env VQA_WORKER_DETECTORS; default: all)",
    )
    return parser


def parse_args(argv: Sequence[str] | None, settings: Settings) -> argparse.Namespace:
    parser = _parser(settings)
    args = parser.parse_args(argv)
    if args.detectors is not None:
        try:
            args.detectors = detector_names(args.detectors)
        except ValueError as exc:
            parser.error(str(exc))
    if args.max_concurrent_windows < 1:
        parser.error("--max-concurrent-windows must be at least 1")
    if args.metrics_port is not None and not 0 < args.metrics_port < 65536:
        parser.error("--metrics-port must be a TCP port (1-65535)")
    return args


async def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Poll until SIGINT or SIGTERM, then finish the windows in progress."""
    runtime = None
    if args.metrics_port is not None:
        try:
            runtime = prometheus_runtime(f"0.0.0.0:{args.metrics_port}")
        except Exception as exc:  # noqa: BLE001 - the SDK reports a busy port as a plain exception
            err(f"error: cannot serve metrics on port {args.metrics_port}: {exc}")
            return EXIT_USAGE
    try:
        client = await connect(settings, runtime=runtime)
    except RuntimeError as exc:
        err(f"error: cannot reach Temporal at {settings.address}: {exc}")
        return EXIT_UNREACHABLE
    worker = build_worker(
        client, task_queue=args.task_queue, max_concurrent_windows=args.max_concurrent_windows,
        detectors=args.detectors, settings=settings,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _log_start(args, settings)
    async with worker:
        await stop.wait()
        logging.info("shutting down: finishing windows in progress")
    return EXIT_OK


def _log_start(args: argparse.Namespace, settings: Settings) -> None:
    logging.info(
        "worker polling task queue %r on %s (namespace %s), %d windows at once",
        args.task_queue, settings.address, settings.namespace, args.max_concurrent_windows,
    )
    if args.detectors:
        logging.info("serving only the detector group %s (window activities, no workflows)", ",".join(args.detectors))
    if args.metrics_port is not None:
        logging.info("Prometheus metrics at http://0.0.0.0:%d/metrics", args.metrics_port)


def _configure_logging(level: str) -> None:
    try:
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    except ValueError as exc:  # an unknown level name
        raise SettingsError(f"VQA_LOG_LEVEL: {exc}") from exc


def run(argv: Sequence[str] | None = None) -> int:
    """The worker's exit code: 0 stopped, 2 invalid options or settings, 3 Temporal unreachable."""
    try:
        settings = Settings.from_env()
        _configure_logging(settings.log_level)
        args = parse_args(argv, settings)
        return asyncio.run(run_worker(args, settings))
    except SettingsError as exc:  # a malformed variable, TLS files, payload key: nothing started
        err(f"error: {exc}")
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """`vqa-worker` / `python worker.py`."""
    exit_now(run(argv))
