"""The Temporal client for the settings, and the SDK runtime that serves metrics.

The worker itself is assembled above the activities and workflows, in cli/worker.py.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from vqa.settings import Settings, SettingsError

# Settings and SettingsError are re-exported: many callers import them from here with connect.
__all__ = ["Settings", "SettingsError", "connect", "prometheus_runtime"]


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
