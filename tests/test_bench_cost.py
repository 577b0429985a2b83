"""The cost benchmark (bench/cost.py) on a tiny clip against real servers: its counting is exact.

Both designs analyse a 6 s clip with three detectors on a real Temporal dev server
and a real S3 server (SeaweedFS), twice each, on workers warmed up by a 2 s clip.
What the per-second design must cost per stream is known in advance, request by
request, so any drift in the counters, or a warm-up or repeat counted into a
stream, shows here.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cost import chart, compare, table, targets
from support.servers import Servers, running_servers
from vqa.synth import ClipSpec, Segment, make_clip

pytestmark = pytest.mark.integration

SECONDS = 6
REPEAT = 2  # streams per design, on warm workers (after a 2 s warm-up stream each)
DETECTORS = ["black", "silence", "signal_loss"]  # a video, an audio and an "av" detector
TINY = ClipSpec(
    duration_s=float(SECONDS),
    video=[Segment("black", 1.0, 3.5)],
    audio=[Segment("silence", 2.0, 4.5)],
    keyframe_interval_s=1.0,
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with running_servers(tmp_path_factory.mktemp("bench-servers")) as found:
        yield found


@pytest.fixture(scope="module")
def result(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("bench-cost")
    clip = make_clip(directory / "tiny.mp4", TINY)
    warmup = make_clip(directory / "warmup.mp4", ClipSpec(duration_s=2.0, keyframe_interval_s=1.0))
    return asyncio.run(compare(servers, clip, directory=directory, detector_names=DETECTORS,
                               repeat=REPEAT, warmup=warmup))


def test_the_per_second_design_costs_exactly_what_its_shape_says(result: dict[str, Any]) -> None:
    run = result["runs"]["baseline"]
    d = len(DETECTORS)
    scheduled = run["history"]["activities_scheduled"]
    assert scheduled == {"probe_source": 1, "convert_second": SECONDS, "detect_second": SECONDS * d, "write_report": 1}
    # The start, and every activity once (nothing retried, nothing heartbeats on a file).
    assert run["billable_actions"] == 1 + SECONDS * (1 + d) + 2
    assert run["heartbeats"] == 0
    # Task per activity, a Choice and a Map per second, one Succeed.
    assert run["step_functions"] == {
        "task_states": SECONDS * (1 + d) + 2, "choice_states": SECONDS, "map_states": SECONDS,
        "succeed_states": 1, "total": SECONDS * (3 + d) + 3,
    }
    # A video and an audio object per second; black reads video, silence audio, signal_loss both.
    intermediate = run["s3"]["operations"]["intermediate"]
    assert intermediate == {"PutObject": 2 * SECONDS, "GetObject": 4 * SECONDS}
    assert run["s3"]["bytes_by_category"]["intermediate"] > 3 * SECONDS * 320 * 240 * 25  # luma, up and down


def test_ours_writes_no_intermediate_object_and_counts_agree(result: dict[str, Any]) -> None:
    run = result["runs"]["ours"]
    # One window; defects were found, but the benchmark's worker has no notification target
    # and the stream no notify_url: no delivery is scheduled, so no action is spent on one.
    assert run["defects"]
    assert run["history"]["activities_scheduled"] == {"probe_source": 1, "analyze_window": 1, "write_report": 1}
    assert "intermediate" not in run["s3"]["operations"]
    assert result["lines"]["s3_intermediate_requests"]["ours"] == 0
    assert targets(result)["zero_intermediate_s3"]
    for design in ("ours", "baseline"):
        counted = result["runs"][design]
        # The rules applied to the histories, plus heartbeats and queries, match what the server itself billed.
        assert counted["billable_actions"] == counted["server_action_metric_total"], design


def test_both_designs_find_the_same_defects(result: dict[str, Any]) -> None:
    kinds = {design: sorted((k, round(s)) for k, _, s, _ in run["defects"]) for design, run in result["runs"].items()}
    assert kinds["ours"] == kinds["baseline"] == [("black", 1), ("silence", 2)]


def test_ours_costs_less_on_every_counted_line(result: dict[str, Any]) -> None:
    for key in (
        "history_events", "activities", "billable_actions", "step_functions_transitions", "s3_get_class",
        "s3_intermediate_requests", "s3_mb_moved", "worker_cpu_s", "usd_month_total_temporal",
        "usd_month_total_step_functions",
    ):
        line = result["lines"][key]
        assert line["ours"] < line["baseline"], (key, line)


def test_table_and_chart(result: dict[str, Any], tmp_path: Path) -> None:
    text = table(result)
    assert "Temporal Cloud billable actions" in text and "| 0 |" in text
    # The decoding floor both designs share is measured on the clip, and ours spends less beyond it.
    floor = result["lines"]["decode_only_cpu_s"]
    assert floor["ours"] == floor["baseline"] > 0
    beyond = result["lines"]["worker_cpu_beyond_decode_s"]
    assert beyond["ours"] < beyond["baseline"]
    pytest.importorskip("matplotlib")
    chart([result | {"label": "tiny"}], tmp_path / "cost.png", title="test")
    assert (tmp_path / "cost.png").stat().st_size > 10_000


def test_repeats_on_warm_workers_count_the_same_and_report_the_median(result: dict[str, Any]) -> None:
    for design, run in result["runs"].items():
        each = run["each_run"]
        assert run["repeats"] == REPEAT and len(set(each["workflow_id"])) == REPEAT, design
        assert run["counts_identical"], design  # the exact counts above hold for every repeat
        assert run["cpu_s"]["worker"] == statistics.median(each["worker_cpu_s"]), design
        assert run["wall_s"] == statistics.median(each["wall_s"]), design
        assert all(cpu > 0 for cpu in each["worker_cpu_s"]), design
    assert result["warmup"] == "warmup.mp4"
