"""The worker's Prometheus endpoint: the SDK's metrics and ours, scraped from a `python worker.py`."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
import uuid
from collections import Counter

import pytest

from vqa.contracts import StreamReport
from vqa.devserver import free_port

from . import media
from .conftest import REPO, python_command, worker_subprocess

pytestmark = pytest.mark.integration

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$")


def _scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def _total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == want for k, want in labels.items()))


def test_worker_serves_sdk_and_analysis_metrics(temporal_server, clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    queue = f"metrics-{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = temporal_server.env(queue, VQA_METRICS_PORT=str(port))
    with worker_subprocess(env, tmp_path / "worker.log"):
        done = subprocess.run(
            python_command("starter.py", str(clips("main")), "--wait", "--json", "--window-seconds", "4",
                           "--stream-id", f"metrics-{uuid.uuid4().hex[:8]}"),
            env=temporal_server.env(queue), capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, done.stderr
        report = StreamReport.model_validate_json(done.stdout)
        assert report.windows == 8 and media.match(report.defects, media.MAIN_TRUTH) == []

        deadline = time.monotonic() + 10
        samples = _scrape(port)
        while _total(samples, "vqa_windows_analysed") < 8 and time.monotonic() < deadline:
            time.sleep(0.5)
            samples = _scrape(port)

    assert _total(samples, "vqa_windows_analysed", task_queue=queue, activity_type="analyze_window") == 8
    by_kind = Counter((d.kind, d.track) for d in report.defects)
    assert by_kind == {("black", "video"): 2, ("freeze", "video"): 1, ("silence", "audio"): 1}
    found = Counter({(lab["kind"], lab["track"]): int(v) for n, lab, v in samples if n == "vqa_defects" and v})
    assert found == by_kind
    assert report.media is not None
    assert _total(samples, "vqa_media_analysed_ms") == pytest.approx(report.media.duration_s * 1000, abs=2)
    assert _total(samples, "vqa_analysis_wall_ms") > 0
    # The SDK's own runtime metrics are on the same endpoint.
    sdk = {n for n, lab, _ in samples if n.startswith("temporal_") and lab.get("activity_type") == "analyze_window"}
    assert "temporal_activity_execution_latency_count" in sdk, sorted(sdk)
    assert _total(samples, "temporal_activity_execution_latency_count", activity_type="analyze_window") == 8
