"""Window analysis on encoded clips (decode + detectors, no Temporal): found at the injected times."""

from __future__ import annotations

import math

import av
import pytest

from activities.decode import decode_window, probe
from activities.window import analyze_window
from vqa.contracts import WindowRequest

from . import media
from .local import analyse_file


@pytest.mark.parametrize("window_s", [10.0, 4.0, 3.3])
def test_main_clip_matches_truth(clips: media.ClipFactory, window_s: float) -> None:
    defects = analyse_file(clips("main"), window_s=window_s)
    assert media.match(defects, media.MAIN_TRUTH) == []


def test_events_beginning_exactly_on_window_boundaries(clips: media.ClipFactory) -> None:
    defects = analyse_file(clips("boundary"), window_s=5.0)
    assert media.match(defects, media.BOUNDARY_TRUTH) == []


def test_clean_programme_has_no_defects(clips: media.ClipFactory) -> None:
    assert analyse_file(clips("clean"), window_s=5.0) == []


def test_audio_only_and_video_only_are_analysed_for_what_they_have(clips: media.ClipFactory) -> None:
    audio = analyse_file(clips("audio_only"), window_s=5.0)
    assert media.match(audio, [media.Expected("silence", 2.0, 5.0)]) == []
    video = analyse_file(clips("video_only"), window_s=5.0)
    assert media.match(video, [media.Expected("black", 1.0, 4.0)]) == []


def test_detector_selection_runs_only_those(clips: media.ClipFactory) -> None:
    defects = analyse_file(clips("main"), window_s=10.0, detectors=["silence"])
    assert {d.kind for d in defects} == {"silence"}


def test_options_change_the_rule(clips: media.ClipFactory) -> None:
    defects = analyse_file(clips("main"), window_s=10.0, options={"black": {"min_duration_s": 1.0}})
    blacks = sorted((d.start_s, d.end_s) for d in defects if d.kind == "black")
    assert len(blacks) == 3, "the 1.5 s black stretch counts once the rule is 1 s"


def test_windows_decode_every_frame_and_sample_exactly_once(clips: media.ClipFactory) -> None:
    path = clips("main")
    info = probe(str(path))
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    window_s = 3.3
    total = math.ceil(info.duration_s / window_s)
    seen_frames = seen_samples = 0
    for i in range(total):
        result = analyze_window(
            WindowRequest(
                stream_id="t", source=str(path), index=i, start_s=i * window_s,
                end_s=min((i + 1) * window_s, info.duration_s), is_last=i == total - 1,
                media=info, detectors=[],
            )
        )
        seen_frames += result.metrics.video_frames
        seen_samples += result.metrics.audio_samples
    assert seen_frames == frames
    # AAC's decoded length may run past the container duration by part of a frame.
    assert abs(seen_samples - round(info.duration_s * 48000)) <= 1024
    assert seen_samples <= samples


@pytest.mark.parametrize(("start_s", "first_s", "most_skipped"), [(20.0, 20.0, 0), (20.5, 21.0, 25)], ids=["on-keyframe", "mid-gop"])
def test_a_late_window_starts_on_its_keyframe_and_decodes_nothing_before(
    clips: media.ClipFactory, start_s: float, first_s: float, most_skipped: int
) -> None:
    """A window seeks to the keyframe before its start and skips, undecoded, the packets up to its
    first keyframe at or after it (the main clip has one a second): at most one GOP read, none
    decoded and thrown away, not the stream from 0 s."""
    path = clips("main")
    info = probe(str(path))
    chunks, report = decode_window(str(path), info, start_s=start_s, end_s=24.0)
    for _ in chunks:
        pass
    assert report.start_s == first_s and report.span_end_s == 24.0
    assert report.video_frames == (24 - first_s) * 25, "every frame of the window, once"
    assert report.video_frames_dropped == 0
    assert report.video_packets_skipped <= most_skipped, report.video_packets_skipped


def test_window_result_is_small(clips: media.ClipFactory) -> None:
    path = clips("main")
    info = probe(str(path))
    result = analyze_window(
        WindowRequest(stream_id="t", source=str(path), index=0, start_s=0, end_s=10, is_last=False, media=info, detectors=[])
    )
    assert len(result.model_dump_json()) < 16 * 1024


def test_probe_reports_the_tracks(clips: media.ClipFactory) -> None:
    info = probe(str(clips("main")))
    assert info.duration_s == pytest.approx(32.0, abs=0.05)
    assert info.video is not None and (info.video.codec, info.video.width, info.video.height) == ("h264", 320, 240)
    assert info.video.fps == pytest.approx(25.0)
    assert info.audio is not None and (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", 48000, 2)
