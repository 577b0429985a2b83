"""Headless Chromium for the tests: a page's rendered DOM, or a screenshot of it.

Works on any URL (a report file, the Temporal UI): each call starts a fresh
browser with its own temporary profile, gives the page `budget_ms` of virtual
time to run its scripts and load, and is killed after `timeout_s`. The binary
is `VQA_CHROMIUM`, else the first of chromium, chromium-browser, google-chrome
on PATH (Debian: `apt-get install chromium`); without one, `chromium_binary`
raises, so a test that needs a browser fails instead of skipping.
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless Chromium lays pages out at least this wide, whatever --window-size says:
# a narrower page (a phone's) is shown in a frame of its size inside a wrapper page.
MIN_LAYOUT_WIDTH = 500


def chromium_binary() -> str:
    """The browser to run; raises when there is none (install Debian's `chromium`)."""
    configured = os.environ.get("VQA_CHROMIUM", "").strip()
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise RuntimeError(f"VQA_CHROMIUM={configured} is not an executable")
        return found
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        f"no headless browser found ({', '.join(_CANDIDATES)} or VQA_CHROMIUM): apt-get install chromium"
    )


def _run(url: str, flags: list[str], *, timeout_s: float) -> str:
    with tempfile.TemporaryDirectory(prefix="vqa-chromium-", ignore_cleanup_errors=True) as profile:
        command = [
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={profile}",
            *flags,
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(url: str, *, budget_ms: int = 5000, width: int = 1280, height: int = 1600, timeout_s: float = 60) -> str:
    """The page's DOM, serialised after `budget_ms` of virtual time (scripts run, images load)."""
    flags = [f"--window-size={max(width, MIN_LAYOUT_WIDTH)},{height}", f"--virtual-time-budget={budget_ms}", "--dump-dom"]
    return _run(url, flags, timeout_s=timeout_s)


def screenshot(
    url: str, path: Path | str, *, width: int, height: int, budget_ms: int = 5000, timeout_s: float = 60
) -> Path:
    """A PNG of the page's first `width` x `height` CSS pixels, written to `path`."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="vqa-frame-") as frame_dir:
        target = url
        if width < MIN_LAYOUT_WIDTH:
            # The page in a frame of the phone's size: its own viewport (and media queries) are that size.
            wrapper = Path(frame_dir) / "frame.html"
            wrapper.write_text(
                '<!DOCTYPE html><html><body style="margin:0">'
                f'<iframe src="{html.escape(url)}" style="border:0;display:block;width:{width}px;height:{height}px">'
                "</iframe></body></html>"
            )
            target = wrapper.as_uri()
        flags = [f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}", f"--screenshot={path}"]
        _run(target, flags, timeout_s=timeout_s)
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot of {url}")
    return path
