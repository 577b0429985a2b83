"""Broken streams are defects, not crashes: corrupt packets and tracks that stop delivering."""

from __future__ import annotations

from pathlib import Path

import av

from activities.decode import probe

from . import media
from .local import analyse_file


def test_a_corrupt_packet_is_a_decode_error_and_the_rest_is_analysed(clips: media.ClipFactory, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    t = media.corrupt_video_packet(clips("main"), broken, at_s=22.0)
    defects = analyse_file(broken, window_s=4.0)
    errors = [d for d in defects if d.kind == "decode_error"]
    assert len(errors) == 1 and errors[0].track == "video"
    assert abs(errors[0].start_s - t) <= 0.2 and errors[0].value is not None and errors[0].value >= 1
    # Everything else is still found where it was injected.
    others = [d for d in defects if d.kind != "decode_error"]
    assert media.match(others, media.MAIN_TRUTH) == []


def test_clean_streams_have_no_decode_errors_or_signal_loss(clips: media.ClipFactory) -> None:
    for name in ("main", "boundary", "audio_only", "video_only"):
        kinds = {d.kind for d in analyse_file(clips(name), window_s=5.0)}
        assert not kinds & {"decode_error", "signal_loss"}, name


def test_a_track_that_stops_delivering_is_signal_loss(clips: media.ClipFactory) -> None:
    path = clips("gaps")
    with av.open(str(path)) as c:
        assert len(list(c.decode(video=0))) < 14 * 25, "the clip really lacks frames"
    for window_s in (4.0, 10.0):
        defects = analyse_file(path, window_s=window_s, detectors=["signal_loss"])
        assert media.match(defects, media.GAPS_TRUTH, tolerance_s=0.1) == []
        assert [d.track for d in defects] == ["video", "audio", "video"]
        assert all(abs(d.value - d.duration_s) < 1e-6 for d in defects if d.value is not None)
    assert probe(str(path)).duration_s == 14.0
