"""``vidgen storage init|check`` and the start-up check of ``vidgen serve``/``worker``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.s3_server import S3Server, new_bucket_name
from vidgen import cli


@pytest.fixture
def s3_env(
    s3_server: S3Server, aws_credentials: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> str:
    bucket = new_bucket_name()
    for name, value in {
        "VIDGEN_STORAGE_URL": f"s3://{bucket}/media",
        "VIDGEN_S3_ENDPOINT_URL": s3_server.url,
        "VIDGEN_DATA_DIR": str(tmp_path / "data"),
        "VIDGEN_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return bucket


def test_init_creates_the_bucket_and_check_finds_it(
    s3_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["storage", "check"]) == 1
    assert "does not exist" in capsys.readouterr().err
    for command in ("serve", "worker"):  # both refuse to start, saying why
        assert cli.main([command]) == 1
        assert "vidgen storage init" in capsys.readouterr().err

    assert cli.main(["storage", "init"]) == 0
    assert capsys.readouterr().out.strip() == f"created s3://{s3_env}/media"
    assert cli.main(["storage", "init"]) == 0
    assert capsys.readouterr().out.strip() == f"found s3://{s3_env}/media"
    assert cli.main(["storage", "check"]) == 0
    assert "is ready" in capsys.readouterr().out


def test_the_local_folder_needs_no_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIDGEN_STORAGE_URL", (tmp_path / "m").as_uri())
    monkeypatch.chdir(tmp_path)
    assert cli.main(["storage", "init"]) == 0
    assert capsys.readouterr().out.strip() == f"{(tmp_path / 'm').as_uri()} is ready"
