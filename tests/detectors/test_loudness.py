"""Loudness (EBU R128) on generated audio: FFmpeg's ebur128 filter is the oracle for the meter,
level steps at known times are the truth for the events."""

from __future__ import annotations

import json
import re
import subprocess
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from detectors import AudioChunk, WindowContext, WindowSpan
from detectors.base import DetectorOutput
from detectors.loudness import LoudnessDetector, LoudnessOptions, k_weighting
from vqa.contracts import Defect

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
# The requirement is 0.5 LU; the meter holds to FFmpeg's own print resolution (0.1 LU, rounded).
TOLERANCE_LU = 0.1


def _run(
    samples: np.ndarray,
    rate: int,
    *,
    window_s: float,
    chunk: int | None = None,
    options: LoudnessOptions | None = None,
) -> list[tuple[float, float, DetectorOutput]]:
    """Feed windows of `window_s` in chunks, the state passed through JSON between windows as Temporal does."""
    chunk = chunk or rate
    n = samples.shape[1]
    duration = n / rate
    state: dict = {}
    outputs = []
    start = 0.0
    while start < duration - 1e-9:
        end = min(start + window_s, duration)
        a, b = round(start * rate), round(end * rate)
        context = WindowContext(span=WindowSpan(start_s=start, end_s=end, is_last=b >= n))
        detector = LoudnessDetector(options=options or LoudnessOptions(), state=state, context=context)
        for c in range(a, b, chunk):
            piece = samples[:, c : min(c + chunk, b)]
            detector.feed_audio(AudioChunk(start_s=c / rate, sample_rate=rate, samples=piece))
        output = detector.finish()
        outputs.append((start, end, output))
        state = json.loads(json.dumps(output.state))
        start = end
    return outputs


def _closed(outputs: list[tuple[float, float, DetectorOutput]]) -> list[Defect]:
    return [e.defect for _, _, out in outputs for e in out.events if e.phase == "closed"]


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> np.ndarray:
    """Write 16-bit PCM; returns the samples as a decoder would read them back."""
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.T.tobytes())
    return (pcm / 32768.0).astype(np.float32)


def _ebur128(path: Path) -> tuple[np.ndarray, float]:
    """FFmpeg's per-100 ms log (end time, momentary, short-term) and its integrated loudness."""
    log = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=framelog=info", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rows = re.findall(r"t:\s*([\d.]+)\s+TARGET:.*?M:\s*(-?[\d.]+)\s+S:\s*(-?[\d.]+)", log)
    summary = log[log.rindex("Summary:") :]
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))  # type: ignore[union-attr]
    return np.array(rows, dtype=float), integrated


def _tone(
    rate: int, duration_s: float, levels: list[tuple[float, float, float]], base_lufs: float = -23.0
) -> np.ndarray:
    """Stereo 997 Hz tone whose loudness is `base_lufs`, or `lufs` over each (start, end, lufs).

    A 997 Hz sine of peak amplitude A on both channels reads 20*log10(A) LUFS:
    the K-weighting gain there (+0.69 dB) cancels BS.1770's -0.691 offset.
    """
    t = np.arange(round(duration_s * rate)) / rate
    level = np.full(t.size, base_lufs)
    for a, b, lufs in levels:
        level[(t >= a) & (t < b)] = lufs
    amplitude = 10.0 ** (level / 20.0)
    return np.stack([amplitude * np.sin(2 * np.pi * 997 * t), amplitude * np.sin(2 * np.pi * 997 * t + 0.4)]).astype(
        np.float32
    )


def _meter_signal(rate: int, channels: int) -> np.ndarray:
    """20 s of tones and noise with level steps, a slow wobble, digital silence and a quiet part."""
    rng = np.random.default_rng(7)
    t = np.arange(20 * rate) / rate
    gain_db = np.select([t < 6, t < 8, t < 14], [-30.0, -200.0, -12.0], -45.0) + 3.0 * np.sin(2 * np.pi * 0.3 * t)
    gain = 10.0 ** (gain_db / 20.0)
    rows = [
        gain * (0.6 * np.sin(2 * np.pi * (60.0 + 700.0 * c) * t) + 0.2 * rng.standard_normal(t.size))
        for c in range(channels)
    ]
    return np.stack(rows)


