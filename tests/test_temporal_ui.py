"""What the Temporal UI and visibility show of a stream: summary, current details, search attributes.

One live stream is held with a defect open (its playlist stops growing inside a
black segment), so "streams with open defects" has something to find; the last
test stops it and checks what the attributes say of a finished stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle

from support import hls
from vqa.contracts import StreamReport, workflow_id_for
from vqa.runtime import connect
from vqa.synth import ClipSpec, Segment, make_clip
from workflows import StreamMonitorWorkflow

from . import cdp
from .conftest import REPO, TemporalServer, run_async, run_starter, worker_subprocess

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "tests" / "artifacts"
# Black from 2 s to 10 s; only the first 6 s are ever published, so the black is open.
CLIP = ClipSpec(duration_s=12.0, video=[Segment("black", 2.0, 10.0)], keyframe_interval_s=1.0)
PUBLISHED_S = 6


@dataclass
class HeldStream:
    server: TemporalServer
    queue: str
    stream_id: str
    source: str

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.stream_id)

    async def handle(self) -> tuple[Client, WorkflowHandle]:  # type: ignore[type-arg]
        client = await connect(self.server.settings(self.queue))
        return client, client.get_workflow_handle(self.workflow_id)


@pytest.fixture(scope="module")
def held(temporal_server: TemporalServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeldStream]:
    directory = tmp_path_factory.mktemp("ui-live")
    segments = hls.segment(make_clip(directory / "clip.mp4", CLIP), directory, segment_s=1.0)
    hls.LivePlaylist(directory, segments, initial=PUBLISHED_S, end=False)  # written once, never grows
    http = hls.StaticServer(directory)
    queue = f"ui-{os.urandom(4).hex()}"
    stream = HeldStream(temporal_server, queue, f"held-{os.urandom(3).hex()}", f"{http.url}/live.m3u8")
    try:
        with worker_subprocess(temporal_server.env(queue), directory / "worker.log"):
            started = run_starter(temporal_server, queue, stream.source, "--stream-id", stream.stream_id,
                                  "--window-seconds", "1")
            assert started.returncode == 0, started.stderr

            async def analysed() -> None:
                _, handle = await stream.handle()
                deadline = time.monotonic() + 90
                while (await handle.query(StreamMonitorWorkflow.status)).windows_done < PUBLISHED_S:
                    assert time.monotonic() < deadline, "the published seconds were not analysed"
                    await asyncio.sleep(0.3)

            run_async(analysed())
            yield stream
    finally:
        http.close()


async def _visible(client: Client, query: str, workflow_id: str, *, timeout_s: float = 20) -> bool:
    """Whether `query` lists the workflow (visibility is updated a moment after the upsert)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ids = [w.id async for w in client.list_workflows(query)]
        if workflow_id in ids:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)


def test_summary_current_details_and_window_summaries(held: HeldStream) -> None:
    async def scenario() -> tuple[str | None, str | None, WorkflowMetadata, list[str]]:
        _, handle = await held.handle()
        description = await handle.describe()
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        history = await handle.fetch_history()
        summaries = []
        converter = handle._client.data_converter  # noqa: SLF001
        for event in history.events:
            if event.HasField("activity_task_scheduled_event_attributes") and event.user_metadata.HasField("summary"):
                summaries.append((await converter.decode([event.user_metadata.summary]))[0])
        return await description.static_summary(), await description.static_details(), metadata, summaries

    summary, details, metadata, summaries = run_async(scenario())
    assert summary is not None and held.stream_id in summary and held.source in summary
    assert details is not None and "windows** 1 s" in details and "detectors** all" in details
    current = metadata.current_details
    assert "**running**" in current
    assert f"windows {PUBLISHED_S}" in current
    assert "lag" in current
    # The open black is a row of the defects table, with no end yet.
    assert re.search(r"\| black \| video \| 2\.0\d \| … \| [\d.]+ \| [\d.]* \| open \|", current), current
    assert "1 defect(s), 1 open" in current
    assert summaries[0] == "window 0 · 0–1 s"
    assert f"window {PUBLISHED_S - 1} · {PUBLISHED_S - 1}–{PUBLISHED_S} s" in summaries


def test_search_attributes_list_streams_with_open_defects_and_by_source(held: HeldStream) -> None:
    async def scenario() -> dict[str, object]:
        client, handle = await held.handle()
        assert await _visible(client, f"VqaOpenDefects > 0 AND WorkflowId = '{held.workflow_id}'", held.workflow_id)
        assert await _visible(client, f"VqaSource = '{held.source}'", held.workflow_id)
        assert await _visible(client, "VqaState = 'running'", held.workflow_id)
        description = await handle.describe()
        return {pair.key.name: pair.value for pair in description.typed_search_attributes}

    attributes = run_async(scenario())
    assert attributes["VqaOpenDefects"] == 1 and attributes["VqaDefectKinds"] == ["black"]

    listed = run_starter(held.server, held.queue, "list", "--open-defects", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["stream_id"]: row for row in json.loads(listed.stdout)}
    assert rows[held.stream_id]["open_defects"] == 1 and rows[held.stream_id]["state"] == "running"
    by_source = run_starter(held.server, held.queue, "list", "--source", held.source, "--json")
    assert [row["stream_id"] for row in json.loads(by_source.stdout)] == [held.stream_id]
    nothing = run_starter(held.server, held.queue, "list", "--source", held.source + "?other", "--json")
    assert json.loads(nothing.stdout) == []


def test_the_ui_page_of_a_stream_shows_its_current_details(held: HeldStream) -> None:
    """The Temporal UI (served by the dev server) renders the stream's page in headless Chromium."""
    async def run_id() -> str:
        _, handle = await held.handle()
        return str((await handle.describe()).run_id)

    url = (f"http://127.0.0.1:{held.server.ui_port}/namespaces/default/workflows/{held.workflow_id}/"
           f"{run_async(run_id())}/user-metadata")
    with cdp.live_page(url, width=1400, height=1300) as page:
        # The current details as the UI renders their markdown: the position line and the open black.
        text = page.wait_for_text(held.workflow_id, "position 6.0 s", "defect(s)", "open", timeout_s=45)
        shot = page.screenshot(ARTIFACTS / "temporal-ui-stream.png")
    assert "black" in text
    assert shot.stat().st_size > 10_000
    if os.environ.get("VQA_UPDATE_DOCS"):
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "docs" / "temporal-ui.png")


def test_a_stopped_stream_says_so_in_its_attributes(held: HeldStream) -> None:
    stopped = run_starter(held.server, held.queue, "stop", held.stream_id)
    assert stopped.returncode == 0, stopped.stderr

    async def scenario() -> tuple[StreamReport, dict[str, object]]:
        client, handle = await held.handle()
        report = StreamReport.model_validate(await handle.result())
        assert await _visible(client, f"VqaState = 'stopped' AND VqaOpenDefects = 0 AND VqaDefects = 1 "
                                      f"AND WorkflowId = '{held.workflow_id}'", held.workflow_id)
        description = await handle.describe()
        return report, {pair.key.name: pair.value for pair in description.typed_search_attributes}

    report, attributes = run_async(scenario())
    assert report.status == "stopped" and [d.kind for d in report.defects] == ["black"]
    assert attributes["VqaDefectKinds"] == ["black"]
    listed = run_starter(held.server, held.queue, "list", "--state", "stopped", "--defect-kind", "black", "--json")
    assert held.stream_id in [row["stream_id"] for row in json.loads(listed.stdout)]
