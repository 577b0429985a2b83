"""Clipping on generated audio: clipped stretches at known times, FFmpeg's astats as the sample-count oracle."""

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
from detectors.clipping import ClippingDetector, ClippingOptions
from vqa.contracts import Defect, DefectEvent

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
RATE = 48000


def _run(
    samples: np.ndarray, *, window_s: float, chunk: int = RATE, options: ClippingOptions | None = None
) -> list[DetectorOutput]:
    """Feed windows of `window_s` in chunks, the state passed through JSON between windows as Temporal does."""
    n = samples.shape[1]
    duration = n / RATE
    state: dict = {}
    outputs = []
    start = 0.0
    while start < duration - 1e-9:
        end = min(start + window_s, duration)
        a, b = round(start * RATE), round(end * RATE)
        context = WindowContext(span=WindowSpan(start_s=start, end_s=end, is_last=b >= n))
        detector = ClippingDetector(options=options or ClippingOptions(), state=state, context=context)
        for c in range(a, b, chunk):
            piece = samples[:, c : min(c + chunk, b)]
            detector.feed_audio(AudioChunk(start_s=c / RATE, sample_rate=RATE, samples=piece))
        output = detector.finish()
        outputs.append(output)
        state = json.loads(json.dumps(output.state))
        start = end
    return outputs


def _events(outputs: list[DetectorOutput]) -> list[DefectEvent]:
    return [e for out in outputs for e in out.events]


def _closed(outputs: list[DetectorOutput]) -> list[Defect]:
    return [e.defect for e in _events(outputs) if e.phase == "closed"]


def _clipped_count(outputs: list[DetectorOutput]) -> int:
    return round(sum(out.measures.get("audio_clipped_samples", 0.0) for out in outputs))


def _music(duration_s: float, *, clipped: tuple[float, float] | None = None, drive: float = 4.0) -> np.ndarray:
    """Stereo tones at half scale; over `clipped` they are driven `drive` times into hard clipping."""
    t = np.arange(round(duration_s * RATE)) / RATE
    x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 300 * t + 1.0)])
    if clipped:
        inside = (t >= clipped[0]) & (t < clipped[1])
        x[:, inside] = np.clip(x[:, inside] * drive, -1.0, 1.0)
    return x.astype(np.float32)


@pytest.mark.parametrize(("window_s", "chunk"), [(10.0, RATE), (1.0, RATE), (0.37, 777)])
def test_hard_clipped_stretch_is_found_at_its_times(window_s: float, chunk: int) -> None:
    samples = _music(8.0, clipped=(1.3, 4.55))
    outputs = _run(samples, window_s=window_s, chunk=chunk)
    (defect,) = _closed(outputs)
    assert abs(defect.start_s - 1.3) <= 0.2 and abs(defect.end_s - 4.55) <= 0.2, defect
    # A sample time is clipped when either channel is at (or near) full scale there.
    inside = samples[:, round(1.3 * RATE) : round(4.55 * RATE)]
    near_full_scale = np.abs(inside) >= 10 ** (ClippingOptions().level_db / 20)
    assert defect.value == pytest.approx(near_full_scale.any(axis=0).mean(), abs=0.01)
    assert defect.value > 0.5
    assert {e.id for e in _events(outputs)} == {e.id for e in _events(outputs) if e.phase == "closed"}, (
        "one event across windows: every opened announcement has the closed event's id"
    )


def test_results_do_not_depend_on_window_boundaries() -> None:
    samples = _music(6.0, clipped=(0.95, 2.05))
    from_the_stretch = _clipped_count(_run(samples, window_s=6.0))
    # Runs of exactly 3 full-scale samples (clips) and of 2 (not), many across chunk ends.
    rng = np.random.default_rng(3)
    starts = rng.choice(np.arange(3 * RATE, 6 * RATE - 10, 7), 400, replace=False)
    for start in starts:
        length = 3 if start % 2 else 2
        samples[0, start : start + length] = -1.0
        samples[0, start + length] = 0.0
    whole = _run(samples, window_s=6.0, chunk=6 * RATE)
    assert _clipped_count(whole) == from_the_stretch + 3 * int((starts % 2).sum())
    assert len(_closed(whole)) == 1
    for window_s, chunk in [(1.0, RATE), (0.7, 501), (2.0, 97)]:
        windowed = _run(samples, window_s=window_s, chunk=chunk)
        assert _closed(windowed) == _closed(whole)
        assert _clipped_count(windowed) == _clipped_count(whole)


def test_short_runs_are_counted_only_when_long_enough() -> None:
    x = np.zeros((1, 4000), dtype=np.float32)
    x[0, 1000:1003] = 1.0  # a clip: 3 samples at full scale
    x[0, 2000:2002] = -1.0  # 2 samples: a peak, not a clip
    x[0, 3000:3004] = [1.0, 1.0, -1.0, -1.0]  # full scale, but no 3 of one sign
    for chunk in (4000, 1001, 2):  # the clip split at a chunk end, and split sample by sample
        assert _clipped_count(_run(x, window_s=4000 / RATE, chunk=chunk)) == 3
        assert _clipped_count(_run(x, window_s=1001 / RATE, chunk=chunk)) == 3


def test_loud_unclipped_programme_gives_nothing() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(10 * RATE) / RATE
    x = np.stack([np.sin(2 * np.pi * 55 * t) + 0.5 * rng.standard_normal(t.size) for _ in range(2)])
    x *= 10 ** (-1 / 20) / np.abs(x).max()  # peaks at -1 dBFS
    outputs = _run(x.astype(np.float32), window_s=10.0)
    assert _events(outputs) == []
    assert _clipped_count(outputs) == 0


def test_lone_full_scale_samples_give_nothing() -> None:
    x = _music(5.0)
    x[:, ::100] = 1.0  # 480 isolated full-scale samples a second on both channels
    outputs = _run(x, window_s=5.0)
    assert _events(outputs) == []
    assert _clipped_count(outputs) == 0


def test_clipping_under_the_density_rule_is_not_a_defect() -> None:
    # 0.05 s of clipping every 2 s is under 0.1 s within 1 s; 0.3 s once is over it.
    bursts = _music(10.0)
    for start in (1.0, 3.0, 5.0):
        bursts[:, round(start * RATE) : round((start + 0.05) * RATE)] = np.clip(
            bursts[:, round(start * RATE) : round((start + 0.05) * RATE)] * 4, -1, 1
        )
    outputs = _run(bursts, window_s=10.0)
    assert _clipped_count(outputs) > 0
    assert _closed(outputs) == []
    (defect,) = _closed(_run(_music(10.0, clipped=(7.0, 7.3)), window_s=10.0))
    assert abs(defect.start_s - 7.0) <= 0.2 and abs(defect.end_s - 7.3) <= 0.2


def test_clipping_open_at_stream_end_ends_there() -> None:
    (defect,) = _closed(_run(_music(5.0, clipped=(3.0, 5.0)), window_s=2.0))
    assert defect.start_s == pytest.approx(3.0, abs=0.01)
    assert defect.end_s == pytest.approx(5.0, abs=0.01)


def _astats_peak_count(path: Path) -> list[float]:
    """FFmpeg astats' per-channel "Peak count": samples at the channel's min or max level."""
    log = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostats", "-i", str(path), "-af", "astats", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    per_channel = log[: log.index("Overall")]
    return [float(v) for v in re.findall(r"\] Peak count: ([\d.]+)", per_channel)]


def test_clipped_sample_count_agrees_with_ffmpeg_astats(tmp_path: Path) -> None:
    x = _music(4.0, clipped=(1.0, 2.5)).astype(np.float64)
    x[0, 3 * RATE + 100] = 1.0  # one lone full-scale sample: astats counts it, it is no clip
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
    path = tmp_path / "clipped.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.T.tobytes())
    theirs = _astats_peak_count(path)
    assert len(theirs) == 2 and min(theirs) > 40000

    decoded = (pcm / 32768.0).astype(np.float32)  # as a decoder reads the file: +32767 is just under 1.0
    at_full_scale = ClippingOptions(level_db=-0.01)  # PCM: only the two extreme codes, as astats counts
    ours = _clipped_count(_run(decoded, window_s=1.0, options=at_full_scale))
    assert ours == pytest.approx(sum(theirs) - 1, rel=1e-3)


def _through_aac(path: Path, samples: np.ndarray) -> np.ndarray:
    """Encode to AAC (FFmpeg's encoder, 128 kb/s) and decode back to float, as a stream would arrive."""
    import av

    wav = path.with_suffix(".wav")
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(samples.shape[0])
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.T.tobytes())
    encode = [FFMPEG, "-y", "-loglevel", "error", "-i", str(wav), "-c:a", "aac", "-b:a", "128k", str(path)]
    subprocess.run(encode, check=True)
    with av.open(str(path)) as container:
        decoded = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return np.ascontiguousarray(decoded[:, : samples.shape[1]], dtype=np.float32)  # the decoder drops the priming


def test_clipping_is_found_after_lossy_coding(tmp_path: Path) -> None:
    """AAC turns clipped flat tops into a ripple under full scale; the clip must still be found."""
    decoded = _through_aac(tmp_path / "clipped.m4a", _music(8.0, clipped=(2.0, 5.0)))
    (defect,) = _closed(_run(decoded, window_s=2.0))
    assert abs(defect.start_s - 2.0) <= 0.2 and abs(defect.end_s - 5.0) <= 0.2, defect
    assert _closed(_run(decoded, window_s=2.0, options=ClippingOptions(level_db=-0.01))) == [], (
        "counting only samples at full scale would miss it"
    )


def test_loud_programme_after_lossy_coding_gives_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    t = np.arange(6 * RATE) / RATE
    x = np.stack([np.sin(2 * np.pi * 80 * t) + 0.7 * rng.standard_normal(t.size) for _ in range(2)])
    x *= 10 ** (-1 / 20) / np.abs(x).max()  # peaks at -1 dBFS before coding
    assert _events(_run(_through_aac(tmp_path / "loud.m4a", x), window_s=2.0)) == []


def test_state_between_windows_stays_small() -> None:
    outputs = _run(_music(6.0, clipped=(0.5, 5.5)), window_s=1.0, chunk=999)
    assert max(len(json.dumps(out.state)) for out in outputs) < 4096