@pytest.mark.parametrize(("rate", "channels"), [(48000, 2), (44100, 1), (22050, 2), (48000, 6), (48000, 8)])
def test_meter_agrees_with_ffmpeg_ebur128(tmp_path: Path, rate: int, channels: int) -> None:
    path = tmp_path / "meter.wav"
    samples = _write_wav(path, _meter_signal(rate, channels), rate)
    log, ffmpeg_integrated = _ebur128(path)
    outputs = _run(samples, rate, window_s=1.0, chunk=rate // 3)

    compared = 0
    for start, end, out in outputs:
        theirs = log[(log[:, 0] >= start) & (log[:, 0] < end)]
        m = out.measures
        if theirs[:, 1].max() > -70:
            assert m["loudness_momentary_max_lufs"] == pytest.approx(theirs[:, 1].max(), abs=TOLERANCE_LU)
        short = theirs[:, 2][theirs[:, 2] > -70]
        if "loudness_shortterm_max_lufs" in m and short.size == len(theirs):
            assert m["loudness_shortterm_max_lufs"] == pytest.approx(short.max(), abs=TOLERANCE_LU), start
            assert m["loudness_shortterm_min_lufs"] == pytest.approx(short.min(), abs=TOLERANCE_LU), start
            compared += 1
    assert compared >= 12, "most windows have short-term figures to compare"
    # Silence and the quiet part are gated out: the programme reads about -20, not the plain mean.
    assert outputs[-1][2].measures["loudness_integrated_lufs"] == pytest.approx(ffmpeg_integrated, abs=TOLERANCE_LU)


def test_k_weighting_at_48k_is_the_bs1770_table() -> None:
    (shelf_b, shelf_a), (highpass_b, highpass_a) = k_weighting(48000)
    assert shelf_b == pytest.approx((1.53512485958697, -2.69169618940638, 1.19839281085285), abs=1e-12)
    assert shelf_a == pytest.approx((1.0, -1.69065929318241, 0.73248077421585), abs=1e-12)
    assert highpass_b == (1.0, -2.0, 1.0)
    assert highpass_a == pytest.approx((1.0, -1.99004745483398, 0.99007225036621), abs=1e-12)


def _assert_near(defect: Defect, start_s: float, end_s: float, *, tolerance_s: float = 0.5) -> None:
    assert abs(defect.start_s - start_s) <= tolerance_s and abs(defect.end_s - end_s) <= tolerance_s, defect


@pytest.mark.parametrize("window_s", [10.0, 3.3])
def test_too_loud_and_too_quiet_stretches_are_found_at_their_times(window_s: float) -> None:
    rate = 16000
    samples = _tone(rate, 75.0, [(12.0, 30.0, -5.0), (40.0, 58.0, -50.0), (62.0, 68.0, -5.0)])
    defects = _closed(_run(samples, rate, window_s=window_s))
    assert len(defects) == 2, "the 6 s loud stretch is under the 10 s rule"
    loud, quiet = defects
    _assert_near(loud, 12.0, 30.0)
    assert loud.value == pytest.approx(-5.0, abs=1.0)
    assert loud.details["direction"] == "above"
    _assert_near(quiet, 40.0, 58.0)
    assert quiet.value == pytest.approx(-50.0, abs=1.0)
    assert quiet.details["direction"] == "below"


def test_a_step_to_just_over_the_limit_is_placed_at_the_step() -> None:
    """The limit near the loud side of a step is where a 3 s average alone errs most."""
    rate = 16000
    samples = _tone(rate, 40.0, [(10.0, 25.0, -9.0)], base_lufs=-30.0)
    (defect,) = _closed(_run(samples, rate, window_s=10.0))
    _assert_near(defect, 10.0, 25.0)


def test_results_do_not_depend_on_window_boundaries() -> None:
    rate = 16000
    samples = _tone(rate, 50.0, [(9.95, 31.0, -6.0), (35.0, 50.0, -47.0)])
    whole = _run(samples, rate, window_s=50.0)
    for window_s, chunk in [(10.0, rate), (3.7, 777)]:
        windowed = _run(samples, rate, window_s=window_s, chunk=chunk)
        assert _closed(windowed) == _closed(whole)
        assert windowed[-1][2].measures["loudness_integrated_lufs"] == pytest.approx(
            whole[-1][2].measures["loudness_integrated_lufs"], abs=1e-9
        )
    loud, quiet = _closed(whole)
    _assert_near(loud, 9.95, 31.0)
    assert quiet.end_s == 50.0, "an event open when the stream ends ends with the stream"


def test_a_gap_in_the_samples_restarts_the_meter() -> None:
    """A live stream that loses 8 s: nothing measured across the hole, a loud return found where it begins."""
    rate = 16000
    before = _tone(rate, 10.0, [])
    after = _tone(rate, 15.0, [], base_lufs=-5.0)
    state: dict = {}
    events = []
    for start, end, samples in [(0.0, 10.0, before), (10.0, 18.0, None), (18.0, 33.0, after)]:
        context = WindowContext(span=WindowSpan(start_s=start, end_s=end, is_last=end == 33.0))
        detector = LoudnessDetector(options=LoudnessOptions(), state=state, context=context)
        if samples is not None:
            offset = 2.0 if start == 18.0 else 0.0  # the audio comes back at 20 s
            for c in range(0, samples.shape[1], rate):
                piece = samples[:, c : c + rate]
                detector.feed_audio(AudioChunk(start_s=start + offset + c / rate, sample_rate=rate, samples=piece))
        out = detector.finish()
        events += out.events
        state = out.state
    (loud,) = [e.defect for e in events if e.phase == "closed"]
    assert (loud.start_s, loud.end_s) == (20.0, 33.0)


def test_state_between_windows_stays_small() -> None:
    rate = 16000
    outputs = _run(_meter_signal(rate, 2), rate, window_s=10.0)
    assert max(len(json.dumps(out.state)) for _, _, out in outputs) < 4096


def _programme(rate: int, duration_s: float, seed: int) -> np.ndarray:
    """Speech-like stereo programme: syllables at 4 Hz, phrase pauses, a quiet and a loud passage."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * rate)
    t = np.arange(n) / rate
    spectrum = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    spectrum /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / rate), 50.0))  # pinkish
    voice = np.fft.irfft(spectrum, n, axis=1)
    syllables = np.repeat(rng.uniform(0.2, 1.0, int(duration_s * 4) + 1), rate // 4)[:n]
    phrases = np.repeat(rng.random(int(duration_s / 2) + 1) > 0.25, rate * 2)[:n]  # about a quarter are pauses
    passage_db = np.select([(t >= 20) & (t < 32), (t >= 40) & (t < 52)], [-6.0, 4.0], 0.0)
    envelope = syllables * np.where(phrases, 1.0, 0.03) * 10.0 ** (passage_db / 20.0)
    x = voice * envelope
    return x / np.abs(x).max()


@pytest.mark.parametrize("target_lufs", [-16.0, -23.0, -30.0])
def test_a_normal_programme_is_not_flagged(tmp_path: Path, target_lufs: float) -> None:
    rate = 16000
    raw = _programme(rate, 60.0, seed=int(-target_lufs))
    measured = _run(raw.astype(np.float32), rate, window_s=60.0)[-1][2].measures["loudness_integrated_lufs"]
    path = tmp_path / "programme.wav"
    samples = _write_wav(path, raw * 10.0 ** ((target_lufs - measured) / 20.0), rate)
    log, ffmpeg_integrated = _ebur128(path)
    assert ffmpeg_integrated == pytest.approx(target_lufs, abs=1.0), "the programme is at the level it claims"
    short = log[:, 2][log[:, 0] >= 3.0]
    assert short.max() - short.min() > 8.0, "its short-term loudness moves like a programme's"

    outputs = _run(samples, rate, window_s=10.0)
    assert [e for _, _, out in outputs for e in out.events] == []
    assert outputs[-1][2].measures["loudness_integrated_lufs"] == pytest.approx(ffmpeg_integrated, abs=TOLERANCE_LU)


def test_near_silence_is_left_to_the_silence_detector() -> None:
    rate = 16000
    samples = _tone(rate, 45.0, [(10.0, 25.0, -200.0), (25.0, 40.0, -65.0)])
    assert _closed(_run(samples, rate, window_s=10.0)) == []
    # The same -65 LUFS stretch is too quiet when near-silence is not set aside.
    options = LoudnessOptions(ignore_below_lufs=-70.0)
    (quiet,) = _closed(_run(samples, rate, window_s=10.0, options=options))
    _assert_near(quiet, 25.0, 40.0)


def test_limits_must_be_in_order() -> None:
    with pytest.raises(ValueError, match="min_lufs"):
        LoudnessOptions(min_lufs=-8.0, max_lufs=-10.0)
