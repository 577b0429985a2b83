"""docker-compose.yml cannot run here (no Docker engine); it must still describe the system."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_compose_describes_temporal_with_ui_and_a_worker() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    temporal = services["temporal"]
    assert temporal["image"].startswith("temporalio/temporal")
    assert "start-dev" in temporal["command"] and "0.0.0.0" in temporal["command"]
    assert {"7233:7233", "8233:8233"} <= {str(p).split()[0] for p in temporal["ports"]}

    worker = services["worker"]
    assert worker["build"] == "." and worker["command"] == ["python", "worker.py"]
    assert worker["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert "temporal" in worker["depends_on"]

    starter = services["starter"]
    assert starter["entrypoint"] == ["python", "starter.py"]
    assert starter["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_the_image_builds_from_the_project_and_runs_the_worker() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in ("vqa", "workflows", "activities", "detectors"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'CMD ["python", "worker.py"]' in dockerfile
