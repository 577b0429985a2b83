"""Black, freeze and silence on synthetic arrays, fed window by window as the activity does."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import REGISTRY, AudioChunk, VideoChunk, WindowContext, WindowSpan
from detectors.base import DetectorOptions
from vqa.contracts import DefectEvent

FPS = 25
RATE = 8000


def _picture(t: float, h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.clip(128 + 60 * np.sin((x + 40 * t) / 5.0) * np.cos((y - 20 * t) / 7.0), 16, 235).astype(np.uint8)


def _video(duration_s: float, *, black=(), frozen=(), refresh_every_s: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    times = np.arange(round(duration_s * FPS)) / FPS
    frames = []
    keys = np.zeros(len(times), dtype=bool)
    for i, t in enumerate(times):
        if any(a <= t < b for a, b in black):
            frames.append(np.full((48, 64), 16, np.uint8))
            continue
        held = next((a for a, b in frozen if a <= t < b), None)
        frame = _picture(held if held is not None else t)
        if held is not None and refresh_every_s:
            # An encoder refresh: at each keyframe the held picture is re-quantised slightly.
            k = int((t - held) // refresh_every_s)
            if k and abs((t - held) - k * refresh_every_s) < 1e-9:
                keys[i] = True
            frame = np.clip(frame.astype(np.int16) + (k % 3) - 1, 0, 255).astype(np.uint8)
        frames.append(frame)
    return times, np.stack(frames), keys


def _run_video(name: str, times, luma, keys, *, window_s: float, options: DetectorOptions | None = None, with_previous: bool = True) -> list[DefectEvent]:  # type: ignore[no-untyped-def]
    """Feed frames in windows of `window_s` (chunks of 7 frames) with state carried between windows."""
    cls = REGISTRY[name]
    duration = len(times) / FPS
    state: dict = {}
    events: list[DefectEvent] = []
    previous = None
    start = 0.0
    while start < duration - 1e-9:
        end = min(start + window_s, duration)
        sel = np.flatnonzero((times >= start - 1e-9) & (times < end - 1e-9))
        ctx = WindowContext(span=WindowSpan(start_s=start, end_s=end, is_last=end >= duration - 1e-9))
        if previous is not None and with_previous:
            ctx.previous_luma, ctx.previous_time_s = luma[previous], float(times[previous])
        det = cls(options=options or cls.Options(), state=state, context=ctx)
        for c in range(0, len(sel), 7):
            idx = sel[c : c + 7]
            det.feed_video(VideoChunk(times=times[idx], luma=luma[idx], keyframe=keys[idx]))
        out = det.finish()
        events += out.events
        state = out.state
        previous = sel[-1]
        start = end
    return events


def _closed(events: list[DefectEvent]) -> list[tuple[float, float]]:
    return [(e.defect.start_s, e.defect.end_s) for e in events if e.phase == "closed"]


@pytest.mark.parametrize("window_s", [1.0, 2.4, 3.0, 10.0])
def test_black_found_wherever_windows_fall(window_s: float) -> None:
    times, luma, keys = _video(12.0, black=[(2.0, 5.0), (7.0, 8.5)])
    events = _run_video("black", times, luma, keys, window_s=window_s)
    assert _closed(events) == [(2.0, 5.0)], "the 1.5 s stretch is under the 2 s rule"
    closed = [e for e in events if e.phase == "closed"][0]
    assert closed.defect.value == pytest.approx(1.0)


def test_black_open_at_stream_end_ends_with_the_stream() -> None:
    times, luma, keys = _video(6.0, black=[(4.0, 6.0)])
    assert _closed(_run_video("black", times, luma, keys, window_s=2.5)) == [(4.0, 6.0)]


def test_black_respects_the_picture_ratio() -> None:
    times, luma, keys = _video(5.0, black=[(0.0, 5.0)])
    luma = luma.copy()
    luma[:, :8, :] = 200  # 12.5% of every picture is bright: not a black picture
    assert _closed(_run_video("black", times, luma, keys, window_s=5.0)) == []


def test_long_event_is_announced_once_then_closed_with_the_same_id() -> None:
    times, luma, keys = _video(12.0, black=[(1.0, 9.0)])
    events = _run_video("black", times, luma, keys, window_s=3.0)
    assert [e.phase for e in events] == ["opened", "closed"]
    assert events[0].id == events[1].id
    assert events[1].defect.start_s == 1.0 and events[1].defect.end_s == 9.0


@pytest.mark.parametrize("window_s", [1.0, 3.0, 4.0, 10.0])
def test_freeze_with_encoder_refresh_is_one_event(window_s: float) -> None:
    times, luma, keys = _video(14.0, frozen=[(2.0, 11.0)], refresh_every_s=1.0)
    assert _closed(_run_video("freeze", times, luma, keys, window_s=window_s)) == [(2.0, 11.0)]


def test_freeze_splits_at_refresh_when_refresh_tolerance_is_off() -> None:
    # FFmpeg's behaviour (no refresh tolerance): the freeze breaks at each keyframe.
    times, luma, keys = _video(8.0, frozen=[(1.0, 7.0)], refresh_every_s=1.0)
    strict = REGISTRY["freeze"].Options(refresh_max_mafd=0.0)
    assert _closed(_run_video("freeze", times, luma, keys, window_s=8.0, options=strict)) == []


def test_freeze_that_begins_exactly_on_a_window_boundary() -> None:
    times, luma, keys = _video(10.0, frozen=[(4.0, 7.0)])
    assert _closed(_run_video("freeze", times, luma, keys, window_s=4.0)) == [(4.0, 7.0)]


def test_freeze_across_windows_that_start_on_keyframes() -> None:
    """No frame before the window is decoded then: the held picture's thumbnail carries the freeze."""
    times, luma, keys = _video(12.0, frozen=[(2.0, 9.0)], refresh_every_s=1.0)
    assert _closed(_run_video("freeze", times, luma, keys, window_s=3.0, with_previous=False)) == [(2.0, 9.0)]


