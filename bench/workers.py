"""What bench/cost.py and bench/scaleout.py share: a design's worker process (bench/cost_worker.py)
against the benchmark's servers, and a client's settings for those servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from support.servers import S3_CATEGORIES, Servers
from vqa.runtime import Settings

REPO = Path(__file__).resolve().parents[1]

# Both designs' workers decode with one thread per activity, as a worker busy with a window
# (or a second) per core does; the product adapts (activities.decode.DecoderThreads), and a
# benchmark that runs one stream at a time would otherwise measure an idle worker's threading.
WORKER_ENV: dict[str, str] = {"VQA_DECODE_THREADS": "1"}


class Worker:
    """A design's worker process (bench/cost_worker.py) on its own task queue."""

    def __init__(
        self, servers: Servers, design: str, *, max_concurrent: int, directory: Path, group: list[str] | None = None
    ) -> None:
        self.design = design
        self.task_queue = f"bench-{design}-{uuid.uuid4().hex[:8]}"
        self.stats = directory / f"{self.task_queue}.json"
        env = servers.worker_env(os.environ)
        env["VQA_BENCH_S3_CATEGORIES"] = json.dumps(S3_CATEGORIES)
        env.update(WORKER_ENV)
        self.log = directory / f"{self.task_queue}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.cost_worker", "--design", design, "--task-queue", self.task_queue,
                 "--stats", str(self.stats), "--max-concurrent", str(max_concurrent),
                 *(["--detectors", ",".join(group)] if group else [])],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        ready = Path(str(self.stats) + ".ready")
        deadline = time.monotonic() + 60
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"the {design} worker did not start; see {self.log}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def counts(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """The worker's S3 counts so far (SIGUSR1), without stopping it."""
        snapshot = Path(str(self.stats) + ".snapshot")
        snapshot.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while not snapshot.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.design} worker gave no counts; see {self.log}")
            time.sleep(0.05)
        return dict(json.loads(snapshot.read_text()))["s3"]

    def stop(self) -> dict[str, Any]:
        """SIGTERM; the worker finishes and writes its counts."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise RuntimeError(f"the {self.design} worker did not stop; see {self.log}") from None
        return dict(json.loads(self.stats.read_text()))


def client_settings(servers: Servers, task_queue: str) -> Settings:
    """A client of `servers`' Temporal server on `task_queue`."""
    return Settings(address=servers.temporal_address, namespace="default", task_queue=task_queue,
                    max_concurrent_windows=1, home=servers.directory / "home", ui_url=None)
