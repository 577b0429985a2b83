"""The starter's connection to Temporal, and --dev's local dev server when none answers."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from vqa.runtime import connect
from vqa.settings import Settings

from .common import info

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


async def connect_or_start(settings: Settings, *, dev: bool) -> Client:
    """A client for the settings' server; with `dev`, a local dev server is started if none answers.

    Raises ConnectionError (exit 3) with the one line the user sees.
    """
    try:
        return await connect(settings)
    except RuntimeError as exc:
        host, _ = settings.host_port
        if not dev:
            raise ConnectionError(
                f"cannot reach Temporal at {settings.address} ({str(exc).splitlines()[0]}); "
                "start it with `temporal server start-dev`, or pass --dev"
            ) from exc
        if host not in _LOCAL_HOSTS:
            raise ConnectionError(f"cannot reach Temporal at {settings.address}; --dev only starts a local server") from exc
    _start_dev_server(settings)
    for _ in range(50):
        try:
            return await connect(settings)
        except RuntimeError:
            await asyncio.sleep(0.2)
    return await connect(settings)


def _start_dev_server(settings: Settings) -> None:
    """`temporal server start-dev` on the settings' port, state in $VQA_HOME; it outlives this command."""
    from vqa.devserver import DevServerError, start_dev_server

    _, port = settings.host_port
    info(f"no Temporal server at {settings.address}: starting the local dev server (state in {settings.home})", always=True)
    try:
        proc = start_dev_server(
            port=port,
            ui_port=port + 1000,
            db_path=settings.home / "temporal.db",
            log_path=settings.home / "temporal.log",
            namespace=settings.namespace,
            detach=True,
        )
    except DevServerError as exc:
        raise ConnectionError(str(exc)) from exc
    (settings.home / "temporal.pid").write_text(str(proc.pid))
    info(
        f"Temporal dev server running (pid {proc.pid}, UI {settings.ui_base()}); it keeps running after this command",
        always=True,
    )
