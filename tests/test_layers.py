"""The layers stay apart (STYLE.md): workflows never load media or cloud libraries, detectors never
load Temporal, PyAV or boto3. Checked in a fresh interpreter, where nothing else was imported first."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO


def _loaded_after(imports: list[str], watched: list[str]) -> list[str]:
    """Of `watched`, the modules a fresh interpreter has loaded after importing `imports`."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {imports!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {watched!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    return json.loads(done.stdout)


def test_workflow_modules_load_no_media_or_cloud_library() -> None:
    # What the worker hands its workflow sandbox: the workflow and what it imports through.
    loaded = _loaded_after(["workflows", "workflows.stream", "vqa.contracts", "vqa.stitch"],
                           ["numpy", "av", "boto3", "botocore", "activities", "detectors"])
    assert loaded == []


def test_detectors_load_no_temporal_av_or_boto3() -> None:
    modules = ["detectors", *(f"detectors.{f.stem}" for f in sorted((REPO / "detectors").glob("*.py")) if f.stem != "__init__")]
    assert "detectors.freeze" in modules
    loaded = _loaded_after(modules, ["temporalio", "av", "boto3", "botocore", "activities"])
    assert loaded == []
