"""The detectors: pure numpy, one per file, all with the same entry points.

`REGISTRY` maps a detector's name (as used by `--detectors` and in options) to
its class; adding a detector means adding a file and a line here.
"""

from __future__ import annotations

from typing import Any

from .av_sync import AvSyncDetector
from .base import AudioChunk, Detector, DetectorOptions, DetectorOutput, VideoChunk, WindowContext, WindowSpan
from .black import BlackDetector, BlackOptions
from .blockiness import BlockinessDetector
from .blur import BlurDetector
from .channel_silence import ChannelSilenceDetector
from .clipping import ClippingDetector
from .decode_error import DecodeErrorDetector
from .freeze import FreezeDetector, FreezeOptions
from .loudness import LoudnessDetector
from .phase_inverted import PhaseInvertedDetector
from .signal_loss import SignalLossDetector
from .silence import SilenceDetector

REGISTRY: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        BlackDetector,
        FreezeDetector,
        SilenceDetector,
        BlockinessDetector,
        BlurDetector,
        ClippingDetector,
        LoudnessDetector,
        DecodeErrorDetector,
        SignalLossDetector,
        AvSyncDetector,
        ChannelSilenceDetector,
        PhaseInvertedDetector,
    )
}


class UnknownDetectorError(ValueError):
    pass


def resolve(names: list[str] | None) -> list[str]:
    """Validate detector names; an empty selection means all detectors."""
    if not names:
        return list(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise UnknownDetectorError(
            f"unknown detector(s): {', '.join(unknown)}; known: {', '.join(REGISTRY)}"
        )
    return list(dict.fromkeys(names))


def parse_options(options: dict[str, dict[str, Any]]) -> dict[str, DetectorOptions]:
    """The options in force for every detector: those given, validated, and defaults elsewhere.

    Raises ValueError naming the detector and the field. Freeze leaves black pictures to
    black, judged by black's options in force here (a black stretch is never also a freeze):
    build freeze from this table, not from its own options alone.
    """
    parsed: dict[str, DetectorOptions] = {}
    for name, values in options.items():
        if name not in REGISTRY:
            raise UnknownDetectorError(f"options given for unknown detector {name!r}; known: {', '.join(REGISTRY)}")
        try:
            parsed[name] = REGISTRY[name].Options.model_validate(values)
        except ValueError as exc:
            raise ValueError(f"invalid options for detector {name!r}: {exc}") from exc
    in_force = {name: parsed.get(name) or cls.Options() for name, cls in REGISTRY.items()}
    black, freeze = in_force[BlackDetector.name], in_force[FreezeDetector.name]
    assert isinstance(black, BlackOptions) and isinstance(freeze, FreezeOptions)
    in_force[FreezeDetector.name] = freeze.with_black(black)
    return in_force


__all__ = [
    "REGISTRY",
    "AudioChunk",
    "Detector",
    "DetectorOptions",
    "DetectorOutput",
    "UnknownDetectorError",
    "VideoChunk",
    "WindowContext",
    "WindowSpan",
    "parse_options",
    "resolve",
]
