"""Run a VQA worker: polls the task queue, runs stream workflows and window activities.

Connects to TEMPORAL_ADDRESS (default localhost:7233), namespace TEMPORAL_NAMESPACE
(default `default`), task queue VQA_TASK_QUEUE (default `vqa`). With --metrics-port
(env VQA_METRICS_PORT; off by default) it serves Prometheus metrics on that port.
`vqa-worker` (installed by `pip install -e .`) is the same command; it is cli/worker.py.
"""

from __future__ import annotations

from cli.worker import main

if __name__ == "__main__":
    main()
