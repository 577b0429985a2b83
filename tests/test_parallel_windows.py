"""Parallel windows: a file's windows analysed at once, each on its own (no state from the window
before it), then stitched in window order by the workflow. The report must not depend on it.

Clips with defects that run across window boundaries, on long GOPs (windows start on keyframes,
so boundaries fall where the encoder put them): black, freeze, silence, too-quiet loudness and
macroblocking. Each is analysed one window after another with carried state (the reference) and
with self-contained windows stitched; then through the real Temporal server with `--parallel 1`
and `--parallel 4`.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from activities.offline import analyse
from vqa import gating
from vqa.contracts import Defect, StreamReport, StreamRequest, WindowResult
from vqa.stitch import report_defects
from vqa.synth import ClipSpec, Segment, make_clip

from . import media
from .conftest import TemporalServer, analyse_stream
from .media_corrupt import block_average, damage, encode_clip, sharp_programme

WINDOW_S = 4.0
FRAME_S = 0.04  # 25 fps: edges may differ by one frame

# Keyframes every 5 s (x264 would place them further apart still): windows of 4 s nominal
# start on them, at 0, 5, 10, 15 ... s. Every defect runs across at least one boundary.
SPEC = ClipSpec(
    duration_s=40.0,
    # The black at 24.5-25.5 s is shorter than the rule (2 s) on both sides of a boundary: no defect.
    video=[Segment("black", 6.0, 11.0), Segment("freeze", 14.5, 19.3), Segment("black", 24.5, 25.5),
           Segment("still", 28.0, 34.6)],
    audio=[Segment("silence", 3.0, 9.5), Segment("quiet", 20.0, 37.0)],
    keyframe_interval_s=5.0,
)
TRUTH = [
    media.Expected("silence", 3.0, 9.5),
    media.Expected("black", 6.0, 11.0),
    media.Expected("freeze", 14.5, 19.3),
    media.Expected("freeze", 28.0, 34.6),
    media.Expected("loudness", 22.6, 36.8),  # short-term loudness leaves the range 2.6 s after the drop (the tone's swell)
]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("parallel") / "boundaries.mp4", SPEC)


@pytest.fixture(scope="module")
def blocky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sharp moving content, macroblocked from 8.5 to 13 s, encoded with x264's default GOP (250 frames)."""
    times, luma = sharp_programme(24.0)
    damaged = damage(times, luma, 8.5, 13.0, block_average)
    return encode_clip(tmp_path_factory.mktemp("parallel") / "blocky.mp4", damaged, crf="18")


def _keyframes(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(p.pts * p.time_base) for p in container.demux(stream) if p.is_keyframe and p.pts is not None]


def assert_same_defects(a: list[Defect], b: list[Defect]) -> None:
    """Same defects: kinds, tracks, edges within a frame, values within 5 %."""
    assert [(d.kind, d.track) for d in a] == [(d.kind, d.track) for d in b], (a, b)
    for x, y in zip(a, b):
        assert abs(x.start_s - y.start_s) <= FRAME_S + 1e-6 and abs(x.end_s - y.end_s) <= FRAME_S + 1e-6, (x, y)
        assert (x.value is None) == (y.value is None)
        if x.value is not None and y.value is not None:
            assert y.value == pytest.approx(x.value, rel=0.05, abs=0.05), (x, y)
        assert {k: v for k, v in x.details.items() if k != "evidence"} == {
            k: v for k, v in y.details.items() if k != "evidence"
        }


def _integrated_by_ffmpeg(path: Path) -> float:
    log = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a",
         "-af", "ebur128", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr
    return float(re.search(r"I:\s+(-?[\d.]+) LUFS", log[log.rindex("Summary:"):]).group(1))  # type: ignore[union-attr]


def test_the_boundaries_fall_inside_the_defects(clip: Path) -> None:
    """The premise: windows start on the clip's keyframes, and every defect spans one."""
    keys = _keyframes(clip)
    assert keys[:4] == pytest.approx([0.0, 5.0, 10.0, 15.0], abs=0.05)
    for truth in TRUTH:
        assert any(truth.start_s < k < truth.end_s for k in keys), truth
    assert any(24.5 < k < 25.5 for k in keys)


def test_self_contained_windows_stitch_to_the_report_of_windows_in_a_row(clip: Path) -> None:
    in_a_row = analyse(clip, window_s=WINDOW_S)
    stitched = analyse(clip, window_s=WINDOW_S, self_contained=True)
    a = report_defects(in_a_row, position_s=in_a_row.media.duration_s)
    b = report_defects(stitched, position_s=stitched.media.duration_s)
    assert media.match(a, TRUTH) == [], a
    assert_same_defects(a, b)
    assert stitched.pending_runs == [] and stitched.open_events == []
    # Integrated loudness from the windows' gating histograms, merged: EBU R128 over the whole file.
    whole = gating.integrated_lufs(stitched.gating.counts, first_bin=stitched.gating.first_bin)
    assert whole == pytest.approx(gating.integrated_lufs(in_a_row.gating.counts, first_bin=in_a_row.gating.first_bin), abs=0.01)
    assert whole == pytest.approx(_integrated_by_ffmpeg(clip), abs=0.1)


