"""Counting what each design really does: S3 requests, Temporal Cloud actions, state transitions, CPU.

Every figure of `python -m bench.cost` comes from one of these counters, applied
to real runs against real servers; nothing is derived from a formula of the
design. The rules that turn counts into billable units are tables here, next to
the documentation they follow.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client

# --- S3 -------------------------------------------------------------------------------------------

# S3 request price classes (aws.amazon.com/s3/pricing, "Requests & data retrievals"):
# PUT, COPY, POST, LIST are one class; GET, SELECT "and all other requests" the other;
# DELETE and CANCEL are free.
_PUT_CLASS_PREFIXES = ("Put", "Copy", "Post", "List", "Create", "Complete", "Upload")
_FREE_PREFIXES = ("Delete", "Abort")


def s3_price_class(operation: str) -> str:
    """'put', 'get' or 'free' for an S3 API operation name (`PutObject`, `GetObject`, ...)."""
    if operation.startswith(_FREE_PREFIXES):
        return "free"
    if operation.startswith(_PUT_CLASS_PREFIXES):
        return "put"
    return "get"


class S3RequestCounter:
    """Counts every HTTP request this process's boto3 S3 clients send (retries included), and
    the bytes of objects written and read, by bucket category (`categories`: bucket -> name).

    It hooks botocore's event system on each S3 client as boto3 creates it, so the code
    under test (activities/s3.py) is counted unchanged.
    """

    def __init__(self, categories: dict[str, str]) -> None:
        self.categories = dict(categories)
        self._lock = threading.Lock()
        self.requests: dict[str, Counter[str]] = defaultdict(Counter)
        self.bytes_up: Counter[str] = Counter()
        self.bytes_down: Counter[str] = Counter()

    def install(self) -> None:
        """From now on, every S3 client any boto3 session creates in this process is counted."""
        import boto3.session

        original = boto3.session.Session.client
        counter = self

        def client(session: Any, *args: Any, **kwargs: Any) -> Any:
            made = original(session, *args, **kwargs)
            if made.meta.service_model.service_name == "s3":
                counter.attach(made)
            return made

        boto3.session.Session.client = client  # type: ignore[method-assign]

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build.s3", self._parameters)
        events.register("before-send.s3", self._request)
        events.register("after-call.s3", self._response)

    def category(self, bucket: str | None) -> str:
        return self.categories.get(bucket or "", "other")

    def _parameters(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_bucket"] = params.get("Bucket")
        body = params.get("Body")
        if isinstance(body, (bytes, bytearray, memoryview)):
            context["bench_body_bytes"] = len(body)
        elif hasattr(body, "seek") and hasattr(body, "tell"):  # botocore wraps bytes in a file object
            position = body.tell()
            context["bench_body_bytes"] = body.seek(0, os.SEEK_END) - position
            body.seek(position)

    def _request(self, request: Any, event_name: str, **_: Any) -> None:
        url = urlparse(request.url)
        bucket = url.path.lstrip("/").split("/", 1)[0] or url.hostname.split(".", 1)[0]  # path-style, else virtual host
        with self._lock:
            self.requests[self.category(bucket)][event_name.rsplit(".", 1)[-1]] += 1

    def _response(self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if not 200 <= int(getattr(http_response, "status_code", 0)) < 300:
            return
        category = self.category(context.get("bench_bucket"))
        with self._lock:
            if model.name == "GetObject":
                self.bytes_down[category] += int(parsed.get("ContentLength") or 0)
            elif model.name == "PutObject":
                self.bytes_up[category] += int(context.get("bench_body_bytes") or 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": {c: dict(ops) for c, ops in self.requests.items()},
                "bytes_up": dict(self.bytes_up),
                "bytes_down": dict(self.bytes_down),
            }


def summarise_s3(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Requests by price class and category, and bytes moved, from an `S3RequestCounter.snapshot()`."""
    by_class: Counter[str] = Counter()
    by_category: dict[str, Counter[str]] = defaultdict(Counter)
    for category, ops in snapshot.get("requests", {}).items():
        for op, n in ops.items():
            price_class = s3_price_class(op)
            by_class[price_class] += n
            by_category[category][price_class] += n
    up, down = snapshot.get("bytes_up", {}), snapshot.get("bytes_down", {})
    return {
        "put_class": by_class["put"],
        "get_class": by_class["get"],
        "free": by_class["free"],
        "by_category": {c: dict(v) for c, v in by_category.items()},
        "operations": snapshot.get("requests", {}),
        "bytes_up": sum(up.values()),
        "bytes_down": sum(down.values()),
        "bytes_by_category": {c: int(up.get(c, 0)) + int(down.get(c, 0)) for c in set(up) | set(down)},
    }


# --- Temporal Cloud actions -------------------------------------------------------------------------

# Temporal Cloud's billable Actions as they appear in a workflow's history, per
# https://docs.temporal.io/cloud/actions ("Temporal Cloud Actions": the Usage Name /
# History Event Type tables). Continue-as-new is counted through the new run's
# WorkflowExecutionStarted, as the Cloud UI does.
ACTIONS_PER_EVENT: dict[int, int] = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: 1,  # client start, continue-as-new, child start
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: 2,  # the intent, and the start attempt
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: 1,  # "Activity started": its first attempt
    EventType.EVENT_TYPE_TIMER_STARTED: 1,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: 1,  # from a client or another workflow
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: 1,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED: 1,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 1,
    EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED: 1,
    EventType.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED: 1,
}
# Also from the history, by rule of the same page:
#   - activity retries: ActivityTaskStarted.attempt - 1 ("Activity started or retried");
#   - markers (local activities, side effects): one Action per workflow task that records any;
#   - local activity retries: WorkflowTaskCompleted.metering_metadata.nonfirst_local_activity_execution_attempts;
#   - a reset: WorkflowTaskFailed with cause RESET_WORKFLOW.
# Not in any history, counted by the server's own `action` metric (server_actions below):
#   - activity heartbeats that reach the server (the SDK throttles them to 80 % of the heartbeat timeout);
#   - queries.
NOT_IN_HISTORY_ACTION_TYPES = {
    "heartbeats": ("grpc_RecordActivityTaskHeartbeat", "grpc_RecordActivityTaskHeartbeatById"),
    "queries": ("grpc_QueryWorkflow",),
}


