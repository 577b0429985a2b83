"""The per-second design's two activities: the media converter and one detector function.

`convert_second` decodes exactly one second with the product's decoder
(`activities.decode.decode_window`) and PUTs what the detectors read to S3:
the luma planes (uint8, every frame, full size: no detector reads chroma) with
their times and keyframe flags, the frame before the second, the audio samples
(float32, as decoded), and any decode errors. `detect_second` GETs them back,
rebuilds the chunks and the `WindowContext`, and runs ONE detector with the
state it carried from the second before. Objects are plain `.npz` (numpy,
uncompressed): no codec cost on either side, so the design is charged only for
moving the data, not for compressing it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from temporalio import activity
from temporalio.exceptions import ApplicationError

import detectors
from activities.errors import SourceUnavailableError, UnreadableSourceError
from activities.decode import decode_window
from activities.s3 import get_object, put_object
from detectors import AudioChunk, VideoChunk, WindowContext, WindowSpan
from detectors.base import DecodeErrorChunk

from .contracts import ConvertRequest, DetectRequest, DetectResult, SecondObjects

# Chunk kinds in the order the decoder produced them (detectors see them in that order).
_VIDEO, _AUDIO, _ERRORS = 0, 1, 2


def _application_error(exc: Exception) -> ApplicationError:
    if isinstance(exc, UnreadableSourceError):
        return ApplicationError(str(exc), type="UnreadableSource", non_retryable=True)
    return ApplicationError(str(exc), type="SourceUnavailable")


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def second_uri(frames: str, stream_id: str, index: int, track: str) -> str:
    return f"{frames.rstrip('/')}/{stream_id}/{index:06d}/{track}.npz"


@activity.defn
def convert_second(request: ConvertRequest) -> SecondObjects:
    """Decode one second of the source and write its frames and samples to S3."""

    def heartbeat(position_s: float) -> None:
        if request.media.live and activity.in_activity():
            activity.heartbeat(round(position_s, 3))  # a live second waits for its segments

    order: list[tuple[int, int]] = []
    seen = {_VIDEO: 0, _AUDIO: 0, _ERRORS: 0}

    def next_index(kind: int) -> int:
        order.append((kind, seen[kind]))
        seen[kind] += 1
        return seen[kind] - 1

    common: dict[str, np.ndarray] = {}
    video: dict[str, np.ndarray] = {}
    audio: dict[str, np.ndarray] = {}
    frames = samples = 0
    try:
        chunks, report = decode_window(
            request.source, request.media, start_s=request.start_s, end_s=request.end_s, is_last=request.is_last,
            align=False, heartbeat=heartbeat,
        )
        for chunk in chunks:
            if isinstance(chunk, VideoChunk):
                i = next_index(_VIDEO)
                luma = np.asarray(chunk.luma)  # the decoder's planes, copied into one array
                video |= {
                    f"v{i}.luma": luma,
                    f"v{i}.times": chunk.times,
                    f"v{i}.keyframe": chunk.keyframe,
                    f"v{i}.full_range": np.array(chunk.full_range),
                }
                frames += len(luma)
            elif isinstance(chunk, AudioChunk):
                i = next_index(_AUDIO)
                audio |= {
                    f"a{i}.samples": chunk.samples,
                    f"a{i}.start_s": np.array(chunk.start_s),
                    f"a{i}.sample_rate": np.array(chunk.sample_rate),
                }
                samples += chunk.samples.shape[1]
            elif isinstance(chunk, DecodeErrorChunk):
                i = next_index(_ERRORS)
                common |= {f"e{i}.track": np.array(chunk.track), f"e{i}.times": chunk.times,
                           f"e{i}.durations": chunk.durations}
    except (UnreadableSourceError, SourceUnavailableError) as exc:
        raise _application_error(exc) from exc
    common["order"] = np.array(order, dtype=np.int32).reshape(-1, 2)
    end_s, is_last = request.end_s, request.is_last
    if report.stream_ended and report.end_s is not None:
        end_s, is_last = report.end_s, True  # a live playlist ended inside this second
    result = SecondObjects(
        index=request.index, start_s=request.start_s, end_s=end_s, is_last=is_last,
        live_edge_s=report.live_edge_s, video_frames=frames, audio_samples=samples,
    )
    # One object per track, so a detector fetches only the track it analyses.
    for track, arrays, present in (("video", video, request.media.video), ("audio", audio, request.media.audio)):
        if present is None:
            continue
        body = _npz(common | arrays)
        uri = second_uri(request.frames, request.stream_id, request.index, track)
        try:
            put_object(uri, body, content_type="application/octet-stream")
        except (UnreadableSourceError, SourceUnavailableError) as exc:
            raise _application_error(exc) from exc
        result.objects[track] = uri
        result.bytes_written += len(body)
    return result


def _load(uri: str) -> dict[str, np.ndarray]:
    try:
        body = get_object(uri)
    except (UnreadableSourceError, SourceUnavailableError) as exc:
        raise _application_error(exc) from exc
    with np.load(io.BytesIO(body), allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


@activity.defn
def detect_second(request: DetectRequest) -> DetectResult:
    """GET one second's objects and run ONE detector over them, from its carried state."""
    cls = detectors.REGISTRY.get(request.detector)
    if cls is None:
        raise ApplicationError(f"unknown detector {request.detector!r}", type="InvalidRequest", non_retryable=True)
    stored = {track: _load(uri) for track, uri in request.objects.items()}
    context = WindowContext(span=WindowSpan(start_s=request.start_s, end_s=request.end_s, is_last=request.is_last))
    detector = cls(options=cls.Options.model_validate(request.options), state=request.state, context=context)
    video, audio = stored.get("video"), stored.get("audio")
    first: dict[str, Any] = video if video is not None else (audio or {})
    for kind, i in first.get("order", np.empty((0, 2), dtype=np.int32)).tolist():
        if kind == _VIDEO and video is not None:
            detector.feed_video(VideoChunk(
                times=video[f"v{i}.times"], luma=video[f"v{i}.luma"], keyframe=video[f"v{i}.keyframe"],
                full_range=bool(video[f"v{i}.full_range"]),
            ))
        elif kind == _AUDIO and audio is not None:
            detector.feed_audio(AudioChunk(
                start_s=float(audio[f"a{i}.start_s"]), sample_rate=int(audio[f"a{i}.sample_rate"]),
                samples=audio[f"a{i}.samples"],
            ))
        elif kind == _ERRORS:
            detector.feed_decode_errors(DecodeErrorChunk(
                track=str(first[f"e{i}.track"]), times=first[f"e{i}.times"], durations=first[f"e{i}.durations"],  # type: ignore[arg-type]
            ))
    output = detector.finish()
    return DetectResult(
        detector=request.detector,
        events=output.events,
        measures={k: round(v, 6) for k, v in output.measures.items()},
        state=output.state,
    )


BASELINE_ACTIVITIES = [convert_second, detect_second]
