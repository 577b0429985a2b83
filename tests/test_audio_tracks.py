"""Every audio track of a source analysed: the first as `audio`, the others as `audio:N` (N counts
audio tracks from 0) with `details.language` when tagged; and the per-channel detectors
(`channel_silence`, `phase_inverted`) on clips with known defects, windows in a row and
self-contained, FFmpeg as the oracle where it has a filter for it, and one stream end to end
through the real Temporal server.
"""

from __future__ import annotations

import io
import re
import subprocess
import uuid
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from activities.decode import probe
from activities.offline import analyse_file
from vqa.contracts import Defect, StreamRequest

from .conftest import TemporalServer, analyse_stream
from .media_tracks import AudioTrack, centred, make_tracks_clip, programme, scaled, silenced
from .test_parallel_windows import assert_same_defects

AUDIO = ["silence", "clipping", "loudness", "channel_silence", "phase_inverted"]
OPTIONS = {"loudness": {"min_duration_s": 3.0}}  # a quiet stretch of 6 s, not the default 10 s
WINDOW_S = 4.0  # keyframes every 2 s: windows start at 0, 4, 8, 12, 16 s; every defect spans a boundary
TOLERANCE_S = 0.2


def _stereo(t: np.ndarray) -> np.ndarray:
    return programme(2, t)


def _surround(t: np.ndarray) -> np.ndarray:
    return programme(6, t)


# Track 0 (English) clean; track 1 (Spanish) silent, then clipped, then quiet.
SPANISH = scaled(scaled(silenced(_stereo, [0, 1], 6.3, 9.7), 12.0, 11.3, 12.8), 10 ** (-30 / 20), 13.0, 19.0)


@pytest.fixture(scope="module")
def two_languages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tracks_clip(
        tmp_path_factory.mktemp("tracks") / "languages.mp4",
        [AudioTrack(_stereo, language="eng"), AudioTrack(SPANISH, language="spa")],
        duration_s=20.0,
    )


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Track 0: 5.1 with FC silent 5-9 s; 1: stereo, right side inverted 3-7 s; 2: clean 5.1;
    3: clean stereo (centred); 4: stereo, both sides silent 2.5-6.5 s (a silence, not channel_silence)."""
    return make_tracks_clip(
        tmp_path_factory.mktemp("tracks") / "layouts.mp4",
        [
            AudioTrack(silenced(_surround, [2], 5.0, 9.0), layout="5.1"),
            AudioTrack(scaled(lambda t: centred(2, t), -1.0, 3.0, 7.0, [1])),
            AudioTrack(_surround, layout="5.1"),
            AudioTrack(lambda t: centred(2, t)),
            AudioTrack(silenced(_stereo, [0, 1], 2.5, 6.5)),
        ],
        duration_s=12.0,
        with_video=True,
    )


def _on(defects: list[Defect], track: str, kind: str | None = None) -> list[Defect]:
    return [d for d in defects if d.track == track and (kind is None or d.kind == kind)]


def _near(defect: Defect, start_s: float, end_s: float, tolerance_s: float = TOLERANCE_S) -> bool:
    return abs(defect.start_s - start_s) <= tolerance_s and abs(defect.end_s - end_s) <= tolerance_s


def _ffmpeg_silences(path: Path, stream: str, *, pan: str | None = None) -> list[tuple[float, float]]:
    """FFmpeg's silencedetect (-60 dB, 2 s) on one audio stream (`pan`: one of its channels)."""
    chain = f"pan=mono|c0={pan}," if pan else ""
    log = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-map", stream,
         "-af", f"{chain}silencedetect=n=-60dB:d=2", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    ).stderr
    starts = [float(x) for x in re.findall(r"silence_start: (-?[\d.]+)", log)]
    ends = [float(x) for x in re.findall(r"silence_end: (-?[\d.]+)", log)]
    return list(zip(starts, ends))


def test_the_probe_finds_every_audio_track_and_its_language(two_languages: Path, layouts: Path) -> None:
    media = probe(str(two_languages))
    assert media.audio is not None and (media.audio.index, media.audio.language) == (0, "eng")
    assert [(a.index, a.language, a.channels) for a in media.audio_tracks] == [(1, "spa", 2)]
    media = probe(str(layouts))
    assert media.audio is not None and media.audio.channels == 6 and media.audio.language is None
    assert [(a.index, a.channels) for a in media.audio_tracks] == [(1, 2), (2, 6), (3, 2), (4, 2)]


