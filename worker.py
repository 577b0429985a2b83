"""Run a VQA worker: polls the task queue, runs stream workflows and window activities.

Connects to TEMPORAL_ADDRESS (default localhost:7233), namespace TEMPORAL_NAMESPACE
(default `default`), task queue VQA_TASK_QUEUE (default `vqa`). With --metrics-port
(env VQA_METRICS_PORT; off by default) it serves Prometheus metrics on that port.
"""

from __future__ import annotations

import os

# Windows already run in parallel; BLAS threads on top only contend for the cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import logging
import signal
import sys

from vqa.runtime import Settings, SettingsError, build_worker, connect, prometheus_runtime


def _parse(argv: list[str] | None) -> argparse.Namespace:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-queue", default=settings.task_queue, help="task queue to poll (env VQA_TASK_QUEUE)")
    parser.add_argument(
        "--max-concurrent-windows",
        type=int,
        default=settings.max_concurrent_windows,
        help="windows decoded at once on this worker (env VQA_MAX_CONCURRENT_WINDOWS; default: CPU count)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=os.environ.get("VQA_METRICS_PORT", "").strip() or None,  # argparse applies `type` to it
        help="serve Prometheus metrics at http://0.0.0.0:PORT/metrics (env VQA_METRICS_PORT; default: off)",
    )
    parser.add_argument(
        "--detectors",
        default=os.environ.get("VQA_WORKER_DETECTORS", "").strip() or None,
        help="serve only this detector group (comma-separated names) on --task-queue: window activities "
        "of streams started with --group QUEUE=NAMES, no workflows (env VQA_WORKER_DETECTORS; default: all)",
    )
    args = parser.parse_args(argv)
    if args.detectors is not None:
        import detectors

        try:
            args.detectors = detectors.resolve([n.strip() for n in args.detectors.split(",") if n.strip()])
        except ValueError as exc:
            parser.error(str(exc))
    if args.max_concurrent_windows < 1:
        parser.error("--max-concurrent-windows must be at least 1")
    if args.metrics_port is not None and not 0 < args.metrics_port < 65536:
        parser.error("--metrics-port must be a TCP port (1-65535)")
    return args


async def _run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    runtime = None
    if args.metrics_port is not None:
        try:
            runtime = prometheus_runtime(f"0.0.0.0:{args.metrics_port}")
        except Exception as exc:  # noqa: BLE001 - the SDK reports a busy port as a plain exception
            print(f"error: cannot serve metrics on port {args.metrics_port}: {exc}", file=sys.stderr)
            return 2
    try:
        client = await connect(settings, runtime=runtime)
    except RuntimeError as exc:
        print(f"error: cannot reach Temporal at {settings.address}: {exc}", file=sys.stderr)
        return 3
    worker = build_worker(
        client, task_queue=args.task_queue, max_concurrent_windows=args.max_concurrent_windows, detectors=args.detectors
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.info(
        "worker polling task queue %r on %s (namespace %s), %d windows at once",
        args.task_queue, settings.address, settings.namespace, args.max_concurrent_windows,
    )
    if args.detectors:
        logging.info("serving only the detector group %s (window activities, no workflows)", ",".join(args.detectors))
    if args.metrics_port is not None:
        logging.info("Prometheus metrics at http://0.0.0.0:%d/metrics", args.metrics_port)
    async with worker:
        await stop.wait()
        logging.info("shutting down: finishing windows in progress")
    return 0


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=os.environ.get("VQA_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s")
    try:
        args = _parse(argv)
        code = asyncio.run(_run(args))
    except SettingsError as exc:  # TLS files, payload key: nothing started
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    # Avoid the temporalio interpreter-exit abort (sdk-python #300): exit without finalizers.
    os._exit(code)


if __name__ == "__main__":
    main()
