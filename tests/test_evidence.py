"""Evidence of each defect (a JPEG thumbnail or a WAV snippet) beside the results, local and on S3."""

from __future__ import annotations

import io
import uuid
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from support.seaweedfs import SeaweedFS
from vqa.contracts import StreamReport, StreamRequest

from . import media
from .conftest import TemporalServer, run_async, running_worker, start_stream

pytestmark = pytest.mark.integration


def _analyse(temporal_server: TemporalServer, task_queue: str, requests: list[StreamRequest]) -> list[StreamReport]:
    async def scenario() -> list[StreamReport]:
        async with running_worker(temporal_server, task_queue) as client:
            reports = []
            for request in requests:
                handle = await start_stream(client, task_queue, request)
                reports.append(await handle.result())
            return reports

    return run_async(scenario())


def _mean_luma(jpeg: bytes) -> float:
    with av.open(io.BytesIO(jpeg)) as container:
        frame = next(container.decode(video=0))
        assert 0 < frame.width <= 192 and frame.height > 0
        return float(frame.to_ndarray(format="gray").mean())


def _wav_peak_and_seconds(body: bytes) -> tuple[float, float]:
    with wave.open(io.BytesIO(body)) as wav:
        assert wav.getsampwidth() == 2
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return float(np.abs(samples).max(initial=0)) / 32768.0, wav.getnframes() / wav.getframerate()


def _check_evidence(defects: list, read) -> None:  # type: ignore[no-untyped-def]
    """Every defect links one evidence object that exists and shows it."""
    assert media.match(defects, media.MAIN_TRUTH) == []
    for defect in defects:
        uri = defect.details["evidence"]
        body = read(uri)
        if defect.kind == "black":
            assert uri.endswith(".jpg") and _mean_luma(body) < 20, (uri, "a black defect's thumbnail is dark")
        elif defect.kind == "freeze":
            assert uri.endswith(".jpg") and _mean_luma(body) > 40, (uri, "a frozen picture is not a black one")
        elif defect.kind == "silence":
            peak, seconds = _wav_peak_and_seconds(body)
            assert uri.endswith(".wav") and peak < 10 ** (-60 / 20), (uri, peak, "a silence's snippet is silent")
            assert 1.5 <= seconds <= 2.0 + 1e-3, seconds


def test_evidence_in_a_local_directory_and_none_for_a_clean_clip(
    temporal_server: TemporalServer, task_queue: str, clips: media.ClipFactory, tmp_path: Path
) -> None:
    sid = f"ev-{uuid.uuid4().hex[:6]}"
    requests = [
        StreamRequest(stream_id=sid, source=str(clips("main")), window_seconds=4.0, results=str(tmp_path)),
        StreamRequest(stream_id=f"clean-{sid}", source=str(clips("clean")), window_seconds=4.0, results=str(tmp_path)),
    ]
    report, clean = _analyse(temporal_server, task_queue, requests)
    evidence = tmp_path / sid / "evidence"
    assert all(Path(d.details["evidence"]).parent == evidence for d in report.defects)
    _check_evidence(report.defects, lambda uri: Path(uri).read_bytes())
    assert sorted(p.name for p in evidence.iterdir()) == sorted(Path(d.details["evidence"]).name for d in report.defects), (
        "one evidence object per defect, nothing else"
    )
    assert max(p.stat().st_size for p in evidence.iterdir()) < 256 * 1024, "small thumbnails and snippets"
    assert clean.status == "completed" and clean.defects == []
    assert (tmp_path / clean.stream_id / "windows").is_dir() and not (tmp_path / clean.stream_id / "evidence").exists()


def test_evidence_on_s3(temporal_server: TemporalServer, task_queue: str, s3_env: SeaweedFS, clips: media.ClipFactory) -> None:
    bucket = f"results-{uuid.uuid4().hex[:10]}"
    s3_env.client().create_bucket(Bucket=bucket)
    sid = f"ev-s3-{uuid.uuid4().hex[:6]}"
    (report,) = _analyse(temporal_server, task_queue, [
        StreamRequest(stream_id=sid, source=str(clips("main")), window_seconds=4.0, results=f"s3://{bucket}/vqa"),
    ])
    client = s3_env.client()

    def read(uri: str) -> bytes:
        assert uri.startswith(f"s3://{bucket}/vqa/{sid}/evidence/"), uri
        response = client.get_object(Bucket=bucket, Key=uri.split("/", 3)[3])
        assert response["ContentType"] == ("image/jpeg" if uri.endswith(".jpg") else "audio/wav")
        return bytes(response["Body"].read())

    _check_evidence(report.defects, read)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"vqa/{sid}/evidence/").get("Contents", [])
    assert len(listed) == len(report.defects) == 4, "one evidence object per defect"
