"""bench.channel on a short live ladder: a channel costs its renditions and little more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.channel import main

pytestmark = pytest.mark.integration


def test_a_channel_costs_what_its_renditions_cost(tmp_path: Path) -> None:
    out = tmp_path / "channel.json"
    main(["--seconds", "12", "--window-seconds", "4", "--out", str(out)])
    runs = {r["run"]: r for r in json.loads(out.read_text())["runs"]}
    assert set(runs) == {"all", "lowest-highest", "single"}
    assert all(r["status"] == "completed" for r in runs.values()), runs
    assert len(runs["all"]["decoded"]) == 6 and sorted(runs["lowest-highest"]["decoded"]) == ["272p", "96p"]
    # The channel's own workflow runs no window: its activities are the probe, the watch and the report.
    own = runs["all"]["activities"]["channel"]
    assert "analyze_window" not in own and own.get("probe_channel") == 1 and own.get("write_report") == 1, own
    # A decoded video rendition costs what the same playlist analysed alone costs (its children's
    # actions within a few: the rendition signals its channel, the single stream has no channel).
    single = runs["single"]["actions_in_histories"]["stream"]
    for run in ("all", "lowest-highest"):
        assert abs(runs[run]["actions_in_histories"]["272p"] - single) <= 4, (run, runs[run], single)
    # Decoding two renditions instead of six costs less, in actions and in worker CPU.
    assert runs["lowest-highest"]["actions"] < runs["all"]["actions"]
    assert runs["lowest-highest"]["worker_cpu_s"] < runs["all"]["worker_cpu_s"]
    # Both channel runs found the source's black once, on every rendition decoded.
    for run in ("all", "lowest-highest"):
        blacks = [d for d in runs[run]["defects"] if d[0] == "black"]
        assert [(scope, sorted(names)) for _, scope, names in blacks] == [("source", sorted(runs[run]["decoded"][:4] if run == "all" else ["272p", "96p"]))], blacks
