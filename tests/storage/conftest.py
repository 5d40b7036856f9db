"""Fixtures for the object-store tests: one moto S3 server for the session, a fresh bucket
(and a fresh :class:`~vidgen.media.storage.s3.S3Storage`) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.s3_server import S3Server, new_bucket_name
from vidgen.media.storage.s3 import S3Storage
from vidgen.settings import Settings

SMALL_PART = 5 * 1024 * 1024  # S3's least part size: multipart tests stay small


def make_storage(server: S3Server, bucket: str, scratch: Path, **options) -> S3Storage:
    return S3Storage(
        bucket,
        prefix="media",
        endpoint_url=server.url,
        region="us-east-1",
        scratch_dir=scratch,
        **options,
    )


@pytest_asyncio.fixture
async def s3(
    s3_server: S3Server, aws_credentials: dict[str, str], tmp_path: Path
) -> AsyncIterator[S3Storage]:
    """A new bucket's storage, with the least part size (multipart from 5 MiB on)."""
    storage = make_storage(s3_server, new_bucket_name(), tmp_path / "scratch", part_size=SMALL_PART)
    assert await storage.create_bucket()
    try:
        yield storage
    finally:
        await storage.close()


@pytest.fixture
def s3_settings(settings: Settings, s3_server: S3Server, aws_credentials: dict[str, str]):
    """The test's settings, with its media in a new bucket of the test server."""
    settings.storage_url = f"s3://{new_bucket_name()}/media"
    settings.s3_endpoint_url = s3_server.url
    settings.s3_region = "us-east-1"
    return settings
