"""The S3 backend against a real S3-protocol server (moto, on 127.0.0.1): writes, reads,
ranges, deletes, multipart uploads that fail midway, leftovers of killed writers, presigned
URLs, and the clear errors of a missing bucket, refused credentials and no store at all."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.s3_server import S3Server, new_bucket_name
from tests.storage.conftest import SMALL_PART, make_storage
from vidgen.media.storage import Storage, StorageUnavailable, TooLarge, create_storage
from vidgen.media.storage.s3 import S3Storage
from vidgen.settings import Settings

KEY = "u1/v2/video.mp4"


async def _chunks(*parts: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for index, part in enumerate(parts):
        if fail_after is not None and index == fail_after:
            raise OSError("the source broke off")
        yield part
        await asyncio.sleep(0)


async def _keys(storage: Storage) -> list[str]:
    return sorted([found.key async for found in storage.list_objects()])


async def test_put_get_range_stat_delete(s3: S3Storage) -> None:
    assert isinstance(s3, Storage)
    data = os.urandom(1000)
    assert await s3.save_bytes(KEY, data) == 1000
    assert await s3.read_bytes(KEY) == data
    assert b"".join([c async for c in s3.read(KEY, start=10, end=20)]) == data[10:20]
    assert b"".join([c async for c in s3.read(KEY, start=990)]) == data[990:]
    found = await s3.stat(KEY)
    assert found is not None and found.size == 1000 and found.etag and found.modified > 0
    assert await s3.exists(KEY) and await s3.size(KEY) == 1000
    await s3.check()  # writes the probe object, which is no media key
    assert await _keys(s3) == [KEY]

    assert await s3.save_bytes(KEY, b"new") == 3  # overwritten whole
    assert await s3.read_bytes(KEY) == b"new"
    await s3.delete(KEY)
    await s3.delete(KEY)  # missing is fine
    assert await s3.stat(KEY) is None and not await s3.exists(KEY)
    with pytest.raises(FileNotFoundError):
        await s3.read_bytes(KEY)
    with pytest.raises(FileNotFoundError):
        await s3.size(KEY)
    assert await _keys(s3) == []


async def test_objects_live_under_the_prefix_with_their_media_type(
    s3: S3Storage, s3_server: S3Server
) -> None:
    await s3.save_bytes("u1/v2/thumbnail.jpg", b"jpeg")
    url = await s3.presign("u1/v2/thumbnail.jpg", expires_in=60)
    assert urlsplit(url).path == f"/{s3.bucket}/media/u1/v2/thumbnail.jpg"
    async with httpx.AsyncClient() as http:
        got = await http.get(url)
    assert got.status_code == 200 and got.content == b"jpeg"
    assert got.headers["content-type"] == "image/jpeg"


async def test_a_large_stream_goes_up_in_parts(s3: S3Storage) -> None:
    block = os.urandom(1024 * 1024)
    parts = [block] * (2 * SMALL_PART // len(block) + 1)  # three parts, the last one small
    size = await s3.save_stream(KEY, _chunks(*parts), max_bytes=100 * 1024 * 1024)
    assert size == len(block) * len(parts)
    assert await s3.read_bytes(KEY) == block * len(parts)
    assert await s3.incomplete_uploads() == []


async def test_a_multipart_upload_failing_midway_leaves_nothing(s3: S3Storage) -> None:
    block = os.urandom(1024 * 1024)
    blocks = [block] * 12  # the failure comes after the first part went up
    with pytest.raises(OSError, match="broke off"):
        await s3.save_stream(KEY, _chunks(*blocks, fail_after=7), max_bytes=10**9)
    assert await s3.stat(KEY) is None
    assert await s3.incomplete_uploads() == []  # aborted
    with pytest.raises(TooLarge):
        await s3.save_stream(KEY, _chunks(*blocks), max_bytes=6 * 1024 * 1024)
    assert await _keys(s3) == [] and await s3.incomplete_uploads() == []


async def test_a_failed_stream_keeps_the_previous_version(s3: S3Storage) -> None:
    await s3.save_bytes(KEY, b"old")
    with pytest.raises(OSError):
        await s3.save_stream(KEY, _chunks(b"new", b"x", fail_after=1), max_bytes=100)
    assert await s3.read_bytes(KEY) == b"old"


async def test_staging_uploads_ahead_and_shows_only_on_commit(
    s3: S3Storage, tmp_path: Path
) -> None:
    big, small = os.urandom(SMALL_PART + 12345), b"thumb"
    staging = s3.staging()
    video, thumb = staging.file(KEY), staging.file("u1/v2/thumbnail.jpg")
    assert video.parent == s3.scratch_dir
    video.write_bytes(big)
    thumb.write_bytes(small)
    files = {KEY: video, "u1/v2/thumbnail.jpg": thumb}
    await asyncio.to_thread(staging.prepare, files)
    assert len(await s3.incomplete_uploads()) == 1  # the video's parts, not visible yet
    assert await _keys(s3) == []
    sizes = await asyncio.to_thread(staging.commit, files)
    assert sizes == {KEY: len(big), "u1/v2/thumbnail.jpg": len(small)}
    assert await s3.read_bytes(KEY) == big
    assert await s3.read_bytes("u1/v2/thumbnail.jpg") == small
    assert await s3.incomplete_uploads() == []
    assert list(s3.scratch_dir.iterdir()) == []


async def test_a_discarded_staging_aborts_its_upload(s3: S3Storage) -> None:
    staging = s3.staging()
    path = staging.file(KEY)
    path.write_bytes(os.urandom(SMALL_PART + 1))
    await asyncio.to_thread(staging.prepare, {KEY: path})
    assert len(await s3.incomplete_uploads()) == 1
    await asyncio.to_thread(staging.discard)
    await asyncio.to_thread(staging.discard)  # idempotent
    assert await s3.incomplete_uploads() == [] and await _keys(s3) == []
    assert list(s3.scratch_dir.iterdir()) == []


async def test_purge_aborts_what_a_killed_writer_left(s3: S3Storage) -> None:
    # A writer killed mid-upload: its upload was started and a part sent, never completed.
    staging = s3.staging()
    path = staging.file(KEY)
    path.write_bytes(os.urandom(SMALL_PART + 1))
    await asyncio.to_thread(staging.prepare, {KEY: path})  # ... and then the process died
    # (moto dates every upload in 2010, so only the scratch file's age can be seen here.)
    assert len(await s3.incomplete_uploads()) == 1
    assert await s3.purge_incomplete(older_than_seconds=0) == 2  # the upload, the scratch file
    assert await s3.incomplete_uploads() == [] and await _keys(s3) == []


async def test_presigned_urls_expire_when_asked(s3: S3Storage) -> None:
    await s3.save_bytes(KEY, b"video")
    url = await s3.presign(KEY, expires_in=90)
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["90"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    # SigV4 takes 1 s to 7 days: longer asks are cut to the longest.
    longest = parse_qs(urlsplit(await s3.presign(KEY, expires_in=10**9)).query)
    assert longest["X-Amz-Expires"] == [str(7 * 24 * 3600)]


async def test_presigned_urls_use_the_public_endpoint(
    s3_server: S3Server, aws_credentials: dict[str, str], tmp_path: Path
) -> None:
    storage = S3Storage(
        new_bucket_name(),
        endpoint_url=s3_server.url,
        public_endpoint_url="https://media.example.com",
        scratch_dir=tmp_path,
    )
    try:
        url = await storage.presign(KEY, expires_in=60)
    finally:
        await storage.close()
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "media.example.com")
    assert parts.path == f"/{storage.bucket}/{KEY}"


async def test_a_missing_bucket_is_a_clear_error(
    s3_server: S3Server, aws_credentials: dict[str, str], tmp_path: Path
) -> None:
    storage = make_storage(s3_server, new_bucket_name(), tmp_path)
    try:
        with pytest.raises(StorageUnavailable, match="does not exist.*vidgen storage init"):
            await storage.check()
        assert await storage.create_bucket()
        assert not await storage.create_bucket()  # there already, and ours
        await storage.check()
    finally:
        await storage.close()


async def test_wrong_credentials_are_a_clear_error(
    aws_credentials: dict[str, str], tmp_path: Path
) -> None:
    server = S3Server(tmp_path / "auth.log", auth=True).start()
    storage = make_storage(server, new_bucket_name(), tmp_path)
    try:
        with pytest.raises(StorageUnavailable, match="refused the credentials.*AWS_ACCESS_KEY_ID"):
            await storage.check()
    finally:
        await storage.close()
        server.stop()


async def test_an_unreachable_store_is_a_clear_error(
    aws_credentials: dict[str, str], tmp_path: Path
) -> None:
    from tests.s3_server import free_port

    storage = S3Storage(
        "vidgen-nowhere",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        scratch_dir=tmp_path,
        max_attempts=1,  # the retries' backoff would only make the test slower
    )
    try:
        with pytest.raises(StorageUnavailable, match="Cannot reach.*VIDGEN_S3_ENDPOINT_URL"):
            await storage.check()
    finally:
        await storage.close()


def test_the_settings_choose_the_backend(tmp_path: Path) -> None:
    local = create_storage(Settings(_env_file=None, data_dir=tmp_path))
    assert local.description == (tmp_path / "media").resolve().as_uri()
    s3 = create_storage(
        Settings(
            _env_file=None,
            data_dir=tmp_path,
            storage_url="s3://my-bucket/some/prefix",
            s3_endpoint_url="http://127.0.0.1:9000",
        )
    )
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("my-bucket", "some/prefix", s3.endpoint_url)
    assert s3.scratch_dir == (tmp_path / "media" / ".tmp").resolve()


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3://UPPER", "s3://ok-bucket/../x", "file://relative/path", "ftp://x/y", "s3://b"],
)
def test_bad_storage_urls_are_refused_up_front(tmp_path: Path, url: str) -> None:
    from vidgen import errors

    settings = Settings(_env_file=None, data_dir=tmp_path, storage_url=url)
    with pytest.raises(errors.ConfigurationError, match="VIDGEN_STORAGE_URL"):
        settings.check()
