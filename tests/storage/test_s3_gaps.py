"""Issue 20, what the other storage tests leave open: ``vidgen migrate`` creates no bucket
(only ``vidgen storage init`` does); wrong credentials make ``/readyz`` not ready, naming
the store, and make ``vidgen serve`` and ``vidgen worker`` refuse to start; and media served
by redirect go to presigned URLs that live no longer than the signed link."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from tests.s3_server import S3Server, new_bucket_name
from vidgen import cli
from vidgen.events.memory import MemoryBus
from vidgen.media import signing
from vidgen.media.storage import StorageUnavailable
from vidgen.media.storage.s3 import S3Storage
from vidgen.runtime import Runtime
from vidgen.settings import Settings
from vidgen.web.health import health_routes
from vidgen.web.media import media_routes

pytestmark = pytest.mark.sqlite_only  # the store is under test here, not the database


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: str, bucket: str) -> None:
    for name, value in {
        "VIDGEN_STORAGE_URL": f"s3://{bucket}/media",
        "VIDGEN_S3_ENDPOINT_URL": endpoint,
        "VIDGEN_DATA_DIR": str(tmp_path / "data"),
        "VIDGEN_DATABASE_URL": f"sqlite://{tmp_path / 'data' / 'migrate.sqlite3'}",
        "VIDGEN_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[S3Server]:
    """A second moto server that checks signatures and knows no key: every credential is
    refused (InvalidAccessKeyId), as a real store refuses wrong ones."""
    server = S3Server(tmp_path / "auth.log", auth=True).start()
    try:
        yield server
    finally:
        server.stop()


async def _bucket_exists(server: S3Server, bucket: str, tmp_path: Path) -> bool:
    storage = S3Storage(bucket, endpoint_url=server.url, scratch_dir=tmp_path / "probe")
    try:
        return not await storage.create_bucket()  # False: created now, so it was not there
    finally:
        await storage.close()


async def test_migrate_creates_no_bucket(
    s3_server: S3Server,
    aws_credentials: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = new_bucket_name()
    _env(monkeypatch, tmp_path, s3_server.url, bucket)
    (tmp_path / "data").mkdir()
    # cli.main runs its own event loop: run it in a thread, away from this test's loop.
    assert await asyncio.to_thread(cli.main, ["migrate"]) == 0
    assert capsys.readouterr().out.startswith("migrated sqlite://")
    assert (tmp_path / "data" / "migrate.sqlite3").stat().st_size > 0  # it did migrate
    # The bucket is still missing: `storage check` says so, and nothing made it.
    assert await asyncio.to_thread(cli.main, ["storage", "check"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not await _bucket_exists(s3_server, bucket, tmp_path)


def test_wrong_credentials_stop_serve_and_worker_from_starting(
    auth_server: S3Server,
    aws_credentials: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = new_bucket_name()
    _env(monkeypatch, tmp_path, auth_server.url, bucket)
    for command in ("serve", "worker"):
        assert cli.main([command]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: The object store refused the credentials"), err
        assert f"s3://{bucket}/media" in err and "AWS_ACCESS_KEY_ID" in err
        assert "Traceback" not in err
    assert cli.main(["storage", "check"]) == 1
    assert "refused the credentials" in capsys.readouterr().err


async def test_wrong_credentials_make_readyz_not_ready_naming_the_store(
    auth_server: S3Server,
    s3_server: S3Server,
    aws_credentials: dict[str, str],
    db: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket = new_bucket_name()
    # The same bucket on a store that takes the credentials: ready.
    db.storage_url = f"s3://{bucket}/media"
    db.s3_endpoint_url = s3_server.url
    good = Runtime.create(db, bus=MemoryBus())
    assert isinstance(good.storage, S3Storage)
    assert await good.storage.create_bucket()
    await good.open()
    try:
        ready = await _readyz(good)
    finally:
        await good.close()
    assert ready.status_code == 200 and ready.json()["status"] == "ready"

    # A process cannot open its runtime on a store that refuses the credentials (the app's
    # start-up fails, saying why) ...
    db.s3_endpoint_url = auth_server.url
    bad = Runtime.create(db, bus=MemoryBus())
    try:
        with pytest.raises(StorageUnavailable, match="refused the credentials"):
            await bad.open()
    finally:
        await bad.close()

    # ... and one already running whose store starts refusing them (keys revoked) is not
    # ready: 503, with the storage check (and only it) failing, and the log saying which
    # store refused what.
    running = Runtime.create(db, bus=MemoryBus())
    await running.storage.open()
    await running.bus.start()
    try:
        with caplog.at_level(logging.WARNING, logger="vidgen.web.health"):
            refused = await _readyz(running)
    finally:
        await running.close()
    assert refused.status_code == 503
    assert refused.json() == {
        "status": "not ready",
        "checks": {"database": True, "bus": True, "storage": False},
    }
    [logged] = [r.getMessage() for r in caplog.records if r.name == "vidgen.web.health"]
    assert "refused the credentials" in logged and f"s3://{bucket}/media" in logged


async def _readyz(runtime: Runtime) -> httpx.Response:
    app = Starlette(routes=health_routes(runtime))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        return await http.get("/readyz")


async def test_redirected_media_go_to_a_presigned_url_that_lives_no_longer_than_the_link(
    s3: S3Storage,
) -> None:
    """``VIDGEN_MEDIA_REDIRECT``: a valid link answers 302 to the store's presigned URL,
    valid no longer than the link itself, and the store then answers ranges; a bad or
    expired link, or a missing object, gets no presigned URL at all."""
    data = os.urandom(300_000)
    key = "u/1/v/7/video.mp4"
    await s3.save_bytes(key, data)
    secret = "redirect-secret"
    app = Starlette(routes=media_routes(s3, secret, redirect=True))
    now = time.time()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as api:
        link = signing.signed_url("http://api", key, ttl=120, secret=secret, now=now)
        moved = await api.get(link, headers={"Range": "bytes=10-19"})
        tampered = await api.get(link.replace("sig=", "sig=x"))
        expired = await api.get(signing.signed_url("http://api", key, ttl=-5, secret=secret))
        missing = await api.get(
            signing.signed_url("http://api", "u/1/v/8/video.mp4", ttl=120, secret=secret)
        )
    assert moved.status_code == 302
    assert moved.headers["cache-control"].startswith("private, max-age=")
    location = urlsplit(moved.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == s3.endpoint_url
    assert location.path == f"/{s3.bucket}/media/{key}"
    lifetime = int(parse_qs(location.query)["X-Amz-Expires"][0])
    assert 1 <= lifetime <= 120  # never longer than what is left of the link
    for refused, status in ((tampered, 403), (expired, 403), (missing, 404)):
        assert refused.status_code == status and "location" not in refused.headers

    async with httpx.AsyncClient(timeout=30) as store:
        ranged = await store.get(moved.headers["location"], headers={"Range": "bytes=10-19"})
        whole = await store.get(moved.headers["location"])
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert whole.status_code == 200 and whole.content == data
