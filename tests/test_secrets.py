"""Secrets stay out of Temporal: credentials come from the worker's environment only, and with
VQA_PAYLOAD_KEY the payloads Temporal stores are encrypted. Real Temporal, S3 and webhook servers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client

from support.seaweedfs import SECRET_KEY, SeaweedFS
from support.webhook import serve_webhook
from vqa.codec import ENCODING, EncryptionCodec, PayloadKeyError, key_fingerprint
from vqa.contracts import StreamReport, StreamRequest, workflow_id_for
from vqa.runtime import Settings, SettingsError

from . import media
from .conftest import TemporalServer, run_async, run_starter, running_worker, start_stream, worker_subprocess

WEBHOOK_SECRET = "whsec-" + uuid.uuid4().hex


def _payloads(message: Message, *, skip: tuple[str, ...] = ("search_attributes",)) -> Iterator[Payload]:
    """Every Payload inside a history message, but those of search attributes (indexed, never encoded)."""
    if isinstance(message, Payload):
        yield message
        return
    for descriptor, value in message.ListFields():
        if descriptor.name in skip or descriptor.type != descriptor.TYPE_MESSAGE:
            continue
        if isinstance(value, Message):
            items = [value]
        elif hasattr(value, "values"):  # a map of messages
            items = list(value.values())
        else:  # a repeated field
            items = list(value)
        for item in items:
            if isinstance(item, Message):
                yield from _payloads(item, skip=skip)


def _without_search_attributes(history: History) -> bytes:
    """The history's bytes, less its search attributes (which the server indexes in clear)."""
    copy = History()
    copy.CopyFrom(history)
    for event in copy.events:
        for attrs in (event.workflow_execution_started_event_attributes, event.upsert_workflow_search_attributes_event_attributes):
            attrs.ClearField("search_attributes")
        if event.HasField("workflow_execution_continued_as_new_event_attributes"):
            event.workflow_execution_continued_as_new_event_attributes.ClearField("search_attributes")
    return copy.SerializeToString()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A webhook on 127.0.0.1 that records each POST; the in-process worker signs with WEBHOOK_SECRET."""
    with serve_webhook() as state:
        monkeypatch.setenv("VQA_WEBHOOK_SECRET", WEBHOOK_SECRET)
        monkeypatch.delenv("VQA_SNS_TOPIC_ARN", raising=False)
        yield state.url, state.requests


@pytest.mark.integration
def test_no_secret_reaches_the_history_or_the_results(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, s3_env: SeaweedFS, receiver
) -> None:
    url, received = receiver
    s3 = s3_env.client()
    bucket = f"media-{uuid.uuid4().hex[:10]}"
    results_bucket = f"results-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=results_bucket)
    s3.upload_file(str(clips("main")), bucket, "show/main.mp4")
    request = StreamRequest(
        stream_id=f"secrets-{uuid.uuid4().hex[:8]}",
        source=f"s3://{bucket}/show/main.mp4",
        window_seconds=4.0,
        notify_url=url,
        results=f"s3://{results_bucket}/vqa",
    )

    async def scenario() -> tuple[StreamReport, History]:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, request)
            report = await handle.result()
            return report, History(events=(await handle.fetch_history()).events)

    report, history = run_async(scenario())
    assert report.status == "completed" and media.match(report.defects, media.MAIN_TRUTH) == []
    # The secrets were in use: S3 was read and written with the key, the webhook signed with the secret.
    assert received and all(
        hmac.compare_digest(h["x-vqa-signature"], "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest())
        for h, body in received
    )
    secrets = [SECRET_KEY.encode(), WEBHOOK_SECRET.encode()]
    payloads = list(_payloads(history, skip=()))
    assert len(payloads) > 10
    for payload in payloads:
        for secret in secrets:
            assert secret not in payload.data and all(secret not in v for v in payload.metadata.values())
    assert all(secret not in history.SerializeToString() for secret in secrets)
    written = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=results_bucket) for o in page.get("Contents", [])]
    assert f"vqa/{request.stream_id}/report.json" in written
    for key in written:
        body = s3.get_object(Bucket=results_bucket, Key=key)["Body"].read()
        assert all(secret not in body for secret in secrets), key
    assert all(secret not in body for _, body in received for secret in secrets)


# -- payload encryption --------------------------------------------------------------------------


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.mark.integration
def test_payloads_are_encrypted_and_the_starter_still_reads_its_report(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, tmp_path: Path
) -> None:
    key = _key()
    source = str(clips("main"))
    stream_id = f"sealed-{uuid.uuid4().hex[:8]}"
    with worker_subprocess(temporal_server.env(task_queue, VQA_PAYLOAD_KEY=key), tmp_path / "worker.log"):
        done = run_starter(
            temporal_server, task_queue, source, "--wait", "--json", "--window-seconds", "4", "--stream-id", stream_id,
            VQA_PAYLOAD_KEY=key,
        )
    assert done.returncode == 0, done.stderr + (tmp_path / "worker.log").read_text()
    report = StreamReport.model_validate(json.loads(done.stdout))
    assert report.status == "completed" and report.source == source
    assert media.match(report.defects, media.MAIN_TRUTH) == []

    async def raw_history() -> History:
        # A client with no codec at all: what the server, and its UI, hold.
        raw = await Client.connect(temporal_server.address)
        return History(events=(await raw.get_workflow_handle(workflow_id_for(stream_id)).fetch_history()).events)

    history = run_async(raw_history())
    patches = [e for e in history.events if e.marker_recorded_event_attributes.marker_name == "core_patch"]
    payloads = [p for e in history.events if e not in patches for p in _payloads(e) if p.data or p.metadata]
    assert len(payloads) > 10, "inputs, results, memo and summaries were found"
    assert patches, "the workflow records which windowing rule it follows"
    # What the SDK's core writes in clear: the name of a code change the workflow checks
    # (workflow.patched), no stream data.
    for marker in patches:
        for patch in _payloads(marker):
            assert json.loads(patch.data)["id"] in ("sliver-joins-last-window", "parallel-windows"), patch
    assert {p.metadata["encoding"] for p in payloads} == {ENCODING}
    assert {p.metadata["encryption-key-id"] for p in payloads} == {key_fingerprint(base64.b64decode(key)).encode()}
    assert source.encode() not in _without_search_attributes(history), "the source path is nowhere in clear"
    # Search attributes are indexed in clear: with a payload key the source is not one of them.
    assert source.encode() not in history.SerializeToString(), "not even as the VqaSource search attribute"
    assert b'"black"' not in _without_search_attributes(history), "nor are the defects"

    # Without the key, or with another one, the report cannot be read, and the starter says why.
    for env, why in (({}, "VQA_PAYLOAD_KEY is not set"), ({"VQA_PAYLOAD_KEY": _key()}, "which this process does not have")):
        denied = run_starter(temporal_server, task_queue, "status", stream_id, "--json", **env)
        assert denied.returncode == 1 and denied.stdout == "", denied.stderr
        assert why in denied.stderr and len(denied.stderr.strip().splitlines()) == 1, denied.stderr

    # `list` still lists it without the key (id, status, attributes are in clear), and says why
    # its source is not shown, instead of failing the whole listing.
    for _ in range(40):  # visibility is eventually consistent
        listed = run_starter(temporal_server, task_queue, "list", "--json", "--limit", "1000")
        assert listed.returncode == 0, listed.stderr
        entry = {s["stream_id"]: s for s in json.loads(listed.stdout)}.get(stream_id)
        if entry is not None:
            break
        time.sleep(0.5)
    assert entry is not None and entry["status"] == "completed" and entry["source"] is None
    assert "VQA_PAYLOAD_KEY is not set" in entry["source_error"]
    plain = run_starter(temporal_server, task_queue, "list", "--limit", "1000")
    assert plain.returncode == 0 and any(
        line.startswith(stream_id) and line.endswith("(encrypted)") for line in plain.stdout.splitlines()
    ), plain.stdout


def test_a_wrong_key_of_the_same_id_and_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = _key(), _key()
    sealed_old = EncryptionCodec.from_env({"VQA_PAYLOAD_KEY": old, "VQA_PAYLOAD_KEY_ID": "2024"})
    assert sealed_old is not None
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"source": "/media/show.mp4"}')
    [sealed] = run_async(sealed_old.encode([payload]))
    assert b"/media/show.mp4" not in sealed.SerializeToString() and sealed.metadata["encryption-key-id"] == b"2024"

    # Rotated: the new key seals, the old one still opens what it sealed.
    rotated = EncryptionCodec.from_env({"VQA_PAYLOAD_KEY": new, "VQA_PAYLOAD_KEY_ID": "2025", "VQA_PAYLOAD_OLD_KEYS": f"2024:{old}"})
    assert rotated is not None
    assert run_async(rotated.decode([sealed])) == [payload]
    [resealed] = run_async(rotated.encode([payload]))
    assert resealed.metadata["encryption-key-id"] == b"2025"

    impostor = EncryptionCodec.from_env({"VQA_PAYLOAD_KEY": new, "VQA_PAYLOAD_KEY_ID": "2024"})
    assert impostor is not None
    with pytest.raises(PayloadKeyError, match="does not decrypt with this process's key of that id"):
        run_async(impostor.decode([sealed]))
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(PayloadKeyError, match="altered"):
        run_async(sealed_old.decode([tampered]))


@pytest.mark.parametrize(
    "env, message",
    [
        ({"VQA_PAYLOAD_KEY": "not base64!"}, "VQA_PAYLOAD_KEY is not base64"),
        ({"VQA_PAYLOAD_KEY": base64.b64encode(b"short").decode()}, "must be 32 bytes"),
        ({"VQA_PAYLOAD_KEY": base64.b64encode(bytes(32)).decode(), "VQA_PAYLOAD_OLD_KEYS": "nocolon"}, "ID:BASE64"),
    ],
)
def test_a_malformed_key_is_a_settings_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_no_key_no_encryption() -> None:
    assert Settings.from_env({}).payload_codec is None


@pytest.mark.integration
def test_the_worker_refuses_to_start_with_a_malformed_key(temporal_server: TemporalServer, task_queue: str, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with worker_subprocess(temporal_server.env(task_queue, VQA_PAYLOAD_KEY="abc"), log) as proc:
        assert proc.wait(timeout=60) == 2
    assert "error: VQA_PAYLOAD_KEY" in log.read_text()
