"""Test clips with defects injected at known times (PyAV: libx264 + AAC), and their truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vqa.synth import ClipSpec, Segment, make_clip


@dataclass(frozen=True)
class Expected:
    kind: str
    start_s: float
    end_s: float


# 32 s; the picture encoded twice, the second time at a constant 300 kb/s with a
# keyframe every second, as a contribution chain would: the frozen stretch
# carries refresh jumps at each keyframe and refinement in the frames between.
MAIN = ClipSpec(
    duration_s=32.0,
    video=[
        Segment("black", 3.0, 6.0),
        Segment("freeze", 9.0, 13.5),  # straddles the 10 s window boundary
        Segment("black", 16.0, 17.5),  # 1.5 s: under the 2 s rule
        Segment("freeze", 18.0, 19.5),  # 1.5 s: under the 2 s rule
        Segment("black", 29.0, 32.0),  # still open when the stream ends
    ],
    audio=[
        Segment("silence", 21.0, 24.0),
        Segment("silence", 26.0, 27.2),  # 1.2 s: under the 2 s rule
        Segment("quiet", 7.0, 9.0),  # about -50 dBFS: quiet, not silent
    ],
    keyframe_interval_s=1.0,
    bitrate_kbps=300,
    reencode=True,
)
MAIN_TRUTH = [
    Expected("black", 3.0, 6.0),
    Expected("freeze", 9.0, 13.5),
    Expected("silence", 21.0, 24.0),
    Expected("black", 29.0, 32.0),
]

# Events that begin exactly on the boundaries of 5 s windows.
BOUNDARY = ClipSpec(
    duration_s=20.0,
    video=[Segment("black", 5.0, 7.5), Segment("freeze", 10.0, 14.0)],
    audio=[Segment("silence", 15.0, 17.5)],
    keyframe_interval_s=2.0,
)
BOUNDARY_TRUTH = [
    Expected("black", 5.0, 7.5),
    Expected("freeze", 10.0, 14.0),
    Expected("silence", 15.0, 17.5),
]

CLEAN = ClipSpec(duration_s=12.0)
AUDIO_ONLY = ClipSpec(duration_s=8.0, with_video=False, audio=[Segment("silence", 2.0, 5.0)])
VIDEO_ONLY = ClipSpec(duration_s=8.0, with_audio=False, video=[Segment("black", 1.0, 4.0)])

# A track that stops delivering: video gaps (one mid-stream, one to the end) and an audio gap.
GAPS = ClipSpec(
    duration_s=14.0,
    video=[Segment("gap", 4.0, 6.5), Segment("gap", 11.0, 14.0)],
    audio=[Segment("gap", 7.0, 9.0)],
    keyframe_interval_s=1.0,
)
GAPS_TRUTH = [
    Expected("signal_loss", 4.0, 6.5),
    Expected("signal_loss", 7.0, 9.0),
    Expected("signal_loss", 11.0, 14.0),
]

# A person sitting still before a camera: the scene holds but for a small sway, under sensor noise.
SITTING = ClipSpec(duration_s=12.0, video=[Segment("sitting", 1.0, 11.0)], keyframe_interval_s=1.0)

SPECS = {
    "main": MAIN,
    "boundary": BOUNDARY,
    "clean": CLEAN,
    "audio_only": AUDIO_ONLY,
    "video_only": VIDEO_ONLY,
    "gaps": GAPS,
    "sitting": SITTING,
}


def corrupt_video_packet(src: Path, dst: Path, *, at_s: float) -> float:
    """Copy `src` to `dst` with the payload of the first video packet at or after
    `at_s` overwritten by garbage (header and index intact). Returns its time."""
    import av
    import numpy as np

    with av.open(str(src)) as c:
        stream = c.streams.video[0]
        for packet in c.demux(stream):
            if packet.pts is not None and packet.pts * stream.time_base >= at_s and packet.size > 64 and packet.pos:
                pos, size, t = packet.pos, packet.size, float(packet.pts * stream.time_base)
                break
        else:
            raise ValueError(f"no video packet at {at_s}s in {src}")
    data = bytearray(src.read_bytes())
    garbage = np.random.default_rng(3).integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    data[pos + 8 : pos + size] = garbage  # keep the NAL length and header bytes
    dst.write_bytes(bytes(data))
    return t


class ClipFactory:
    """Encodes each named clip once per test session."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, name: str) -> Path:
        path = self.directory / f"{name}.mp4"
        if not path.exists():
            make_clip(path, SPECS[name])
        return path


def without_evidence(defects: list) -> list:  # type: ignore[type-arg]
    """The defects less their evidence links (which name the stream and its results location)."""
    return [d.model_copy(update={"details": {k: v for k, v in d.details.items() if k != "evidence"}}) for d in defects]


def match(defects: list, truth: list[Expected], *, tolerance_s: float = 0.2) -> list[str]:  # type: ignore[type-arg]
    """Differences between reported defects and the truth; empty when they agree."""
    problems: list[str] = []
    remaining = list(defects)
    for want in truth:
        found = [
            d
            for d in remaining
            if d.kind == want.kind
            and abs(d.start_s - want.start_s) <= tolerance_s
            and abs(d.end_s - want.end_s) <= tolerance_s
        ]
        if len(found) != 1:
            problems.append(f"expected one {want} within {tolerance_s}s, found {len(found)}")
        else:
            remaining.remove(found[0])
    problems.extend(f"unexpected {d.kind} {d.start_s}-{d.end_s}" for d in remaining)
    return problems
