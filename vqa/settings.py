"""Every setting VQA reads from its environment, in one model (pydantic-settings).

The worker and the starter build one `Settings` when they start and hand it to
what needs it (the activities are constructed with it); no other module reads
the environment. `docs/configuration.md` and README's table are generated from
this model (`python -m vqa.settings --markdown`), and a test fails when they differ.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from functools import cached_property

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec
from temporalio.envconfig import ClientConfigProfile
from temporalio.service import TLSConfig

from vqa.codec import EncryptionCodec, MissingKeyCodec, PayloadKeyError

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NETWORK_TIMEOUT_S = 15.0
# The Temporal CLI's names for the TLS files (`temporal options`), and the shorter ones
# tctl used, accepted as aliases.
_TLS_PATH_VARIABLES = {
    "TEMPORAL_TLS_CLIENT_CERT_PATH": "TEMPORAL_TLS_CERT",
    "TEMPORAL_TLS_CLIENT_KEY_PATH": "TEMPORAL_TLS_KEY",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH": "TEMPORAL_TLS_CA",
}
_TEMPORAL_VARIABLES = (
    "TEMPORAL_TLS", *_TLS_PATH_VARIABLES, "TEMPORAL_TLS_CLIENT_CERT_DATA", "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA", "TEMPORAL_TLS_SERVER_NAME", "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", "TEMPORAL_API_KEY",
)


class SettingsError(ValueError):
    """A setting in the environment is unusable (a malformed number, a TLS file that cannot be read, a bad key)."""


def _env(
    name: str, *aliases: str, group: str, help: str, secret: bool = False, shown: str | None = None, **kwargs: Any
) -> Any:
    """A field read from the variable `name` (or an alias); `group`, `help` and `shown` (the default
    as the table shows it) make the settings table."""
    return Field(
        validation_alias=AliasChoices(name, *aliases),
        repr=not secret,
        json_schema_extra={"env": name, "aliases": list(aliases), "group": group, "help": help, "shown": shown},
        **kwargs,
    )


def _cpu_count() -> int:
    return os.cpu_count() or 2


class Settings(BaseSettings):
    """The worker's and the starter's settings. `Settings()` reads this process's environment;
    `Settings.from_env(mapping)` reads only `mapping` (tests, and errors worded for people)."""

    model_config = SettingsConfigDict(
        env_ignore_empty=True,  # VAR= (empty) means the default, as it always has
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        case_sensitive=True,
    )

    # -- Temporal ---------------------------------------------------------------------------
    address: str = _env("TEMPORAL_ADDRESS", group="Temporal", help="Temporal frontend host:port", default=DEFAULT_ADDRESS)
    namespace: str = _env("TEMPORAL_NAMESPACE", group="Temporal", help="Temporal namespace", default="default")
    task_queue: str = _env("VQA_TASK_QUEUE", group="Temporal", help="task queue workers poll and streams start on", default="vqa")
    ui_url: str | None = _env(
        "TEMPORAL_UI_URL", group="Temporal", help="the Temporal UI (default: the dev server's, gRPC port + 1000)", default=None
    )
    temporal_tls: str | None = _env(
        "TEMPORAL_TLS", group="Temporal", help="`true`: TLS with the system roots (implied by an API key or TLS files)", default=None
    )
    tls_client_cert_path: str | None = _env(
        "TEMPORAL_TLS_CLIENT_CERT_PATH", group="Temporal", help="client certificate for mTLS (alias TEMPORAL_TLS_CERT)", default=None
    )
    tls_client_cert_short: str | None = _env("TEMPORAL_TLS_CERT", group="", help="", default=None)
    tls_client_key_path: str | None = _env(
        "TEMPORAL_TLS_CLIENT_KEY_PATH", group="Temporal", help="client private key for mTLS (alias TEMPORAL_TLS_KEY)", default=None
    )
    tls_client_key_short: str | None = _env("TEMPORAL_TLS_KEY", group="", help="", default=None)
    tls_server_ca_cert_path: str | None = _env(
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH", group="Temporal", help="CA that signed the server (alias TEMPORAL_TLS_CA)", default=None
    )
    tls_server_ca_cert_short: str | None = _env("TEMPORAL_TLS_CA", group="", help="", default=None)
    tls_client_cert_data: SecretStr | None = _env(
        "TEMPORAL_TLS_CLIENT_CERT_DATA", group="Temporal", help="the client certificate itself (PEM)", secret=True, default=None
    )
    tls_client_key_data: SecretStr | None = _env(
        "TEMPORAL_TLS_CLIENT_KEY_DATA", group="Temporal", help="the client key itself (PEM)", secret=True, default=None
    )
    tls_server_ca_cert_data: SecretStr | None = _env(
        "TEMPORAL_TLS_SERVER_CA_CERT_DATA", group="Temporal", help="the server CA itself (PEM)", secret=True, default=None
    )
    tls_server_name: str | None = _env(
        "TEMPORAL_TLS_SERVER_NAME", group="Temporal", help="name the server's certificate must carry", default=None
    )
    tls_disable_host_verification: str | None = _env(
        "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION", group="Temporal", help="`true`: do not check the server's name", default=None
    )
    temporal_api_key: SecretStr | None = _env(
        "TEMPORAL_API_KEY", group="Temporal", help="API key (Temporal Cloud); implies TLS", secret=True, default=None
    )

    # -- worker -----------------------------------------------------------------------------
    max_concurrent_windows: int = _env(
        "VQA_MAX_CONCURRENT_WINDOWS", group="Worker", help="windows decoded at once on a worker (default: CPU count)",
        default_factory=_cpu_count, ge=1,
    )
    metrics_port: int | None = _env(
        "VQA_METRICS_PORT", group="Worker", help="serve Prometheus metrics on this port (default: off)", default=None, gt=0, lt=65536
    )
    worker_detectors: str | None = _env(
        "VQA_WORKER_DETECTORS", group="Worker", help="serve only this detector group (comma-separated names)", default=None
    )
    decode_threads: int = _env(
        "VQA_DECODE_THREADS", group="Worker", help="decoder threads per window (0: adapt to how busy the worker is)", default=0, ge=0
    )
    log_level: str = _env("VQA_LOG_LEVEL", group="Worker", help="logging level", default="INFO")
    home: Path = _env(
        "VQA_HOME", group="Worker", help="where VQA keeps its files (results, the embedded server's data)",
        default_factory=lambda: Path.home() / ".vqa", shown="~/.vqa",
    )
    results: str | None = _env(
        "VQA_RESULTS", group="Worker",
        help="where window results, reports and evidence go: a directory, s3://bucket/prefix or `none` "
        "(default: $VQA_HOME/results)", default=None,
    )

    # -- sources ----------------------------------------------------------------------------
    network_timeout_s: float = _env(
        "VQA_NETWORK_TIMEOUT_S", group="Sources",
        help="a connect or read (sources, HLS playlists, S3, results writes) silent this long fails, retryably",
        default=DEFAULT_NETWORK_TIMEOUT_S, gt=0,
    )
    live_stall_s: float = _env(
        "VQA_LIVE_STALL_S", group="Sources", help="a live window waits this long for new segments, then is analysed without them (signal_loss)",
        default=30.0, gt=0,
    )
    s3_endpoint_url: str | None = _env(
        "VQA_S3_ENDPOINT_URL", group="Sources", help="an S3-compatible server (MinIO, SeaweedFS) instead of AWS", default=None
    )
    aws_endpoint_url_s3: str | None = _env(
        "AWS_ENDPOINT_URL_S3", group="Sources", help="as VQA_S3_ENDPOINT_URL (read by boto3 itself)", default=None
    )
    aws_endpoint_url: str | None = _env("AWS_ENDPOINT_URL", group="Sources", help="boto3's endpoint for every AWS service (S3 sources and results, SNS)", default=None)
    s3_read_block_bytes: int = _env(
        "VQA_S3_READ_BLOCK_BYTES", group="Sources", help="bytes per ranged S3 GET", default=2 * 1024 * 1024, shown="2097152 (2 MiB)", ge=64 * 1024
    )
    # boto3 reads the AWS credentials itself (environment, profile, instance role); they are
    # here so that a change of them gets a new client.
    aws_access_key_id: str | None = _env("AWS_ACCESS_KEY_ID", group="", help="", default=None)
    aws_secret_access_key: SecretStr | None = _env("AWS_SECRET_ACCESS_KEY", group="", help="", secret=True, default=None)
    aws_session_token: SecretStr | None = _env("AWS_SESSION_TOKEN", group="", help="", secret=True, default=None)
    aws_profile: str | None = _env("AWS_PROFILE", group="", help="", default=None)
    aws_region: str | None = _env("AWS_REGION", "AWS_DEFAULT_REGION", group="", help="", default=None)
    ssl_cert_file: str | None = _env(
        "SSL_CERT_FILE", group="Sources", help="CA bundle for https sources (default: the system's)", default=None
    )

    # -- the allow-list ---------------------------------------------------------------------
    allowed_schemes: str | None = _env(
        "VQA_ALLOWED_SCHEMES", group="Security", help="schemes a source may use, comma-separated "
        "(default: file,http,https,s3)", default=None,
    )
    allowed_roots: str | None = _env(
        "VQA_ALLOWED_ROOTS", group="Security", help="directories local sources must lie in (os.pathsep-separated; default: any)",
        default=None,
    )
    allowed_results_roots: str | None = _env(
        "VQA_ALLOWED_RESULTS_ROOTS", group="Security", help="directories a stream's local results may go to (default: any; VQA_RESULTS itself is always allowed)",
        default=None,
    )
    allow_private_urls: bool = _env(
        "VQA_ALLOW_PRIVATE_URLS", group="Security", help="lift the link-local/metadata-address rule", default=False
    )
    refuse_private_urls: bool = _env(
        "VQA_REFUSE_PRIVATE_URLS", group="Security", help="only public addresses for URLs (sources, webhooks)", default=False
    )

    # -- payload encryption -----------------------------------------------------------------
    payload_key: SecretStr | None = _env(
        "VQA_PAYLOAD_KEY", group="Security", help="AES-256 key (base64) encrypting every Temporal payload", secret=True,
        default=None,
    )
    payload_key_id: str | None = _env(
        "VQA_PAYLOAD_KEY_ID", group="Security", help="the key's id (default: its fingerprint)", default=None
    )
    payload_old_keys: SecretStr | None = _env(
        "VQA_PAYLOAD_OLD_KEYS", group="Security", help="earlier keys still read: ID:BASE64,...", secret=True, default=None
    )

    # -- notifications ----------------------------------------------------------------------
    notify_url: str | None = _env("VQA_NOTIFY_URL", group="Notifications", help="the worker's default webhook", default=None)
    sns_topic_arn: str | None = _env(
        "VQA_SNS_TOPIC_ARN", group="Notifications", help="an SNS topic every defect is published to", default=None
    )
    webhook_secret: SecretStr | None = _env(
        "VQA_WEBHOOK_SECRET", group="Notifications", help="HMAC-SHA256 key signing webhook bodies", secret=True, default=None
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (default: this process's environment); raises SettingsError."""
        try:
            if env is None:
                return cls()
            names = {alias for field in cls.model_fields.values() for alias in _names(field)}
            settings = cls.model_validate({k: v for k, v in env.items() if k in names and v != ""})
        except ValidationError as exc:
            raise SettingsError(_worded(exc)) from exc
        settings.tls, settings.payload_codec  # noqa: B018 - unusable TLS files or keys fail here, before anything starts
        return settings

    # -- the connection to Temporal -----------------------------------------------------------

    @cached_property
    def _connection(self) -> dict[str, Any]:
        """TLS and API key from the Temporal CLI's variables, read as the SDK's envconfig reads them."""
        variables = self.variables(*_TEMPORAL_VARIABLES)
        for name, alias in _TLS_PATH_VARIABLES.items():
            short = self.variables(alias).get(alias)
            if not variables.get(name) and short:
                variables[name] = short
            path = variables.get(name)
            if path and not os.access(path, os.R_OK):
                raise SettingsError(f"{name if self.variables(name) else alias}: cannot read {path}")
        try:
            return ClientConfigProfile.load(disable_file=True, override_env_vars=variables).to_client_connect_config()
        except Exception as exc:  # noqa: BLE001 - the SDK's loader raises several kinds
            raise SettingsError(f"Temporal TLS settings: {exc}") from exc

    @property
    def tls(self) -> bool | TLSConfig:
        return self._connection.get("tls", False)

    @property
    def api_key(self) -> str | None:
        return self._connection.get("api_key")

    @cached_property
    def payload_codec(self) -> PayloadCodec | None:
        """The AES-256-GCM codec VQA_PAYLOAD_KEY asks for; None without a key."""
        try:
            return EncryptionCodec.from_env(self.variables("VQA_PAYLOAD_KEY", "VQA_PAYLOAD_KEY_ID", "VQA_PAYLOAD_OLD_KEYS"))
        except PayloadKeyError as exc:
            raise SettingsError(str(exc)) from exc

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

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting (by field name), or None."""
        value = getattr(self, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    def default_results(self) -> str:
        """The worker's results location: VQA_RESULTS, else $VQA_HOME/results."""
        return (self.results or "").strip() or str(self.home / "results")

    def variables(self, *names: str) -> dict[str, str]:
        """The settings named by their variables, as the environment gave them (set ones only)."""
        by_env = {_names(f)[0]: n for n, f in type(self).model_fields.items()}
        out = {}
        for env_name in names:
            value = self.secret(by_env[env_name])
            if value is not None and value != "":
                out[env_name] = str(value)
        return out


