"""Recorded histories replay against the current workflow code (tests/record_histories.py makes them):
a change that would break the streams running now fails here, not in production."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows import StreamMonitorWorkflow

from .conftest import run_async

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))


def test_the_recorded_cases_are_there() -> None:
    names = {path.stem for path in HISTORIES}
    assert {"plain", "stopped", "continue-as-new-run1", "continue-as-new-run2"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_history_replays_on_the_current_workflow_code(path: Path) -> None:
    text = path.read_text()
    workflow_id = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"].get("workflowId") or path.stem
    history = WorkflowHistory.from_json(workflow_id, text)
    replayer = Replayer(workflows=[StreamMonitorWorkflow], data_converter=pydantic_data_converter)
    result = run_async(replayer.replay_workflow(history, raise_on_replay_failure=True))
    assert result.replay_failure is None
