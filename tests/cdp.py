"""A live page in headless Chromium, driven over the DevTools protocol.

`browser.dump_dom` gives a page virtual time to settle, which never happens on a
page that long-polls (the Temporal UI of a running workflow waits on the
server for new history events). Here the page runs in real time: we wait until
its text shows what we look for, then read it or take a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import websocket

from .browser import chromium_binary


class LivePage:
    def __init__(self, ws: websocket.WebSocket) -> None:
        self._ws = ws
        self._next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def text(self) -> str:
        """The text of the page and of its frames (the Temporal UI renders markdown in sandboxed iframes)."""
        root = self.call("DOM.getDocument", depth=-1, pierce=True)["root"]
        parts: list[str] = []

        def walk(node: dict[str, Any]) -> None:
            if node.get("nodeName") in ("SCRIPT", "STYLE"):
                return
            if node.get("nodeType") == 3 and node.get("nodeValue", "").strip():
                parts.append(node["nodeValue"].strip())
            for child in node.get("children", []):
                walk(child)
            if "contentDocument" in node:
                walk(node["contentDocument"])
            for shadow in node.get("shadowRoots", []):
                walk(shadow)

        walk(root)
        return "\n".join(parts)

    def wait_for_text(self, *needles: str, timeout_s: float = 30) -> str:
        """The page's visible text once it contains every needle; raises with the last text otherwise."""
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.5)
        raise AssertionError(f"page text never showed {needles!r}; last text:\n{text[:12000]}")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def live_page(url: str, *, width: int = 1400, height: int = 1100, timeout_s: float = 30) -> Iterator[LivePage]:
    """Chromium (fresh profile, headless) showing `url`, for as long as the block runs."""
    # Chromium's helper processes may still be writing the profile as they go: its removal
    # must not fail the test.
    with tempfile.TemporaryDirectory(prefix="vqa-cdp-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [
                chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={profile}", f"--window-size={width},{height}", "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its renderer and helper processes go with it
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout_s
            while not port_file.exists() or not port_file.read_text().strip():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                targets = json.load(response)
            page_target = next(t for t in targets if t.get("type") == "page")
            ws = websocket.create_connection(page_target["webSocketDebuggerUrl"], timeout=timeout_s)
            try:
                page = LivePage(ws)
                page.call("Page.enable")
                page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
                page.call("Page.navigate", url=url)
                yield page
            finally:
                ws.close()
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
