"""Silent audio: every channel below a level for long enough.

Same rule and defaults as FFmpeg's silencedetect (noise=-60dB, d=2): a sample
counts as silent when its magnitude is below the level on every channel.
The value is the stretch's peak level in dBFS.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from .base import AudioChunk, Detector, DetectorOptions, amplitude_to_db, db_to_amplitude
from .models import Decibels, Seconds
from .runs import RunState, find_runs


class SilenceOptions(DetectorOptions):
    min_duration_s: Seconds = Field(2.0, description="shortest silence reported")
    noise_db: Decibels = Field(-60.0, description="a sample is silent below this level (dBFS)")


class SilenceDetector(Detector[SilenceOptions, RunState]):
    name = "silence"
    track = "audio"
    run_reduce = "max"

    def open_window(self) -> None:
        self.threshold = db_to_amplitude(self.options.noise_db)
        self.samples = 0
        self.square_total = 0.0
        self.peak = 0.0

    def run_value(self, value: float) -> float:
        return amplitude_to_db(value)  # the stretch's peak, in dBFS

    def feed_audio(self, chunk: AudioChunk) -> None:
        if chunk.samples.shape[1] == 0:
            return
        magnitude = np.abs(chunk.samples).max(axis=0)
        self.samples += magnitude.size
        self.square_total += float(np.square(chunk.samples, dtype=np.float64).mean(axis=0).sum())
        self.peak = max(self.peak, float(magnitude.max()))
        silent = magnitude < self.threshold
        starts, stops = find_runs(silent)
        rate = float(chunk.sample_rate)
        # Interior runs shorter than the rule (a tone's zero crossings) can never make an
        # event: skip them here rather than follow thousands a second one by one.
        keep = (stops - starts >= self.options.min_duration_s * rate) | (starts == 0) | (stops == magnitude.size)
        starts, stops = starts[keep], stops[keep]
        t0 = chunk.start_s
        if self.tracker.is_open and (starts.size == 0 or starts[0] != 0):
            self.tracker.inactive(t0)
        for a, b in zip(starts.tolist(), stops.tolist()):
            self.tracker.active(start_s=t0 + a / rate, last_s=t0 + b / rate, values=magnitude[a:b])
            if b < magnitude.size:
                self.tracker.inactive(t0 + b / rate)

    def measures(self) -> dict[str, float]:
        measures: dict[str, float] = {}
        if self.samples:
            measures["audio_rms_db"] = amplitude_to_db(float(np.sqrt(self.square_total / self.samples)))
            measures["audio_peak_db"] = amplitude_to_db(self.peak)
        return measures
