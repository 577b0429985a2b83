"""Defect notifications: each defect opened and closed, POSTed to a webhook and published to SNS.

Every notification carries a stable id (`<stream_id>/<event id>/<phase>`), the same
on every delivery attempt and for a retried window, so receivers de-duplicate;
delivery is at-least-once. The webhook body is signed with HMAC-SHA256:

    X-VQA-Signature: sha256=<hex of HMAC(VQA_WEBHOOK_SECRET, body)>
    X-VQA-Timestamp: <unix seconds of this attempt>
    X-VQA-Event-Id:  <the notification id>

The secret, the SNS topic and the default webhook come from the worker's
settings (VQA_WEBHOOK_SECRET, VQA_SNS_TOPIC_ARN, VQA_NOTIFY_URL), never from
the workflow, so they never appear in its history.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from vqa.contracts import DefectEvent, NotifyRequest, notification_id
from vqa.settings import Settings

from . import policy
from .errors import SourceUnavailableError

UNDELIVERED = "NotificationUndelivered"
REJECTED = "NotificationRejected"
REFUSED = "WebhookRefused"  # the worker's allow-list (activities/policy.py) forbids the webhook
SIGNATURE_HEADER = "X-VQA-Signature"
TIMESTAMP_HEADER = "X-VQA-Timestamp"
EVENT_ID_HEADER = "X-VQA-Event-Id"
_TIMEOUT_S = 10.0
# The receiver may come back: asking again later can succeed.
_TRANSIENT_STATUS = {408, 425, 429}


def notification_body(stream_id: str, source: str, event: DefectEvent) -> bytes:
    """The JSON document one event is delivered as (the same bytes on every attempt)."""
    document = {
        "id": notification_id(stream_id, event),
        "type": f"defect.{event.phase}",
        "stream_id": stream_id,
        "source": source,
        "event_id": event.id,
        "phase": event.phase,
        "defect": event.defect.model_dump(mode="json"),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: `sha256=<hex HMAC-SHA256 of the body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sns_message(topic_arn: str, *, stream_id: str, event_id: str, phase: str, body: bytes) -> dict[str, Any]:
    """The arguments of `sns.publish` for one notification; FIFO topics de-duplicate on the id."""
    message: dict[str, Any] = {
        "TopicArn": topic_arn,
        "Message": body.decode(),
        "Subject": f"VQA defect {phase}",
        "MessageAttributes": {
            "event_id": {"DataType": "String", "StringValue": event_id},
            "stream_id": {"DataType": "String", "StringValue": stream_id},
            "phase": {"DataType": "String", "StringValue": phase},
        },
    }
    if topic_arn.endswith(".fifo"):
        # Deduplication ids are at most 128 characters; stream ids alone may be 200.
        message["MessageDeduplicationId"] = hashlib.sha256(event_id.encode()).hexdigest()
        message["MessageGroupId"] = stream_id
    return message


def _post(url: str, body: bytes, *, event_id: str, secret: str | None, checks: policy.SourcePolicy) -> None:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "vqa-notify",
        TIMESTAMP_HEADER: str(int(time.time())),
        EVENT_ID_HEADER: event_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        # Checks the address each connection reaches, and each redirect, against the worker's policy.
        with checks.urlopen(req, timeout=_TIMEOUT_S, what="webhook") as response:
            response.read()
    except policy.SourceRefusedError as exc:
        raise ApplicationError(str(exc), type=REFUSED, non_retryable=True) from exc
    except SourceUnavailableError as exc:
        raise ApplicationError(f"webhook {url} unreachable for {event_id}: {exc}", type=UNDELIVERED) from exc
    except urllib.error.HTTPError as exc:
        message = f"webhook {url} answered {exc.code} for {event_id}"
        if 400 <= exc.code < 500 and exc.code not in _TRANSIENT_STATUS:
            raise ApplicationError(message, type=REJECTED, non_retryable=True) from exc
        raise ApplicationError(message, type=UNDELIVERED) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApplicationError(f"webhook {url} unreachable for {event_id}: {reason}", type=UNDELIVERED) from exc


def _publish(topic_arn: str, message: dict[str, Any]) -> None:
    import boto3
    import botocore.exceptions

    try:
        boto3.client("sns").publish(**message)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ApplicationError(f"SNS publish to {topic_arn} failed: {exc}", type=UNDELIVERED) from exc


def worker_targets(settings: Settings) -> tuple[str | None, str | None]:
    """This worker's own webhook (VQA_NOTIFY_URL) and SNS topic (VQA_SNS_TOPIC_ARN), where set."""
    return (settings.notify_url or "").strip() or None, (settings.sns_topic_arn or "").strip() or None


def has_notify_targets(settings: Settings) -> bool:
    """Whether this worker delivers notifications of its own (a default webhook or an SNS topic)."""
    return any(worker_targets(settings))


def notify_defects(request: NotifyRequest, *, settings: Settings | None = None) -> int:
    """Deliver each event to the webhook and the SNS topic; returns how many were delivered.

    A failed delivery raises a retryable error, and the retry starts after the
    events already delivered (heartbeat details); a receiver may still see an
    event twice, and de-duplicates on its id.
    """
    settings = settings or Settings()
    default_url, topic = worker_targets(settings)
    url = request.url or default_url
    secret = settings.secret("webhook_secret") or None
    checks = policy.SourcePolicy.from_settings(settings)
    if url is None and topic is None:
        return 0
    if url is not None:
        try:
            checks.check_webhook(url)  # a starter must not make the worker POST anywhere
        except policy.SourceRefusedError as exc:
            raise ApplicationError(str(exc), type=REFUSED, non_retryable=True) from exc
        except SourceUnavailableError as exc:
            raise ApplicationError(str(exc), type=UNDELIVERED) from exc
    details = activity.info().heartbeat_details if activity.in_activity() else []
    done = int(details[0]) if details else 0
    for index, event in enumerate(request.events):
        if index < done:
            continue
        event_id = notification_id(request.stream_id, event)
        body = notification_body(request.stream_id, request.source, event)
        if url is not None:
            _post(url, body, event_id=event_id, secret=secret, checks=checks)
        if topic is not None:
            _publish(topic, sns_message(topic, stream_id=request.stream_id, event_id=event_id, phase=event.phase, body=body))
        if activity.in_activity():
            activity.heartbeat(index + 1)
    return len(request.events)
