"""Settings from the environment, the Temporal client, and the worker."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

DEFAULT_ADDRESS = "localhost:7233"


@dataclass(frozen=True)
class Settings:
    address: str
    namespace: str
    task_queue: str
    max_concurrent_windows: int
    home: Path
    ui_url: str | None

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            address=env.get("TEMPORAL_ADDRESS", DEFAULT_ADDRESS),
            namespace=env.get("TEMPORAL_NAMESPACE", "default"),
            task_queue=env.get("VQA_TASK_QUEUE", "vqa"),
            max_concurrent_windows=int(env.get("VQA_MAX_CONCURRENT_WINDOWS", str(os.cpu_count() or 2))),
            home=Path(env.get("VQA_HOME", str(Path.home() / ".vqa"))),
            ui_url=env.get("TEMPORAL_UI_URL"),
        )

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return (host or "localhost"), int(port or 7233)

    def ui_base(self) -> str:
        """The Temporal UI: TEMPORAL_UI_URL, else the dev server's default (gRPC port + 1000)."""
        if self.ui_url:
            return self.ui_url.rstrip("/")
        host, port = self.host_port
        return f"http://{host}:{port + 1000}"

    def workflow_url(self, workflow_id: str) -> str:
        return f"{self.ui_base()}/namespaces/{self.namespace}/workflows/{workflow_id}"


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        settings.address, namespace=settings.namespace, data_converter=pydantic_data_converter, runtime=runtime
    )


def prometheus_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime serving the SDK's metrics, and ours (see activities/window.py),
    at http://BIND_ADDRESS/metrics for Prometheus."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


def build_worker(client: Client, *, task_queue: str, max_concurrent_windows: int) -> Worker:
    """A worker that runs stream workflows and window activities on `task_queue`.

    Window activities are synchronous (decode and numpy), so they run in a thread
    pool; its size bounds how many windows decode at once on this worker.
    """
    from activities import ANALYSIS_ACTIVITIES
    from workflows import StreamMonitorWorkflow

    return Worker(
        client,
        task_queue=task_queue,
        workflows=[StreamMonitorWorkflow],
        activities=ANALYSIS_ACTIVITIES,
        activity_executor=ThreadPoolExecutor(max_workers=max_concurrent_windows, thread_name_prefix="vqa-window"),
        max_concurrent_activities=max_concurrent_windows,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )
