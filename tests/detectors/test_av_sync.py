"""Audio/video sync on synthetic arrays, fed window by window (both tracks interleaved) as the activity does."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from detectors import AudioChunk, VideoChunk, WindowContext, WindowSpan
from detectors.av_sync import AvSyncDetector, AvSyncOptions
from vqa.contracts import Defect

FPS = 25
H, W = 48, 64


@dataclass
class Media:
    times: np.ndarray  # video frame times
    luma: np.ndarray  # (frames, H, W) uint8
    rate: int
    audio: np.ndarray  # (channels, samples) float32
    audio_start_s: float = 0.0


def _flash_and_beep(
    duration_s: float, delay_ms, *, rate: int = 48000, period_s: float = 1.0, fps: int = FPS  # type: ignore[no-untyped-def]
) -> Media:
    """A white frame and a 1 kHz burst once per `period_s`; `delay_ms(flash_s)` (or a number) shifts the burst."""
    delay = delay_ms if callable(delay_ms) else (lambda _t: delay_ms)
    frames = round(duration_s * fps)
    times = np.arange(frames) / fps
    luma = np.full((frames, H, W), 40, dtype=np.uint8)
    for i in range(frames):
        x = (3 * i) % (W - 8)
        luma[i, 20:28, x : x + 8] = 110  # something moves, as on a real test pattern
    flashes = np.arange(0.0, duration_s - 1e-9, period_s)
    luma[np.round(flashes * fps).astype(int)] = 235
    rng = np.random.default_rng(5)
    total = round(duration_s * rate)
    audio = rng.normal(0, 1e-4, total)
    burst = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(round(0.06 * rate)) / rate)
    for f in flashes:
        start = round((f + delay(f) / 1000.0) * rate)
        if 0 <= start and start + burst.size <= total:
            audio[start : start + burst.size] += burst
    return Media(times, luma, rate, np.repeat(audio[None], 2, axis=0).astype(np.float32))


def _cuts_and_hits(duration_s: float, delay_ms: float, *, seed: int = 1, related: bool = True) -> Media:
    """Programme-like: cuts between textures at irregular times, a hit in the sound at each (shifted by the delay).

    `related=False` puts the hits at times of their own, unrelated to the cuts.
    """
    rng = np.random.default_rng(seed)
    rate = 16000
    frames = round(duration_s * FPS)
    times = np.arange(frames) / FPS
    cuts = np.cumsum(rng.uniform(0.5, 1.4, size=int(duration_s * 2)))
    cuts = np.round(cuts[cuts < duration_s - 0.1] * FPS) / FPS  # a cut happens at a frame
    textures = rng.integers(30, 200, size=(cuts.size + 1, H // 8, W // 8))
    scene = np.searchsorted(cuts, times, side="right")
    luma = np.repeat(np.repeat(textures[scene], 8, axis=1), 8, axis=2).astype(np.int16)
    luma += rng.normal(0, 2, luma.shape).astype(np.int16)  # sensor noise: some motion everywhere
    total = round(duration_s * rate)
    audio = rng.normal(0, 0.01, total)  # a room's background, -40 dBFS
    hits = cuts if related else np.sort(rng.uniform(0.3, duration_s - 0.3, size=cuts.size))
    decay = np.exp(-np.arange(round(0.08 * rate)) / (0.015 * rate))
    for t in hits:
        start = round((t + delay_ms / 1000.0) * rate)
        if 0 <= start and start + decay.size <= total:
            audio[start : start + decay.size] += 0.4 * decay * rng.normal(0, 1, decay.size)
    return Media(times, np.clip(luma, 0, 255).astype(np.uint8), rate, audio[None].astype(np.float32))


def _run(media: Media, *, window_s: float, options: AvSyncOptions | None = None) -> list[Defect]:
    """Feed windows of `window_s` (video in chunks of 7 frames, audio in 0.37 s chunks, interleaved in time)."""
    options = options or AvSyncOptions()
    rate = media.rate
    audio_times = media.audio_start_s + np.arange(media.audio.shape[1]) / rate
    duration = max(media.times[-1] + 1.0 / FPS, audio_times[-1] + 1.0 / rate)
    state: dict = {}
    defects: list[Defect] = []
    start, previous = 0.0, None
    while start < duration - 1e-9:
        end = min(start + window_s, duration)
        last = end >= duration - 1e-9
        ctx = WindowContext(span=WindowSpan(start_s=start, end_s=end, is_last=last))
        if previous is not None:
            ctx.previous_luma, ctx.previous_time_s = media.luma[previous], float(media.times[previous])
        detector = AvSyncDetector(options=options, state=state, context=ctx)
        frames = np.flatnonzero((media.times >= start - 1e-9) & (media.times < end - 1e-9))
        samples = np.flatnonzero((audio_times >= start - 1e-9) & (audio_times < end - 1e-9))
        video_chunks = [frames[i : i + 7] for i in range(0, frames.size, 7)]
        step = round(0.37 * rate)
        audio_chunks = [samples[i : i + step] for i in range(0, samples.size, step)]
        while video_chunks or audio_chunks:
            video_next = video_chunks and (
                not audio_chunks or media.times[video_chunks[0][0]] <= audio_times[audio_chunks[0][0]]
            )
            if video_next:
                idx = video_chunks.pop(0)
                detector.feed_video(
                    VideoChunk(times=media.times[idx], luma=media.luma[idx], keyframe=np.zeros(idx.size, dtype=bool))
                )
            else:
                idx = audio_chunks.pop(0)
                detector.feed_audio(
                    AudioChunk(start_s=float(audio_times[idx[0]]), sample_rate=rate, samples=media.audio[:, idx])
                )
        output = detector.finish()
        defects += [e.defect for e in output.events if e.phase == "closed"]
        state = json.loads(json.dumps(output.state))  # as it travels through Temporal
        if frames.size:
            previous = int(frames[-1])
        start = end
    return defects


def _summary(defects: list[Defect]) -> list[tuple[float, float, float | None, str]]:
    return [(d.start_s, d.end_s, d.value, d.details.get("mode", "")) for d in defects]


@pytest.mark.parametrize("delay_ms", [-120.0, -91.0, 190.0, 250.0, 400.0])
@pytest.mark.parametrize("rate", [48000, 44100])
def test_test_signal_offset_measured_within_a_millisecond(delay_ms: float, rate: int) -> None:
    defects = _run(_flash_and_beep(10.0, delay_ms, rate=rate), window_s=10.0)
    assert len(defects) == 1
    d = defects[0]
    assert d.kind == "av_sync" and d.track == "av" and d.details["mode"] == "test_signal"
    assert d.value == pytest.approx(delay_ms, abs=1.0), "a sample-accurate beep against an exact flash"
    assert (d.start_s, d.end_s) == (0.0, 10.0)


@pytest.mark.parametrize("delay_ms", [-89.0, 0.0, 40.0, 100.0, 184.0])
def test_offsets_within_bt1359_tolerance_are_not_defects(delay_ms: float) -> None:
    assert _run(_flash_and_beep(10.0, delay_ms), window_s=10.0) == []


def test_a_stretch_out_of_sync_is_one_defect_with_its_own_span() -> None:
    media = _flash_and_beep(16.0, lambda f: -150.0 if 5.0 <= f < 11.0 else 0.0)
    defects = _run(media, window_s=3.3)
    assert _summary(defects) == [(5.0, 11.0, pytest.approx(-150.0, abs=1.0), "test_signal")]


@pytest.mark.parametrize(
    "media",
    [
        pytest.param(lambda: _flash_and_beep(16.0, lambda f: 250.0 if 4.0 <= f < 9.0 else -20.0), id="test_signal"),
        pytest.param(lambda: _cuts_and_hits(24.0, 300.0), id="content"),
    ],
)
def test_results_do_not_depend_on_window_boundaries(media) -> None:  # type: ignore[no-untyped-def]
    m = media()
    whole = _run(m, window_s=30.0)
    assert whole, "the case has a defect to compare"
    assert _run(m, window_s=10.0) == whole
    assert _run(m, window_s=3.3) == whole


def test_one_stray_pair_is_not_a_defect() -> None:
    """A single flash whose beep is off (a camera flash and a bang, say) stands for under min_duration_s."""
    media = _flash_and_beep(10.0, lambda f: 300.0 if f == 4.0 else 0.0)
    assert _run(media, window_s=10.0) == []


def test_test_signal_that_stops_ends_the_defect_a_period_later() -> None:
    media = _flash_and_beep(16.0, 250.0)
    media.luma[round(6.5 * FPS) :] = media.luma[1]  # the pattern stops at 6.5 s: no more flashes
    defects = _run(media, window_s=5.0)
    assert _summary(defects) == [(0.0, 7.0, pytest.approx(250.0, abs=1.0), "test_signal")]


def test_content_estimate_finds_a_late_soundtrack() -> None:
    defects = _run(_cuts_and_hits(24.0, 300.0), window_s=10.0)
    assert len(defects) == 1
    d = defects[0]
    assert d.details["mode"] == "content"
    assert d.value == pytest.approx(300.0, abs=25.0)
    assert d.details["confidence"] >= 0.6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_content_in_sync_or_unrelated_is_silent(seed: int) -> None:
    assert _run(_cuts_and_hits(24.0, 0.0, seed=seed), window_s=10.0) == []
    assert _run(_cuts_and_hits(24.0, 300.0, seed=seed, related=False), window_s=10.0) == []


def test_content_estimate_can_be_switched_off() -> None:
    assert _run(_cuts_and_hits(24.0, 300.0), window_s=10.0, options=AvSyncOptions(content=False)) == []


def _shifted(media: Media, *, start_s: float, end_trim_s: float = 0.0) -> Media:
    """The same media with the audio track's timestamps starting at `start_s`; `end_trim_s` cut off its end."""
    rate = media.rate
    cut = media.audio.shape[1] - round(end_trim_s * rate)
    return Media(media.times, media.luma, rate, media.audio[:, :cut], audio_start_s=start_s)


def test_timestamps_a_whole_audio_track_muxed_late() -> None:
    base = _cuts_and_hits(12.0, 0.0, related=False)
    defects = _run(_shifted(base, start_s=0.3), window_s=3.3, options=AvSyncOptions(content=False))
    assert _summary(defects) == [(0.0, 12.3, pytest.approx(300.0, abs=1.0), "timestamps")]


def test_timestamps_a_track_that_only_starts_late_or_ends_early_is_not_shifted() -> None:
    base = _cuts_and_hits(12.0, 0.0, related=False)
    off = AvSyncOptions(content=False)
    assert _run(_shifted(base, start_s=0.3, end_trim_s=0.3), window_s=3.3, options=off) == []
    assert _run(_shifted(base, start_s=0.0, end_trim_s=1.0), window_s=3.3, options=off) == []


def test_state_stays_small() -> None:
    media = _cuts_and_hits(12.0, 0.0)
    ctx = WindowContext(span=WindowSpan(start_s=0.0, end_s=10.0, is_last=False))
    detector = AvSyncDetector(options=AvSyncOptions(), state=None, context=ctx)
    frames = np.flatnonzero(media.times < 10.0)
    detector.feed_video(VideoChunk(times=media.times[frames], luma=media.luma[frames], keyframe=np.zeros(frames.size, bool)))
    detector.feed_audio(AudioChunk(start_s=0.0, sample_rate=media.rate, samples=media.audio[:, : 10 * media.rate]))
    assert len(json.dumps(detector.finish().state)) < 6 * 1024