@pytest.mark.parametrize("self_contained", [False, True], ids=["in-a-row", "self-contained"])
def test_defects_of_the_second_track_are_on_audio_1_with_its_language(two_languages: Path, self_contained: bool) -> None:
    defects = analyse_file(two_languages, window_s=WINDOW_S, detectors=AUDIO, options=OPTIONS, self_contained=self_contained)
    assert _on(defects, "audio") == [], "the English track is clean"
    assert {d.track for d in defects} == {"audio:1"}, defects
    assert all(d.details["language"] == "spa" for d in defects)
    (silence,) = _on(defects, "audio:1", "silence")
    assert _near(silence, 6.3, 9.7), silence
    (oracle,) = _ffmpeg_silences(two_languages, "0:a:1")
    assert _near(silence, *oracle, tolerance_s=0.05), (silence, oracle)
    (clipping,) = _on(defects, "audio:1", "clipping")
    assert 11.2 <= clipping.start_s < clipping.end_s <= 12.9, clipping
    (quiet,) = _on(defects, "audio:1", "loudness")
    assert 13.0 <= quiet.start_s <= 16.5 and quiet.end_s >= 18.5 and quiet.value is not None and quiet.value < -40, quiet


def test_self_contained_windows_stitch_to_the_report_of_windows_in_a_row(two_languages: Path, layouts: Path) -> None:
    # Not clipping: a self-contained window counts its 1 s span without the second before it.
    chosen = [name for name in AUDIO if name != "clipping"]
    for path in (two_languages, layouts):
        in_a_row = analyse_file(path, window_s=WINDOW_S, detectors=chosen, options=OPTIONS)
        stitched = analyse_file(path, window_s=WINDOW_S, detectors=chosen, options=OPTIONS, self_contained=True)
        assert in_a_row, path
        assert_same_defects(in_a_row, stitched)


def test_channel_layout_defects_and_their_negative_controls(layouts: Path) -> None:
    defects = analyse_file(layouts, window_s=WINDOW_S, detectors=AUDIO)
    (dead_centre,) = _on(defects, "audio")
    assert dead_centre.kind == "channel_silence" and dead_centre.details["channels"] == ["FC"], dead_centre
    assert _near(dead_centre, 5.0, 9.0, tolerance_s=0.15) and dead_centre.value == pytest.approx(4.0, abs=0.3)
    (oracle,) = _ffmpeg_silences(layouts, "0:a:0", pan="FC")
    assert _near(dead_centre, *oracle, tolerance_s=0.15), (dead_centre, oracle)
    (inverted,) = _on(defects, "audio:1")
    assert inverted.kind == "phase_inverted" and _near(inverted, 3.0, 7.0, tolerance_s=0.15), inverted
    assert inverted.value is not None and inverted.value < -0.95
    assert _on(defects, "audio:2") == [] and _on(defects, "audio:3") == [], "clean 5.1 and stereo: nothing"
    (silence,) = _on(defects, "audio:4")
    assert silence.kind == "silence" and _near(silence, 2.5, 6.5), "a whole track silent is silence, not channel_silence"


@pytest.mark.integration
def test_a_second_track_through_the_workflow(temporal_server: TemporalServer, task_queue: str, two_languages: Path) -> None:
    request = StreamRequest(
        stream_id=f"tracks-{uuid.uuid4().hex[:8]}", source=str(two_languages), window_seconds=WINDOW_S,
        detectors=AUDIO, options=OPTIONS,
    )
    report = analyse_stream(temporal_server, task_queue, request)
    assert report.status == "completed", report.error
    assert report.media is not None and [a.language for a in report.media.audio_tracks] == ["spa"]
    assert {d.track for d in report.defects} == {"audio:1"}, report.defects
    (silence,) = _on(report.defects, "audio:1", "silence")
    assert _near(silence, 6.3, 9.7) and silence.details["language"] == "spa"
    evidence = Path(silence.details["evidence"])
    assert evidence.name == f"silence_audio_1_{round(silence.start_s * 1000)}.wav"
    with wave.open(io.BytesIO(evidence.read_bytes())) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert pcm.size > 0 and np.abs(pcm).max() < 32767 * 10 ** (-50 / 20), "the Spanish track's silence, not the English"
    # The first track's integrated loudness: the clean English programme, not the Spanish one.
    assert report.loudness_integrated_lufs is not None and -30 < report.loudness_integrated_lufs < -15
