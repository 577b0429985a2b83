"""Picture damage injected into clean frames at known times, and a window-by-window runner.

Everything works on luma arrays (frames, height, width) uint8, as the detectors
see them: decode a clip once, damage a time range, feed the result.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from detectors import VideoChunk, WindowContext, WindowSpan
from detectors.base import Detector, DetectorOptions, DetectorOutput

CHUNK_FRAMES = 32  # as the window activity hands them over


def decode_luma(path: str | Path, *, max_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(times, luma) of a clip's video, times from its first frame."""
    times, frames = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if max_s is not None and times and t - times[0] >= max_s:
                break
            plane = frame.planes[0]
            rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
            frames.append(rows[: frame.height, : frame.width].copy())
            times.append(t)
    t0 = times[0]
    return np.asarray(times) - t0, np.stack(frames)


def in_range(times: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return (times >= start_s - 1e-9) & (times < end_s - 1e-9)


def damage(
    times: np.ndarray, luma: np.ndarray, start_s: float, end_s: float, how: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """A copy of `luma` whose frames in [start_s, end_s) went through `how` (a function of frames)."""
    out = luma.copy()
    sel = in_range(times, start_s, end_s)
    out[sel] = how(luma[sel])
    return out


# --- blocking -------------------------------------------------------------------------------


def block_average(frames: np.ndarray, block: int = 8) -> np.ndarray:
    """Every block replaced by its mean: macroblocking at its worst (only the DC coefficient left)."""
    n, h, w = frames.shape
    hb, wb = h // block * block, w // block * block
    means = frames[:, :hb, :wb].reshape(n, hb // block, block, wb // block, block).mean(axis=(2, 4))
    out = frames.copy()
    out[:, :hb, :wb] = np.repeat(np.repeat(np.rint(means).astype(np.uint8), block, axis=1), block, axis=2)
    return out


def encode_clip(path: Path, frames: np.ndarray, *, fps: int = 25, **x264: str) -> Path:
    """Frames (grey pictures) to an H.264 file with these libx264 options (crf, qp, ...)."""
    n, h, w = frames.shape
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "veryfast", **x264}
        stream.codec_context.time_base = Fraction(1, fps)
        chroma = np.full((h // 2, w), 128, dtype=np.uint8)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.concatenate([frames[i], chroma]), format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def x264_roundtrip(frames: np.ndarray, *, qp: int, fps: int = 25) -> np.ndarray:
    """The frames encoded with libx264 at a constant quantiser and decoded again."""
    with tempfile.TemporaryDirectory() as tmp:
        path = encode_clip(Path(tmp) / "roundtrip.mp4", frames, fps=fps, qp=str(qp))
        return decode_luma(path)[1]


def corrupt_slice(
    frames: np.ndarray, *, mode: str, top: float = 0.4, height: float = 0.3, seed: int = 5, block: int = 16
) -> np.ndarray:
    """A band of macroblock rows damaged as a lost or corrupted slice leaves it.

    `mode`: "shuffle" (blocks taken from the wrong place, as with bad motion
    vectors), "dc" (wrong DC coefficient: each block's level shifted at random),
    "garbage" (blocks of a random flat level with a little noise).
    """
    n, h, w = frames.shape
    rng = np.random.default_rng(seed)
    r0 = int(h * top) // block * block
    r1 = min(h // block * block, r0 + max(block, int(h * height) // block * block))
    wb = w // block * block
    out = frames.copy()
    band = out[:, r0:r1, :wb].reshape(n, (r1 - r0) // block, block, wb // block, block).transpose(0, 1, 3, 2, 4)
    shape = band.shape
    blocks = band.reshape(n, -1, block, block)
    count = blocks.shape[1]
    if mode == "shuffle":
        blocks = blocks[:, rng.permutation(count)]
    elif mode == "dc":
        shift = rng.integers(-60, 61, size=(n, count, 1, 1))
        blocks = np.clip(blocks.astype(np.int16) + shift, 16, 235).astype(np.uint8)
    elif mode == "garbage":
        level = rng.integers(16, 236, size=(n, count, 1, 1))
        blocks = np.clip(level + rng.normal(0, 4, blocks.shape), 16, 235).astype(np.uint8)
    else:
        raise ValueError(f"unknown corruption mode {mode!r}")
    out[:, r0:r1, :wb] = blocks.reshape(shape).transpose(0, 1, 3, 2, 4).reshape(n, r1 - r0, wb)
    return out


# --- blur -----------------------------------------------------------------------------------


def gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edges replicated), as an out-of-focus lens or a soft scaler leaves it."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    out = frames.astype(np.float32)
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        size = out.shape[axis]
        out = np.zeros_like(out)
        for k, tap in enumerate(taps):
            window = [slice(None)] * 3
            window[axis] = slice(k, k + size)
            out += tap * padded[tuple(window)]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --- sharp generated pictures ---------------------------------------------------------------


def text_card(h: int, w: int, *, aligned: bool, seed: int = 3, grey_boxes: bool = False) -> np.ndarray:
    """Black text-like glyph rectangles on white: on the 8x8 block grid or anywhere."""
    rng = np.random.default_rng(seed)
    card = np.full((h, w), 235, np.uint8)
    if grey_boxes:
        for _ in range(6):
            y = 8 * int(rng.integers(0, max(1, h // 8 - 4)))
            x = 8 * int(rng.integers(0, max(1, w // 8 - 8)))
            card[y : y + 32, x : x + 64] = int(rng.integers(40, 200))
    for y in range(16, h - 24, 32):
        x = 16
        while x < w - 16:
            if aligned:
                gw, gh, gx, gy = 8 * int(rng.integers(1, 3)), 8 * int(rng.integers(1, 3)), x, y
                x += 16
            else:
                gw, gh = int(rng.integers(2, 12)), int(rng.integers(6, 20))
                gx, gy = x + int(rng.integers(0, 5)), y + int(rng.integers(0, 5))
                x += int(rng.integers(6, 16))
            card[gy : gy + gh, gx : gx + gw] = 16
    return card


def sharp_programme(duration_s: float, *, fps: int = 25, h: int = 240, w: int = 320, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Moving sharp-edged content: a scrolling text card over hard-edged bars, with a little sensor noise."""
    rng = np.random.default_rng(seed)
    times = np.arange(round(duration_s * fps)) / fps
    card = np.tile(text_card(h, w, aligned=False, seed=seed), (1, 2))
    y, x = np.mgrid[0:h, 0 : 2 * w]
    bars = np.where(((x // 23) + (y // 37)) % 2 == 0, 60, 190).astype(np.uint8)
    scene = np.where(card < 128, card, bars)
    frames = np.empty((len(times), h, w), np.uint8)
    for i, t in enumerate(times):
        shift = int(round(40 * t)) % w
        noisy = scene[:, shift : shift + w].astype(np.int16) + rng.normal(0, 1.5, (h, w)).astype(np.int16)
        frames[i] = np.clip(noisy, 16, 235)
    return times, frames


# --- running a detector window by window ----------------------------------------------------


def run_detector(
    cls: type[Detector],
    times: np.ndarray,
    luma: np.ndarray,
    *,
    window_s: float,
    options: DetectorOptions | None = None,
) -> list[DetectorOutput]:
    """Feed the frames window by window, in chunks of 32, the state going through JSON between windows."""
    duration = float(times[-1]) + (float(times[1] - times[0]) if len(times) > 1 else 0.04)
    keyframe = np.zeros(len(times), dtype=bool)
    state: dict = {}
    outputs = []
    previous = None
    start = 0.0
    while start < duration - 1e-9:
        end = min(start + window_s, duration)
        sel = np.flatnonzero(in_range(times, start, end))
        context = WindowContext(span=WindowSpan(start_s=start, end_s=end, is_last=end >= duration - 1e-9))
        if previous is not None:
            context.previous_luma, context.previous_time_s = luma[previous], float(times[previous])
        detector = cls(options=options or cls.Options(), state=state, context=context)
        for c in range(0, len(sel), CHUNK_FRAMES):
            idx = sel[c : c + CHUNK_FRAMES]
            detector.feed_video(VideoChunk(times=times[idx], luma=luma[idx], keyframe=keyframe[idx]))
        output = detector.finish()
        outputs.append(output)
        state = json.loads(json.dumps(output.state))
        if sel.size:
            previous = int(sel[-1])
        start = end
    return outputs


def closed_spans(outputs: list[DetectorOutput]) -> list[tuple[float, float]]:
    """(start_s, end_s) of every finished event, in order."""
    return [(e.defect.start_s, e.defect.end_s) for out in outputs for e in out.events if e.phase == "closed"]

