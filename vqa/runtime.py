"""The Temporal client for the settings, and the worker."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from vqa.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "build_worker", "connect", "prometheus_runtime"]


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client for the settings' server: TLS, mTLS or an API key as configured, and the
    payload codec when payloads are encrypted."""
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        data_converter=settings.data_converter(),
        runtime=runtime,
        tls=settings.tls,
        api_key=settings.api_key,
    )


def prometheus_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime serving the SDK's metrics, and ours (see activities/window.py),
    at http://BIND_ADDRESS/metrics for Prometheus."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


def build_worker(
    client: Client, *, task_queue: str, max_concurrent_windows: int, detectors: list[str] | None = None
) -> Worker:
    """A worker that runs stream workflows and window activities on `task_queue`.

    Window activities are synchronous (decode and numpy), so they run in a thread
    pool; its size bounds how many windows decode at once on this worker. With
    `detectors`, it serves only that detector group's window activities (streams
    route the group to `task_queue` with `detector_groups`), and no workflows.
    """
    from activities import ANALYSIS_ACTIVITIES
    from activities.window import DetectorGroupWorker
    from workflows import StreamMonitorWorkflow

    group = DetectorGroupWorker(detectors) if detectors else None
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[] if group else [StreamMonitorWorkflow],
        activities=[group.analyze_window] if group else ANALYSIS_ACTIVITIES,
        activity_executor=ThreadPoolExecutor(max_workers=max_concurrent_windows, thread_name_prefix="vqa-window"),
        max_concurrent_activities=max_concurrent_windows,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )
