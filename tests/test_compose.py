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


def test_compose_runs_a_local_s3_and_points_the_worker_at_it() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    s3 = services["seaweedfs"]
    assert s3["image"].startswith("chrislusf/seaweedfs")
    assert s3["command"][0] in ("mini", "server")
    assert "8333:8333" in {str(p) for p in s3["ports"]}
    assert any(str(v).endswith(":/data") for v in s3["volumes"]) and "seaweedfs-data" in compose["volumes"]
    buckets = next(arg for arg in s3["command"] if arg.startswith("-bucket=")).partition("=")[2].split(",")

    env = services["worker"]["environment"]
    assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
        s3["environment"]["AWS_ACCESS_KEY_ID"], s3["environment"]["AWS_SECRET_ACCESS_KEY"],
    ), "the worker uses the S3 server's identity"
    assert env["VQA_RESULTS"].startswith("s3://")
    assert env["VQA_RESULTS"][5:].split("/")[0] in buckets, "results go to a bucket the server creates"
    assert "seaweedfs" in services["worker"]["depends_on"]