def test_options_must_leave_room_for_the_limits() -> None:
    with pytest.raises(ValueError):
        AvSyncOptions(max_offset_ms=150.0)


def _rises(media: Media, windows: list[tuple[float, float]], *, drop_print: bool = False) -> dict[float, int]:
    """Visual onset strength per frame time, feeding `windows` as the product does since windows
    start on keyframes: no frame before a window, only the state carried (as JSON)."""
    seen: dict[float, int] = {}
    state: dict = {}
    for start, end in windows:
        ctx = WindowContext(span=WindowSpan(start_s=start, end_s=end, is_last=False))
        detector = AvSyncDetector(options=AvSyncOptions(), state=state, context=ctx)
        original = detector._add_visual

        def record(times: np.ndarray, rises: np.ndarray, original=original) -> None:  # type: ignore[no-untyped-def]
            seen.update({round(float(t), 4): int(r) for t, r in zip(times, rises)})
            original(times, rises)

        detector._add_visual = record  # type: ignore[method-assign]
        frames = np.flatnonzero((media.times >= start - 1e-9) & (media.times < end - 1e-9))
        detector.feed_video(VideoChunk(times=media.times[frames], luma=media.luma[frames], keyframe=np.zeros(frames.size, bool)))
        state = json.loads(json.dumps(detector.finish().state))
        if drop_print:
            state["edge_print"] = None
    return seen


def test_a_cut_on_the_keyframe_a_window_starts_at_is_still_an_onset() -> None:
    """Windows start on keyframes, and encoders put keyframes at cuts: the first frame of a window
    is often a cut. Its motion is measured against the print of the last frame the window before
    carried (sampled pixels: about the same mean difference as the whole picture's)."""
    media = _cuts_and_hits(12.0, 0.0)
    differences = np.abs(np.diff(media.luma.astype(np.int16), axis=0)).mean(axis=(1, 2))
    cut = float(media.times[np.flatnonzero(differences > 20)[5] + 1])  # the sixth cut
    whole = _rises(media, [(0.0, 12.0)])
    split = _rises(media, [(0.0, cut), (cut, 12.0)])
    assert whole[round(cut, 4)] > 0, "a cut is a visual onset"
    assert split[round(cut, 4)] == pytest.approx(whole[round(cut, 4)], rel=0.15)
    assert _rises(media, [(0.0, cut), (cut, 12.0)], drop_print=True)[round(cut, 4)] == 0, "without the print it is lost"
