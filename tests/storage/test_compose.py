"""docker-compose.yml runs the API and the workers on the object store, sharing no volume."""

from __future__ import annotations

from pathlib import Path

import yaml

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
