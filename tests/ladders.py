"""The ladder the channel tests share (HLS in test_channels.py, DASH in test_dash.py): the same
footage and defects, the renditions it has, and how close an edge must be."""

from __future__ import annotations

from support.ladder import LadderSpec
from vqa.contracts import Defect

SPEC = LadderSpec(
    duration_s=20.0, black_everywhere=(4.0, 7.0), black_in={"136p": (12.0, 15.0)}, silence_in={"es": (9.0, 12.0)}
)
VIDEOS = ["272p", "204p", "136p", "96p"]
ALL = VIDEOS + ["audio-en", "audio-es"]
TOLERANCE_S = 0.25


def only(defects: list[Defect], kind: str) -> list[Defect]:
    return [d for d in defects if d.kind == kind]