@dataclass
class ActivityRecord:
    activity_type: str
    scheduled_at: float
    workflow_task: int  # the WorkflowTaskCompleted event that scheduled it (one batch of commands)
    input: Any = None
    attempt: int = 0
    completed_at: float | None = None


@dataclass
class HistoryCount:
    """What a workflow's histories (all its runs) hold, and the billable actions they show."""

    runs: int = 0
    events: int = 0
    event_types: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    activities: list[ActivityRecord] = field(default_factory=list)

    @property
    def billable_actions(self) -> int:
        return sum(self.actions.values())

    def scheduled(self, activity_type: str | None = None) -> int:
        return sum(1 for a in self.activities if activity_type is None or a.activity_type == activity_type)

    def attempts(self) -> int:
        return sum(max(1, a.attempt) for a in self.activities)

    def fan_outs(self, activity_type: str) -> int:
        """Workflow tasks that scheduled at least one `activity_type` activity: batches started at once."""
        return len({a.workflow_task for a in self.activities if a.activity_type == activity_type})

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "events": self.events,
            "event_types": dict(self.event_types),
            "activities_scheduled": dict(Counter(a.activity_type for a in self.activities)),
            "activity_attempts": self.attempts(),
            "actions": dict(self.actions),
            "billable_actions_in_history": self.billable_actions,
        }


def _payload_json(payloads: Any) -> Any:
    try:
        return json.loads(payloads.payloads[0].data)
    except (IndexError, ValueError, AttributeError):
        return None


async def count_history(client: Client, workflow_id: str, first_run_id: str) -> HistoryCount:
    """Count a workflow's events and billable actions over its first run and every run continued from it."""
    count = HistoryCount()
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        count.runs += 1
        run_id = None
        marker_tasks: set[int] = set()
        by_scheduled: dict[int, ActivityRecord] = {}
        for event in history.events:
            count.events += 1
            kind = event.event_type
            count.event_types[EventType.Name(kind).removeprefix("EVENT_TYPE_")] += 1
            if kind in ACTIONS_PER_EVENT:
                count.actions[EventType.Name(kind).removeprefix("EVENT_TYPE_").lower()] += ACTIONS_PER_EVENT[kind]
            when = event.event_time.ToDatetime().timestamp()
            if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                a = event.activity_task_scheduled_event_attributes
                record = ActivityRecord(
                    activity_type=a.activity_type.name, scheduled_at=when,
                    workflow_task=a.workflow_task_completed_event_id, input=_payload_json(a.input),
                )
                by_scheduled[event.event_id] = record
                count.activities.append(record)
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                a = event.activity_task_started_event_attributes
                by_scheduled[a.scheduled_event_id].attempt = a.attempt
                if a.attempt > 1:
                    count.actions["activity_retries"] += a.attempt - 1
            elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                by_scheduled[event.activity_task_completed_event_attributes.scheduled_event_id].completed_at = when
            elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
                marker_tasks.add(event.marker_recorded_event_attributes.workflow_task_completed_event_id)
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                meta = event.workflow_task_completed_event_attributes.metering_metadata
                if meta.nonfirst_local_activity_execution_attempts:
                    count.actions["local_activity_retries"] += meta.nonfirst_local_activity_execution_attempts
            elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                if event.workflow_task_failed_event_attributes.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW:
                    count.actions["reset"] += 1
            elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                run_id = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        if marker_tasks:
            count.actions["marker_workflow_tasks"] += len(marker_tasks)
    return count


def read_server_actions(metrics_url: str, *, namespace: str = "default") -> Counter[str]:
    """The Temporal server's own `action` counter (what Temporal Cloud bills), by action type, for a namespace."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:  # noqa: S310 - our own dev server
        text = response.read().decode()
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("action{") or f'namespace="{namespace}"' not in line:
            continue
        labels, _, value = line.rpartition(" ")
        kind = labels.split('action_type="', 1)[1].split('"', 1)[0] if 'action_type="' in labels else "unknown"
        found[kind] += int(float(value))
    return found


def not_in_history_actions(server_delta: Counter[str]) -> dict[str, int]:
    return {name: sum(server_delta.get(t, 0) for t in types) for name, types in NOT_IN_HISTORY_ACTION_TYPES.items()}


# --- Step Functions -----------------------------------------------------------------------------------

def step_functions_transitions(history: HistoryCount, *, loop_activity: str, map_activity: str | None) -> dict[str, int]:
    """The state transitions a Step Functions Standard state machine of the same shape goes through,
    from what the Temporal run actually executed (aws.amazon.com/step-functions/pricing: one transition
    per state entered, retries included; every state of every Map iteration counts):

      - one Task state per activity attempt (probe, convert, each detector, window, report, ...);
      - one Choice state ("more stream?") per loop iteration: per `loop_activity` executed;
      - one Map state per fan-out: per workflow task that started `map_activity` activities together;
      - one Succeed state per execution.
    """
    parts = {
        "task_states": history.attempts(),
        "choice_states": history.scheduled(loop_activity),
        "map_states": history.fan_outs(map_activity) if map_activity else 0,
        "succeed_states": history.runs,
    }
    parts["total"] = sum(parts.values())
    return parts


# --- Processes ---------------------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, since it started (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
