"""channel_silence and phase_inverted on synthetic samples: the rule, its thresholds, carried
state across windows, and self-contained windows' runs at their edges (RunEdge)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from detectors import AudioChunk, WindowContext, WindowSpan
from detectors.base import Detector
from detectors.blocks import BlockCutter
from detectors.channel_silence import ChannelSilenceDetector, ChannelSilenceOptions
from detectors.phase_inverted import PhaseInvertedDetector, PhaseInvertedOptions
from vqa.contracts import Defect, StreamProgress, MediaInfo, WindowMetrics, WindowResult
from vqa.stitch import apply_window, report_defects, stitch_window

RATE = 8000
SURROUND = ("FL", "FR", "FC", "LFE", "BL", "BR")


def _tones(channels: int, t: np.ndarray) -> np.ndarray:
    return np.asarray([0.3 * np.sin(2 * np.pi * (180 + 37 * c) * t) for c in range(channels)], dtype=np.float32)


def _sound(duration_s: float, channels: int, *, silent: dict[int, tuple[float, float]] | None = None,
           inverted: tuple[float, float] | None = None, same: bool = False) -> np.ndarray:
    t = np.arange(round(duration_s * RATE)) / RATE
    samples = np.repeat(_tones(1, t), channels, axis=0) if same else _tones(channels, t)
    for c, (a, b) in (silent or {}).items():
        samples[c, (t >= a) & (t < b)] = 0.0
    if inverted is not None:
        samples[1, (t >= inverted[0]) & (t < inverted[1])] *= -1
    return samples


def _analyse(cls: type[Detector[Any, Any]], samples: np.ndarray, names: tuple[str, ...], *, windows: list[float],
             self_contained: bool = False, options: dict[str, Any] | None = None) -> list[Defect]:
    """The detector over `samples` cut into windows at `windows` (their starts, s), in chunks of 0.37 s,
    with state carried (or self-contained and stitched): the stream's defects."""
    duration = samples.shape[1] / RATE
    edges = [*windows, duration]
    progress = StreamProgress(media=MediaInfo(duration_s=duration))
    state: dict[str, Any] | None = None
    for i, (start, end) in enumerate(zip(edges, edges[1:])):
        last = i == len(windows) - 1
        context = WindowContext(span=WindowSpan(start, end, last), self_contained=self_contained)
        detector = cls(options=cls.Options.model_validate(options or {}), state=state, context=context)
        a, b = round(start * RATE), round(end * RATE)
        for c in range(a, b, round(0.37 * RATE)):
            part = samples[:, c : min(b, c + round(0.37 * RATE))]
            detector.feed_audio(AudioChunk(start_s=c / RATE, sample_rate=RATE, samples=part, channels=names))
        out = detector.finish()
        state = None if self_contained else out.state
        result = WindowResult(index=i, start_s=start, end_s=end, is_last=last, events=out.events, edges=out.edges,
                              metrics=WindowMetrics(audio_samples=b - a))
        apply_window(progress, stitch_window(progress, result) if self_contained else result)
    return report_defects(progress, position_s=duration)


@pytest.mark.parametrize("self_contained", [False, True], ids=["in-a-row", "self-contained"])
def test_a_dead_centre_is_one_defect_across_windows(self_contained: bool) -> None:
    samples = _sound(12.0, 6, silent={2: (5.0, 9.0)})
    (defect,) = _analyse(ChannelSilenceDetector, samples, SURROUND, windows=[0.0, 4.0, 7.3], self_contained=self_contained)
    assert (defect.kind, defect.track, defect.details["channels"]) == ("channel_silence", "audio", ["FC"])
    assert defect.start_s == pytest.approx(5.0, abs=0.1) and defect.end_s == pytest.approx(9.0, abs=0.1)
    assert defect.value == pytest.approx(4.0, abs=0.1)


def test_channel_silence_negative_controls_and_options() -> None:
    windows = [0.0, 4.0]
    assert _analyse(ChannelSilenceDetector, _sound(8.0, 6), SURROUND, windows=windows) == []
    whole = _sound(8.0, 2, silent={0: (2.0, 6.0), 1: (2.0, 6.0)})
    assert _analyse(ChannelSilenceDetector, whole, ("FL", "FR"), windows=windows) == [], "a silent track is silence"
    short = _sound(8.0, 2, silent={1: (2.0, 3.8)})
    assert _analyse(ChannelSilenceDetector, short, ("FL", "FR"), windows=windows) == [], "under 2 s"
    lfe = _sound(8.0, 6, silent={3: (0.0, 8.0)})
    assert _analyse(ChannelSilenceDetector, lfe, SURROUND, windows=windows) == [], "a silent LFE is normal"
    (judged,) = _analyse(ChannelSilenceDetector, lfe, SURROUND, windows=windows, options={"ignore_channels": []})
    assert judged.details["channels"] == ["LFE"] and judged.start_s == 0.0 and judged.end_s == 8.0
    quiet = _sound(8.0, 2) * np.array([[1.0], [10 ** (-55 / 20)]], dtype=np.float32)  # -65 dBFS peak on FR
    (low,) = _analyse(ChannelSilenceDetector, quiet, ("FL", "FR"), windows=windows)
    assert low.details["channels"] == ["FR"]
    assert _analyse(ChannelSilenceDetector, quiet, ("FL", "FR"), windows=windows, options={"noise_db": -70}) == []