def test_a_freeze_is_not_joined_to_a_different_still_across_a_boundary(tmp_path: Path) -> None:
    """Two stills meeting on a keyframe: the held pictures' prints differ, so two freezes, as in a row."""
    spec = ClipSpec(duration_s=20.0, video=[Segment("freeze", 2.0, 10.0), Segment("freeze", 10.0, 17.0)],
                    with_audio=False, keyframe_interval_s=5.0)
    path = make_clip(tmp_path / "two-stills.mp4", spec)
    a = analyse(path, window_s=WINDOW_S, detectors=["freeze"])
    b = analyse(path, window_s=WINDOW_S, detectors=["freeze"], self_contained=True)
    da, db = report_defects(a, position_s=20.0), report_defects(b, position_s=20.0)
    assert media.match(da, [media.Expected("freeze", 2.0, 10.0), media.Expected("freeze", 10.0, 17.0)]) == [], da
    assert_same_defects(da, db)


def test_macroblocking_across_a_long_gop_boundary(blocky: Path) -> None:
    keys = _keyframes(blocky)
    assert any(8.5 < k < 13.0 for k in keys) and not any(0 < k < 8.0 for k in keys), keys
    a = analyse(blocky, window_s=WINDOW_S, detectors=["blockiness"])
    b = analyse(blocky, window_s=WINDOW_S, detectors=["blockiness"], self_contained=True)
    da, db = report_defects(a, position_s=24.0), report_defects(b, position_s=24.0)
    assert media.match(da, [media.Expected("blockiness", 8.5, 13.0)], tolerance_s=0.3) == [], da
    assert_same_defects(da, db)


def _request(name: str, source: Path, parallel: int) -> StreamRequest:
    return StreamRequest(
        stream_id=f"{name}-{uuid.uuid4().hex[:8]}", source=str(source), window_seconds=WINDOW_S, parallel=parallel
    )


def _max_in_flight(server: TemporalServer, report: StreamReport) -> int:
    """The most window activities scheduled and not yet completed at once, from the stream's history."""
    from .conftest import run_async
    from vqa.runtime import connect
    from vqa.contracts import workflow_id_for

    async def count() -> int:
        client = await connect(server.settings("unused"))
        handle = client.get_workflow_handle(workflow_id_for(report.stream_id))
        names: dict[int, str] = {}
        open_now = most = 0
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                names[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
                open_now += names[event.event_id] == "analyze_window"
            elif event.HasField("activity_task_completed_event_attributes"):
                open_now -= names[event.activity_task_completed_event_attributes.scheduled_event_id] == "analyze_window"
            most = max(most, open_now)
        return most

    return run_async(count())


@pytest.mark.integration
def test_parallel_1_and_4_give_the_same_report(temporal_server: TemporalServer, task_queue: str, clip: Path) -> None:
    one = analyse_stream(temporal_server, task_queue, _request("one-at-a-time", clip, 1))
    four = analyse_stream(temporal_server, task_queue, _request("four-at-once", clip, 4))
    assert one.status == four.status == "completed"
    assert one.windows == four.windows and one.analysed_s == four.analysed_s
    assert media.match(one.defects, TRUTH) == [], one.defects
    assert_same_defects(one.defects, four.defects)
    assert one.loudness_integrated_lufs is not None
    assert four.loudness_integrated_lufs == pytest.approx(one.loudness_integrated_lufs, abs=0.01)
    assert _max_in_flight(temporal_server, one) == 1
    assert _max_in_flight(temporal_server, four) == 4
    # Evidence: one object per defect, linked from the report, whatever the order; the short
    # black's, written by the window where it began, is gone once the stitch found it too short.
    for d in four.defects:
        evidence = d.details.get("evidence")
        assert evidence is not None and Path(evidence).exists(), d
    directory = Path(four.defects[0].details["evidence"]).parent
    windows = [WindowResult.model_validate_json(w.read_text()) for w in sorted((directory.parent / "windows").glob("*.json"))]
    short = [e for w in windows for e in w.edges if e.defect.kind == "black" and abs(e.defect.start_s - 24.5) < 0.1]
    assert short and "evidence" in short[0].defect.details, "the window where the short black began wrote its evidence"
    assert sorted(p.name for p in directory.iterdir()) == sorted(Path(d.details["evidence"]).name for d in four.defects)


def test_values_are_numbers_not_arrays() -> None:
    """The stitch runs in the workflow: plain numbers only (no numpy scalars reach a payload)."""
    assert not isinstance(gating.integrated_lufs([1, 2, 3], first_bin=400), np.floating)


def test_windows_shorter_than_the_gop_stitch_across_the_empty_ones(clip: Path) -> None:
    """2 s windows on 5 s GOPs: most windows hold no keyframe and are empty; a run goes on across them."""
    in_a_row = analyse(clip, window_s=2.0)
    stitched = analyse(clip, window_s=2.0, self_contained=True)
    a = report_defects(in_a_row, position_s=in_a_row.media.duration_s)
    assert media.match(a, TRUTH) == [], a
    assert_same_defects(a, report_defects(stitched, position_s=stitched.media.duration_s))