def test_picture_change_on_a_keyframe_window_start_ends_the_freeze() -> None:
    times, luma, keys = _video(12.0, frozen=[(1.0, 6.0), (6.0, 11.0)])
    assert _closed(_run_video("freeze", times, luma, keys, window_s=3.0, with_previous=False)) == [(1.0, 6.0), (6.0, 11.0)]


def test_short_freeze_and_moving_picture_are_not_reported() -> None:
    times, luma, keys = _video(8.0, frozen=[(2.0, 3.9)])
    assert _closed(_run_video("freeze", times, luma, keys, window_s=3.0)) == []


def test_black_stretch_is_not_also_a_freeze() -> None:
    times, luma, keys = _video(10.0, black=[(2.0, 6.0)])
    assert _closed(_run_video("freeze", times, luma, keys, window_s=3.0)) == []
    assert _closed(_run_video("black", times, luma, keys, window_s=3.0)) == [(2.0, 6.0)]


def test_a_moving_object_in_a_still_scene_ends_the_freeze() -> None:
    times, luma, keys = _video(8.0, frozen=[(1.0, 8.0)])
    luma = luma.copy()
    after = times >= 5.0
    luma[after, 10:20, 10:20] = 250  # something appears at 5 s
    assert _closed(_run_video("freeze", times, luma, keys, window_s=3.0)) == [(1.0, 5.0), (5.0, 8.0)]


def _run_audio(samples: np.ndarray, *, window_s: float, block: int = 1000) -> list[DefectEvent]:
    cls = REGISTRY["silence"]
    n = samples.shape[1]
    duration = n / RATE
    state: dict = {}
    events: list[DefectEvent] = []
    start = 0.0
    while start < duration - 1e-9:
        end = min(start + window_s, duration)
        a, b = round(start * RATE), round(end * RATE)
        ctx = WindowContext(span=WindowSpan(start_s=start, end_s=end, is_last=b >= n))
        det = cls(options=cls.Options(), state=state, context=ctx)
        for c in range(a, b, block):
            det.feed_audio(AudioChunk(start_s=c / RATE, sample_rate=RATE, samples=samples[:, c : min(c + block, b)]))
        out = det.finish()
        events += out.events
        state = out.state
        start = end
    return events


def _tone(duration_s: float, *, silent=(), one_channel_only=()) -> np.ndarray:  # type: ignore[no-untyped-def]
    t = np.arange(round(duration_s * RATE)) / RATE
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    for a, b in silent:
        x[:, (t >= a) & (t < b)] = 1e-5
    for a, b in one_channel_only:
        x[0, (t >= a) & (t < b)] = 0.0
    return x


@pytest.mark.parametrize("window_s", [0.7, 2.0, 5.0])
def test_silence_found_wherever_windows_fall(window_s: float) -> None:
    samples = _tone(10.0, silent=[(1.5, 4.25), (6.0, 7.5)])
    events = _run_audio(samples, window_s=window_s)
    closed = [e.defect for e in events if e.phase == "closed"]
    # A sample on a zero crossing of both tones may extend the stretch by one sample.
    assert [(d.start_s, d.end_s) for d in closed] == [(1.5, pytest.approx(4.25, abs=2 / RATE))]
    assert closed[0].value == pytest.approx(-100.0, abs=0.5)  # peak level of the stretch, dBFS


def test_silence_needs_every_channel_silent() -> None:
    samples = _tone(6.0, one_channel_only=[(1.0, 5.0)])
    assert [e for e in _run_audio(samples, window_s=2.0) if e.phase == "closed"] == []


def test_silence_open_at_stream_end() -> None:
    samples = _tone(6.0, silent=[(3.0, 6.0)])
    closed = [e.defect for e in _run_audio(samples, window_s=2.5) if e.phase == "closed"]
    assert [(d.start_s, d.end_s) for d in closed] == [(3.0, 6.0)]


def test_options_are_validated_with_units_in_their_names() -> None:
    from detectors import parse_options

    parsed = parse_options({"black": {"min_duration_s": 3}})
    assert parsed["black"].min_duration_s == 3.0
    with pytest.raises(ValueError, match="freeze"):
        parse_options({"freeze": {"noise_db": 5}})
    with pytest.raises(ValueError, match="unknown detector"):
        parse_options({"sparkle": {}})


def test_default_options_are_the_contract_rules() -> None:
    """CONTRACT.md, Defect kinds: the default rule of black, freeze and silence."""
    from detectors.black import BlackOptions
    from detectors.freeze import FreezeOptions
    from detectors.silence import SilenceOptions

    black, freeze, silence = BlackOptions(), FreezeOptions(), SilenceOptions()
    # black: >= 98% of pixels at or below 10% luma for >= 2.0 s
    assert (black.picture_ratio, black.pixel_threshold, black.min_duration_s) == (0.98, 0.10, 2.0)
    # freeze: unchanged for >= 2.0 s; a black stretch is black, not also freeze (judged by black's own rule)
    assert freeze.min_duration_s == 2.0 and freeze.ignore_black is True
    assert (freeze.black_picture_ratio, freeze.black_pixel_threshold) == (black.picture_ratio, black.pixel_threshold)
    # silence: every channel below -60 dBFS for >= 2.0 s
    assert (silence.noise_db, silence.min_duration_s) == (-60.0, 2.0)