def test_the_channels_are_those_silent_where_the_stretch_began() -> None:
    samples = _sound(10.0, 2, silent={0: (1.0, 4.0), 1: (6.0, 9.0)})
    defects = _analyse(ChannelSilenceDetector, samples, ("FL", "FR"), windows=[0.0, 5.0])
    assert [(d.details["channels"], round(d.start_s, 1), round(d.end_s, 1)) for d in defects] == [
        (["FL"], 1.0, 4.0), (["FR"], 6.0, 9.0)
    ]


@pytest.mark.parametrize("self_contained", [False, True], ids=["in-a-row", "self-contained"])
def test_an_inverted_side_is_phase_inverted_across_windows(self_contained: bool) -> None:
    samples = _sound(10.0, 2, same=True, inverted=(3.0, 7.0))
    (defect,) = _analyse(PhaseInvertedDetector, samples, ("FL", "FR"), windows=[0.0, 4.0, 6.1], self_contained=self_contained)
    assert (defect.kind, defect.track) == ("phase_inverted", "audio")
    assert defect.start_s == pytest.approx(3.0, abs=0.1) and defect.end_s == pytest.approx(7.0, abs=0.1)
    assert defect.value == pytest.approx(-1.0, abs=0.01)


def test_phase_inverted_negative_controls_and_options() -> None:
    windows = [0.0, 4.0]
    assert _analyse(PhaseInvertedDetector, _sound(8.0, 2, same=True), ("FL", "FR"), windows=windows) == []
    assert _analyse(PhaseInvertedDetector, _sound(8.0, 2), ("FL", "FR"), windows=windows) == [], "unrelated sides"
    inverted = _sound(8.0, 2, same=True, inverted=(0.0, 8.0))
    assert _analyse(PhaseInvertedDetector, inverted[:1], ("FC",), windows=windows) == [], "mono: no pair"
    assert len(_analyse(PhaseInvertedDetector, inverted, (), windows=windows)) == 1, "two channels without names"
    quiet = inverted * np.float32(10 ** (-50 / 20))  # about -63 dBFS RMS: too quiet to judge
    assert _analyse(PhaseInvertedDetector, quiet, ("FL", "FR"), windows=windows) == []
    assert len(_analyse(PhaseInvertedDetector, quiet, ("FL", "FR"), windows=windows, options={"min_level_db": -70})) == 1
    partly = inverted.copy()
    partly[1] = -0.8 * inverted[0] + 0.6 * np.roll(inverted[0], 37)  # correlation about -0.8: not antiphase
    assert _analyse(PhaseInvertedDetector, partly, ("FL", "FR"), windows=windows) == []
    assert len(_analyse(PhaseInvertedDetector, partly, ("FL", "FR"), windows=windows, options={"max_correlation": -0.5})) == 1
    surround = np.concatenate([inverted, _sound(8.0, 4)])
    assert len(_analyse(PhaseInvertedDetector, surround, SURROUND, windows=windows)) == 1, "the front pair of 5.1"


def test_blocks_lie_on_the_stream_grid_whatever_the_chunks() -> None:
    samples = _sound(2.0, 2)
    starts: list[float] = []
    cutter = BlockCutter(0.1)
    for c in range(round(0.33 * RATE), samples.shape[1], 1234):
        for part in (samples[:, c : c + 1234], samples[:, :0]):  # an empty chunk changes nothing
            chunk = AudioChunk(start_s=c / RATE, sample_rate=RATE, samples=part)
            starts += [t for blocks in cutter.add(chunk) for t in blocks.times.tolist()]
    starts += [t for blocks in cutter.flush() for t in blocks.times.tolist()]
    assert starts == pytest.approx([0.33] + [round(0.4 + 0.1 * i, 1) for i in range(16)])


def test_option_tables_reject_what_makes_no_sense() -> None:
    with pytest.raises(ValueError):
        ChannelSilenceOptions.model_validate({"noise_db": 3})
    with pytest.raises(ValueError):
        PhaseInvertedOptions.model_validate({"max_correlation": 0.5})