def _names(field: Any) -> list[str]:
    extra = field.json_schema_extra or {}
    return [extra["env"], *extra["aliases"]]


def _worded(exc: ValidationError) -> str:
    fields = Settings.model_fields
    parts = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        env = _names(fields[name])[0] if name in fields else name
        parts.append(f"{env}: {error['msg']}")
    return "; ".join(parts)


def markdown_table() -> str:
    """The settings table in README and docs/configuration.md, from the model."""
    rows = ["| Variable | Default | What it does |", "|---|---|---|"]
    group = None
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra or {}
        if not extra.get("group"):
            continue  # aliases and what boto3 reads itself
        if extra["group"] != group:
            group = extra["group"]
            rows.append(f"| **{group}** | | |")
        if extra.get("shown"):
            default = f"`{extra['shown']}`"
        elif field.default_factory is not None or field.default in (None, ""):
            default = ""
        else:
            default = f"`{str(field.default).lower() if isinstance(field.default, bool) else field.default}`"
        rows.append(f"| `{extra['env']}` | {default} | {extra['help']} |")
    return "\n".join(rows)


def limit_blas_threads() -> None:
    """Windows already run in parallel: BLAS threads on top only contend for the cores."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown_table())
    else:
        print("usage: python -m vqa.settings --markdown", file=sys.stderr)
        sys.exit(2)
