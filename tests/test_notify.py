"""Defect notifications: a real Temporal dev server, a real worker and a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.notify import notification_body, notify_defects, sign, sns_message
from activities import StreamActivities
from activities.window import analyze_window
from vqa.settings import Settings
from detectors.runs import event_id
from support.webhook import Receiver, serve_webhook
from vqa.contracts import Defect, DefectEvent, NotifyRequest, StreamReport, StreamRequest, WindowRequest, WindowResult
from vqa.devserver import free_port
from workflows import StreamMonitorWorkflow

from . import media
from .conftest import TemporalServer, analyse_stream, run_async, running_worker, start_stream

SECRET = "test-secret"


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with serve_webhook() as state:
        # The worker runs in this process: its environment is this one.
        monkeypatch.setenv("VQA_WEBHOOK_SECRET", SECRET)
        monkeypatch.delenv("VQA_SNS_TOPIC_ARN", raising=False)
        monkeypatch.delenv("VQA_NOTIFY_URL", raising=False)
        yield state


def _request(name: str, path: Path | str, **kw: Any) -> StreamRequest:
    return StreamRequest(stream_id=f"{name}-{os.urandom(4).hex()}", source=str(path), window_seconds=4.0, **kw)


async def _activity_events(handle: WorkflowHandle) -> list[tuple[str, str, int]]:  # type: ignore[type-arg]
    """(kind of history event, activity type, attempt) of every activity scheduled, started or completed."""
    names: dict[int, str] = {}
    out: list[tuple[str, str, int]] = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            names[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
            out.append(("scheduled", names[event.event_id], 0))
        elif event.HasField("activity_task_started_event_attributes"):
            a = event.activity_task_started_event_attributes
            out.append(("started", names[a.scheduled_event_id], a.attempt))
        elif event.HasField("activity_task_completed_event_attributes"):
            out.append(("completed", names[event.activity_task_completed_event_attributes.scheduled_event_id], 0))
    return out


def _run(temporal_server: TemporalServer, task_queue: str, request: StreamRequest) -> tuple[StreamReport, list[tuple[str, str, int]]]:
    """The stream to its report on a worker in this process, and its activity events."""

    async def scenario() -> tuple[StreamReport, list[tuple[str, str, int]]]:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, request)
            return await handle.result(), await _activity_events(handle)

    return run_async(scenario())


def _expected_ids(report: StreamReport) -> set[str]:
    """Each defect of the report is one event, opened once and closed once."""
    return {
        f"{report.stream_id}/{event_id(d.kind, d.track, d.start_s)}/{phase}"
        for d in report.defects
        for phase in ("opened", "closed")
    }


def _check_delivered(receiver: Receiver, report: StreamReport) -> int:
    """Every event arrived, signed, under its stable id; returns how many repeats arrived
    (delivery is at-least-once: a retried delivery may repeat an event, byte for byte)."""
    delivered = receiver.delivered()
    assert set(delivered) == _expected_ids(report), "every event arrives, under its stable id, and nothing else"
    for headers, body in receiver.requests:
        assert hmac.compare_digest(headers["x-vqa-signature"], "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest())
        assert headers["x-vqa-event-id"] == json.loads(body)["id"]
        assert int(headers["x-vqa-timestamp"]) > 0
    for copies in receiver.bodies().values():
        assert all(c == copies[0] for c in copies), "a repeat is the same document, byte for byte"
    closed = sorted((docs[0]["defect"] for docs in delivered.values() if docs[0]["phase"] == "closed"), key=lambda d: (d["start_s"], d["kind"]))
    assert closed == [d.model_dump(mode="json") for d in report.defects], "the closed events are the report's defects"
    return len(receiver.requests) - len(delivered)


pytestmark = pytest.mark.integration


def test_defects_are_notified_signed_with_stable_ids(temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    request = _request("notify", clips("main"), notify_url=receiver.url)

    report = analyse_stream(temporal_server, task_queue, request)
    assert report.status == "completed" and media.match(report.defects, media.MAIN_TRUTH) == []
    assert _check_delivered(receiver, report) == 0, "nothing failed: each event arrives exactly once"
    assert len(receiver.delivered()) == 2 * len(media.MAIN_TRUTH)


@pytest.mark.parametrize("target", ["worker-webhook", "none"])
def test_the_workers_own_target_is_used_and_no_target_costs_nothing(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
    target: str,
) -> None:
    """A stream without --notify: the worker's VQA_NOTIFY_URL receives every event; a worker with no
    target at all schedules no notify_defects activity (each would be a billable action for nothing)."""
    if target == "worker-webhook":
        monkeypatch.setenv("VQA_NOTIFY_URL", receiver.url)  # the worker runs in this process
    request = _request(f"notify-{target}", clips("main"))
    assert request.notify_url is None

    report, events = _run(temporal_server, task_queue, request)
    assert report.status == "completed" and media.match(report.defects, media.MAIN_TRUTH) == []
    notifies = sum(1 for e in events if e[:2] == ("scheduled", "notify_defects"))
    if target == "worker-webhook":
        assert _check_delivered(receiver, report) == 0
        assert notifies > 0
    else:
        assert receiver.requests == [] and notifies == 0
        assert sum(1 for e in events if e[:2] == ("scheduled", "analyze_window")) == report.windows


def _one_batch(temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver, name: str):  # type: ignore[no-untyped-def]
    """The main clip as one window: its events (each defect opened and closed) go out as one batch,
    one notify_defects activity, in order. Returns the report and the activity events."""
    request = _request(name, clips("main"), notify_url=receiver.url).model_copy(update={"window_seconds": 40.0})

    report, events = _run(temporal_server, task_queue, request)
    assert report.status == "completed" and report.windows == 1
    assert media.match(report.defects, media.MAIN_TRUTH) == []
    assert sum(1 for e in events if e[:2] == ("scheduled", "notify_defects")) == 1, "one batch"
    return report, events


def test_a_refused_delivery_in_the_middle_of_a_batch_loses_no_event(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver
) -> None:
    receiver.refuse_posts = frozenset({2})  # the batch's second POST only: 503
    report, events = _one_batch(temporal_server, task_queue, clips, receiver, "notify-2nd")
    statuses = [status for _, _, status in receiver.attempts]
    assert statuses[:2] == [204, 503] and statuses.count(503) == 1
    assert any(e[1] == "notify_defects" and e[2] == 2 for e in events), "the batch was retried"
    repeats = _check_delivered(receiver, report)
    # The retry starts after the events already delivered (the activity's heartbeat details):
    # the refused event is asked again, the first one is not.
    assert receiver.attempts[2][1] == receiver.attempts[1][1], "the retry resumed at the refused event"
    assert repeats == 0


def test_a_refused_delivery_is_retried_with_growing_backoff(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver
) -> None:
    receiver.fail_first = 3  # the batch's first event: refused three times, then accepted
    report, _ = _one_batch(temporal_server, task_queue, clips, receiver, "notify-backoff")
    first = receiver.attempts[:4]
    assert len({event_id for _, event_id, _ in first}) == 1 and [s for _, _, s in first] == [503, 503, 503, 204]
    gaps = [b[0] - a[0] for a, b in zip(first, first[1:])]
    # The retry policy's 1 s, doubling: about 1, 2 and 4 s. Only the growth is asserted, generously.
    assert gaps[0] >= 0.5 and gaps[0] < gaps[1] < gaps[2] and gaps[2] > 2 * gaps[0], gaps
    assert max(gaps) < 60, gaps
    _check_delivered(receiver, report)


def test_a_webhook_down_at_first_gets_every_event_and_never_holds_the_analysis(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver
) -> None:
    receiver.fail_first = 3  # 503, 503, 503: retried after 1, 2 and 4 s
    request = _request("notify-down", clips("main"), notify_url=receiver.url)

    report, events = _run(temporal_server, task_queue, request)
    assert report.status == "completed" and media.match(report.defects, media.MAIN_TRUTH) == []
    assert receiver.refused == 3
    _check_delivered(receiver, report)
    first_notify = next(i for i, e in enumerate(events) if e[:2] == ("scheduled", "notify_defects"))
    first_done = next(i for i, e in enumerate(events) if e[:2] == ("completed", "notify_defects"))
    assert any(e[1] == "analyze_window" and e[0] in ("scheduled", "completed") for e in events[first_notify:first_done]), (
        "windows went on while the first notification was being retried"
    )
    assert any(e[1] == "notify_defects" and e[2] > 1 for e in events), "the notification was retried"


def test_a_webhook_down_for_the_whole_run_does_not_fail_the_stream(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there: connection refused
    request = _request("notify-dead", clips("main"), notify_url=nobody, notify_wait_s=2.0)

    report, events = _run(temporal_server, task_queue, request)
    assert report.status == "completed" and report.windows == 8
    assert media.match(report.defects, media.MAIN_TRUTH) == []
    assert any(e[:2] == ("scheduled", "notify_defects") for e in events)
    assert not any(e[:2] == ("completed", "notify_defects") for e in events)


def test_a_clean_stream_schedules_no_notification(temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    request = _request("notify-clean", clips("clean"), notify_url=receiver.url)

    report, events = _run(temporal_server, task_queue, request)
    assert report.status == "completed" and report.defects == []
    assert receiver.requests == [] and receiver.refused == 0
    assert [e for e in events if e[1] == "notify_defects"] == []
    assert sum(1 for e in events if e[:2] == ("scheduled", "analyze_window")) == report.windows


def test_a_stopped_stream_notifies_the_events_its_report_closes(  # type: ignore[no-untyped-def]
    temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver
) -> None:
    import asyncio

    # One window at a time: the stream stops right after the window in flight, the freeze still open.
    request = _request("notify-stop", clips("main"), notify_url=receiver.url).model_copy(
        update={"window_seconds": 0.5, "parallel": 1}
    )

    async def scenario() -> StreamReport:
        async with running_worker(temporal_server, task_queue) as client:
            handle = await start_stream(client, task_queue, request)
            while not any(d.kind == "freeze" for d in (await handle.query(StreamMonitorWorkflow.status)).open_defects):
                await asyncio.sleep(0.02)
            await handle.signal(StreamMonitorWorkflow.stop)
            return await handle.result()

    report = run_async(scenario())
    # Where the analysis stopped: the last window's end, on the keyframe at or after its nominal end.
    stopped_at = report.analysed_s
    assert stopped_at is not None and report.windows * 0.5 <= stopped_at <= report.windows * 0.5 + 1.0
    assert report.status == "stopped" and stopped_at < 13.5, "stopped while the freeze was still open"
    # The freeze is closed by the report, where the analysis stopped: that closing is notified too.
    assert media.match(report.defects, [media.Expected("black", 3.0, 6.0), media.Expected("freeze", 9.0, stopped_at)]) == []
    _check_delivered(receiver, report)


@activity.defn(name="analyze_window")
def _analyze_window_lost_once(request: WindowRequest) -> WindowResult:
    """The real window, whose first attempt is lost after the analysis when it found events."""
    result = analyze_window(request)
    if result.events and activity.info().attempt == 1:
        raise ApplicationError("worker lost after the analysis", type="SourceUnavailable")
    return result


def test_a_retried_window_notifies_the_same_ids(temporal_server: TemporalServer, task_queue: str, clips, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    from vqa.runtime import connect

    request = _request("notify-retry", clips("main"), notify_url=receiver.url)

    async def scenario() -> tuple[StreamReport, list[tuple[str, str, int]]]:
        client = await connect(temporal_server.settings(task_queue))
        acts = StreamActivities(Settings())
        with ThreadPoolExecutor(max_workers=2) as pool:
            async with Worker(
                client,
                task_queue=task_queue,
                workflows=[StreamMonitorWorkflow],
                activities=[acts.probe_source, _analyze_window_lost_once, acts.write_report, acts.notify_defects],
                activity_executor=pool,
                max_concurrent_activities=2,
            ):
                handle = await start_stream(client, task_queue, request)
                return await handle.result(), await _activity_events(handle)

    report, events = run_async(scenario())
    assert report.status == "completed" and media.match(report.defects, media.MAIN_TRUTH) == []
    assert any(e[1] == "analyze_window" and e[2] == 2 for e in events), "windows were retried"
    _check_delivered(receiver, report)


def _event(phase: str = "opened") -> DefectEvent:
    defect = Defect(kind="black", track="video", start_s=3.0, end_s=6.0, duration_s=3.0, value=0.99)
    return DefectEvent(id=event_id("black", "video", 3.0), phase=phase, defect=defect)  # type: ignore[arg-type]


def test_the_notification_body_and_its_signature() -> None:
    body = notification_body("cam1", "/data/cam1.mp4", _event())
    doc = json.loads(body)
    assert doc["id"] == "cam1/black:video:3000/opened" and doc["type"] == "defect.opened"
    assert doc["defect"]["start_s"] == 3.0 and doc["stream_id"] == "cam1"
    assert body == notification_body("cam1", "/data/cam1.mp4", _event()), "the same bytes on every attempt"
    assert sign(body, "k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_sns_publish_carries_the_event_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SNS server runs locally (SeaweedFS has none): SNS alone is faked, with botocore's Stubber."""
    topic = "arn:aws:sns:us-east-1:123456789012:vqa-defects.fifo"
    sns = boto3.client("sns", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(sns)
    events = [_event("opened"), _event("closed")]
    for e in events:
        body = notification_body("cam1", "src", e)
        expected = sns_message(topic, stream_id="cam1", event_id=f"cam1/{e.id}/{e.phase}", phase=e.phase, body=body)
        assert expected["MessageAttributes"]["event_id"]["StringValue"] == f"cam1/{e.id}/{e.phase}"
        assert expected["MessageDeduplicationId"] == hashlib.sha256(f"cam1/{e.id}/{e.phase}".encode()).hexdigest()
        stubber.add_response("publish", {"MessageId": e.phase}, expected)
    monkeypatch.setattr(boto3, "client", lambda service, **kw: sns if service == "sns" else None)
    monkeypatch.setenv("VQA_SNS_TOPIC_ARN", topic)
    monkeypatch.delenv("VQA_NOTIFY_URL", raising=False)
    with stubber:
        assert notify_defects(NotifyRequest(stream_id="cam1", source="src", events=events)) == 2
        stubber.assert_no_pending_responses()
    standard = sns_message("arn:aws:sns:us-east-1:1:t", stream_id="s", event_id="s/e/opened", phase="opened", body=b"{}")
    assert "MessageDeduplicationId" not in standard and standard["MessageAttributes"]["phase"]["StringValue"] == "opened"
