"""bench.speed --by-detector: where our CPU goes, on a small clip."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.speed import by_detector
from detectors import REGISTRY
from vqa.synth import ClipSpec, Segment, make_clip


def test_by_detector_splits_the_whole_run_and_leaves_the_detectors_as_they_were(tmp_path: Path) -> None:
    before = {name: {m: cls.__dict__.get(m) for m in ("feed_video", "feed_audio", "feed_decode_errors", "finish")}
              for name, cls in REGISTRY.items()}
    clip = make_clip(tmp_path / "clip.mp4", ClipSpec(duration_s=4.0, video=[Segment("black", 1.0, 3.5)],
                                                     audio=[Segment("silence", 1.0, 3.5)]))
    found = by_detector(clip)
    per = found["cpu_s_per_media_s"]
    assert isinstance(per, dict) and set(per) == {"total", "decode_and_rest", *REGISTRY}
    assert per["total"] > 0 and per["decode_and_rest"] > 0
    assert all(per[name] >= 0 for name in REGISTRY)
    assert sum(per[name] for name in REGISTRY) > 0, "the detectors' own calls were timed"
    assert per["decode_and_rest"] + sum(per[name] for name in REGISTRY) == pytest.approx(per["total"])
    after = {name: {m: cls.__dict__.get(m) for m in ("feed_video", "feed_audio", "feed_decode_errors", "finish")}
             for name, cls in REGISTRY.items()}
    assert after == before, "no timing wrapper is left on a detector class"
