"""Settings from the environment, the Temporal client, and the worker."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec
from temporalio.envconfig import ClientConfigProfile
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig
from temporalio.worker import Worker

from vqa.codec import EncryptionCodec, MissingKeyCodec, PayloadKeyError

DEFAULT_ADDRESS = "localhost:7233"
# The Temporal CLI's names for the TLS files (`temporal options`), and the shorter ones
# tctl used, accepted as aliases.
_TLS_PATH_VARIABLES = {
    "TEMPORAL_TLS_CLIENT_CERT_PATH": "TEMPORAL_TLS_CERT",
    "TEMPORAL_TLS_CLIENT_KEY_PATH": "TEMPORAL_TLS_KEY",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "TEMPORAL_TLS_CA",
}


class SettingsError(ValueError):
    """A setting in the environment is unusable (a TLS file that cannot be read, a malformed key)."""


@dataclass(frozen=True)
class Settings:
    address: str
    namespace: str
    task_queue: str
    max_concurrent_windows: int
    home: Path
    ui_url: str | None
    # Connection security and payload encryption: secrets, kept out of reprs and logs.
    tls: bool | TLSConfig = field(default=False, repr=False)
    api_key: str | None = field(default=None, repr=False)
    payload_codec: PayloadCodec | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (default: this process's environment); raises SettingsError."""
        env = os.environ if env is None else env
        tls, api_key = _connection_security(env)
        try:
            codec = EncryptionCodec.from_env(env)
        except PayloadKeyError as exc:
            raise SettingsError(str(exc)) from exc
        return cls(
            address=env.get("TEMPORAL_ADDRESS", DEFAULT_ADDRESS),
            namespace=env.get("TEMPORAL_NAMESPACE", "default"),
            task_queue=env.get("VQA_TASK_QUEUE", "vqa"),
            max_concurrent_windows=int(env.get("VQA_MAX_CONCURRENT_WINDOWS", str(os.cpu_count() or 2))),
            home=Path(env.get("VQA_HOME", str(Path.home() / ".vqa"))),
            ui_url=env.get("TEMPORAL_UI_URL"),
            tls=tls,
            api_key=api_key,
            payload_codec=codec,
        )

    def data_converter(self) -> DataConverter:
        """Pydantic payloads; with a payload key, encrypted, failure messages included.

        Without a key, encrypted payloads (from a process that has one) fail with a
        message saying so rather than as an unknown encoding.
        """
        if self.payload_codec is None:
            return dataclasses.replace(pydantic_data_converter, payload_codec=MissingKeyCodec())
        return dataclasses.replace(
            pydantic_data_converter,
            payload_codec=self.payload_codec,
            failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
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


def _connection_security(env: Mapping[str, str]) -> tuple[bool | TLSConfig, str | None]:
    """TLS and API key from the Temporal CLI's variables (TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH,
    TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_SERVER_CA_CERT_PATH, their *_DATA forms,
    TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY), read as the SDK's envconfig reads them."""
    variables = dict(env)
    for name, alias in _TLS_PATH_VARIABLES.items():
        if not variables.get(name) and variables.get(alias):
            variables[name] = variables[alias]
        path = variables.get(name)
        if path and not os.access(path, os.R_OK):
            shown = name if env.get(name) else alias
            raise SettingsError(f"{shown}: cannot read {path}")
    try:
        profile = ClientConfigProfile.load(disable_file=True, override_env_vars=variables)
        config = profile.to_client_connect_config()
    except Exception as exc:  # noqa: BLE001 - the SDK's loader raises several kinds
        raise SettingsError(f"Temporal TLS settings: {exc}") from exc
    return config.get("tls", False), config.get("api_key")


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
