"""bench.parallel on a short clip: the same report whatever --parallel and however many workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.parallel import run
from vqa.synth import ClipSpec, Segment, make_clip

pytestmark = pytest.mark.integration


def test_parallel_runs_report_the_same_and_time_each(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", ClipSpec(
        duration_s=16.0, video=[Segment("black", 3.0, 7.5)], audio=[Segment("silence", 9.0, 13.5)],
        keyframe_interval_s=3.0,
    ))
    rows = run(clip, [1, 4], two_workers=True, window_s=2.0)["rows"]
    assert [(r["parallel"], r["workers"]) for r in rows] == [(1, 1), (4, 1), (4, 2)]
    assert all(r["status"] == "completed" and r["defects"] == 2 for r in rows), rows
    assert all(r["report_equals_parallel_1"] for r in rows), rows
    assert all(r["wall_s"] > 0 and r["worker_cpu_s"] > 0 for r in rows), rows
    assert rows[0]["speedup"] == 1.0
