"""docker-compose.yml runs the API and the workers on the object store, sharing no volume."""

from __future__ import annotations

from pathlib import Path

import yaml

from vidgen.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_vidgen_services_share_no_volume_and_keep_media_in_the_bucket() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    vidgen = {name: s for name, s in services.items() if s.get("image") == "vidgen:latest"}
    assert {"api", "worker", "migrate", "storage-init"} <= set(vidgen)
    for name, service in vidgen.items():
        assert not service.get("volumes"), f"{name} mounts a volume"
        env = service["environment"]
        assert env["VIDGEN_STORAGE_URL"].startswith("s3://"), name
        assert env["VIDGEN_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(env), name
    assert services["storage-init"]["command"] == ["vidgen", "storage", "init"]
    for name in ("api", "worker"):
        needs = services[name]["depends_on"]["storage-init"]
        assert needs == {"condition": "service_completed_successfully"}
    assert services["minio"]["image"].startswith("minio/minio:")


def test_the_workers_serve_their_metrics_and_health_inside_the_network() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    worker = services["worker"]
    assert worker["command"][:2] == ["vidgen", "worker"]
    args = build_parser().parse_args(worker["command"][1:])
    assert args.worker_metrics_port == 9101 and args.host == "0.0.0.0"
    # Its health check asks that port's /readyz; no host port, so `--scale worker=N` works.
    probe = " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{args.worker_metrics_port}/readyz" in probe
    assert not worker.get("ports")
