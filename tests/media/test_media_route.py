"""The signed media route over real HTTP (uvicorn on a free port, httpx as the client), on
both backends: a local folder's files (FileResponse) and an object store's objects streamed
through the API (moto's S3 server) answer every request alike."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from tests.s3_server import new_bucket_name
from vidgen.media import signing
from vidgen.media.storage import LocalStorage, Storage, make_key
from vidgen.media.storage.s3 import S3Storage
from vidgen.web.media import media_routes

from .conftest import SECRET

DATA = bytes(range(256)) * 40  # 10240 bytes, every offset recognisable
KEY = make_key(1, 7, "video", "mp4")


@pytest.fixture(params=["file", "s3"])
async def storage(
    request: pytest.FixtureRequest, storage: Storage, tmp_path
) -> AsyncIterator[Storage]:
    """The folder of tests/media/conftest.py, or a new bucket of the test S3 server."""
    if request.param == "file":
        yield storage
        return
    server = request.getfixturevalue("s3_server")
    request.getfixturevalue("aws_credentials")
    s3 = S3Storage(new_bucket_name(), endpoint_url=server.url, scratch_dir=tmp_path / "scratch")
    await s3.create_bucket()
    try:
        yield s3
    finally:
        await s3.close()


@pytest.fixture
async def server(storage: Storage) -> AsyncIterator[str]:
    app = Starlette(routes=media_routes(storage, SECRET))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", ws="none", http="h11", log_level="warning", access_log=False
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    for _ in range(500):  # uvicorn has no started event to await
        if uv.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert uv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def client(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=10) as http:
        yield http


@pytest.fixture
async def stored(storage: Storage) -> str:
    await storage.save_bytes(KEY, DATA)
    return KEY


def _url(key: str, ttl: int = 300) -> str:
    full = signing.signed_url("http://x", key, ttl=ttl, secret=SECRET)
    parts = urlsplit(full)
    return f"{parts.path}?{parts.query}"


async def test_full_get(client: httpx.AsyncClient, stored: str) -> None:
    response = await client.get(_url(stored))
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"].startswith('"')
    assert "last-modified" in response.headers
    assert response.headers["cache-control"].startswith("private, max-age=")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_head(client: httpx.AsyncClient, stored: str) -> None:
    response = await client.head(_url(stored))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(DATA))


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),  # first bytes
        ("bytes=5000-5999", 5000, 5999),  # middle
        ("bytes=-500", len(DATA) - 500, len(DATA) - 1),  # suffix
        ("bytes=10000-", 10000, len(DATA) - 1),  # open-ended
        ("bytes=10200-99999", 10200, len(DATA) - 1),  # end past the file is clamped
        ("bytes=-99999", 0, len(DATA) - 1),  # suffix longer than the file
        ("bytes=0-0", 0, 0),
        ("bytes=99999-, 0-9", 0, 9),  # an unsatisfiable part is dropped
    ],
)
async def test_ranges(
    client: httpx.AsyncClient, stored: str, header: str, start: int, end: int
) -> None:
    response = await client.get(_url(stored), headers={"Range": header})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.content == DATA[start : end + 1]
    assert response.headers["content-type"] == "video/mp4"


async def test_positions_too_long_for_int_are_past_the_end(
    client: httpx.AsyncClient, stored: str
) -> None:
    # Python's int() refuses more than 4,300 digits (a ValueError, which was a 500 here):
    # such a position is simply past the end of the file, on GET and HEAD alike.
    nines = "9" * 5000
    for method in ("GET", "HEAD"):
        clamped = await client.request(method, _url(stored), headers={"Range": f"bytes=0-{nines}"})
        assert clamped.status_code == 206, method
        assert clamped.headers["content-range"] == f"bytes 0-{len(DATA) - 1}/{len(DATA)}"
        whole = await client.request(method, _url(stored), headers={"Range": f"bytes=-{nines}"})
        assert whole.status_code == 206, method
        assert whole.headers["content-range"] == f"bytes 0-{len(DATA) - 1}/{len(DATA)}"
        past = await client.request(method, _url(stored), headers={"Range": f"bytes={nines}-"})
        assert past.status_code == 416, method
        backwards = await client.request(
            method, _url(stored), headers={"Range": f"bytes={nines}-{'9' * 19}"}
        )
        assert backwards.status_code == 416, method


async def test_multiple_ranges(client: httpx.AsyncClient, stored: str) -> None:
    response = await client.get(_url(stored), headers={"Range": "bytes=0-9,100-109"})
    assert response.status_code == 206
    assert response.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert response.headers["content-length"] == str(len(response.content))
    assert DATA[0:10] in response.content and DATA[100:110] in response.content


async def test_head_with_range(client: httpx.AsyncClient, stored: str) -> None:
    response = await client.head(_url(stored), headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 100-199/{len(DATA)}"
    assert response.headers["content-length"] == "100"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=20000-",  # starts past the end
        "bytes=20000-30000",
        "bytes=-0",  # empty suffix
        "bytes=500-100",  # last before first
        "bytes=abc",
        "bytes=",
        "bytes=-",
        "bytes 0-10",
        "bytes=1-2-3",
    ],
)
async def test_invalid_or_unsatisfiable_range_is_416(
    client: httpx.AsyncClient, stored: str, header: str
) -> None:
    response = await client.get(_url(stored), headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"


async def test_unknown_range_unit_is_ignored(client: httpx.AsyncClient, stored: str) -> None:
    response = await client.get(_url(stored), headers={"Range": "items=0-5"})
    assert response.status_code == 200
    assert response.content == DATA


async def test_conditional_requests(client: httpx.AsyncClient, stored: str) -> None:
    first = await client.get(_url(stored))
    etag, modified = first.headers["etag"], first.headers["last-modified"]

    not_modified = await client.get(_url(stored), headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag

    for value in (f"W/{etag}", f'"other", {etag}', "*"):
        response = await client.get(_url(stored), headers={"If-None-Match": value})
        assert response.status_code == 304, value

    changed = await client.get(_url(stored), headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200 and changed.content == DATA

    since = await client.get(_url(stored), headers={"If-Modified-Since": modified})
    assert since.status_code == 304
    older = formatdate(0, usegmt=True)
    assert (await client.get(_url(stored), headers={"If-Modified-Since": older})).status_code == 200
    garbage = await client.get(_url(stored), headers={"If-Modified-Since": "yesterday"})
    assert garbage.status_code == 200
    # If-None-Match wins over If-Modified-Since
    both = await client.get(
        _url(stored), headers={"If-None-Match": '"other"', "If-Modified-Since": modified}
    )
    assert both.status_code == 200


async def test_if_match_and_if_unmodified_since(client: httpx.AsyncClient, stored: str) -> None:
    # RFC 9110 13.1.1 and 13.1.4: a failed precondition is 412 and sends no body.
    first = await client.get(_url(stored))
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    for value in (etag, f'"other", {etag}', "*"):
        ok = await client.get(_url(stored), headers={"If-Match": value})
        assert ok.status_code == 200 and ok.content == DATA, value
    for value in ('"other"', f"W/{etag}"):  # a weak tag never matches If-Match
        failed = await client.get(_url(stored), headers={"If-Match": value})
        assert failed.status_code == 412 and failed.content == b"", value
    ranged = await client.get(_url(stored), headers={"If-Match": '"other"', "Range": "bytes=0-9"})
    assert ranged.status_code == 412
    assert (await client.head(_url(stored), headers={"If-Match": '"other"'})).status_code == 412

    unchanged = await client.get(_url(stored), headers={"If-Unmodified-Since": modified})
    assert unchanged.status_code == 200
    older = formatdate(0, usegmt=True)
    changed = await client.get(_url(stored), headers={"If-Unmodified-Since": older})
    assert changed.status_code == 412
    garbage = await client.get(_url(stored), headers={"If-Unmodified-Since": "yesterday"})
    assert garbage.status_code == 200  # an unreadable date is ignored
    # If-Match wins over If-Unmodified-Since.
    both = await client.get(_url(stored), headers={"If-Match": etag, "If-Unmodified-Since": older})
    assert both.status_code == 200


async def test_if_range(client: httpx.AsyncClient, stored: str, storage: Storage) -> None:
    first = await client.get(_url(stored))
    etag = first.headers["etag"]
    same = await client.get(_url(stored), headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206 and same.content == DATA[:10]
    stale = await client.get(_url(stored), headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200 and stale.content == DATA
    # a stale If-Range never turns an invalid range into a 416: the full file is the answer
    stale_bad = await client.get(
        _url(stored), headers={"Range": "bytes=99999-", "If-Range": '"old"'}
    )
    assert stale_bad.status_code == 200
    by_date = await client.get(
        _url(stored), headers={"Range": "bytes=0-9", "If-Range": first.headers["last-modified"]}
    )
    assert by_date.status_code == 206


async def test_replaced_file_gets_a_new_etag(
    client: httpx.AsyncClient, stored: str, storage: Storage
) -> None:
    etag = (await client.get(_url(stored))).headers["etag"]
    await storage.save_bytes(stored, DATA[:100])
    if isinstance(storage, LocalStorage):  # a store's ETag is the content's, not the time's
        os.utime(storage.path(stored), (1_800_000_000, 1_800_000_000))
    response = await client.get(_url(stored), headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.content == DATA[:100]


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts.path + "?" + "&".join(f"{k}={v}" for k, v in query.items())


async def test_tampered_or_missing_signature_is_403(client: httpx.AsyncClient, stored: str) -> None:
    url = _url(stored)
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    exp = int(parse_qs(urlsplit(url).query)["exp"][0])
    other_key = _url(stored).replace("/v7/", "/v8/")
    for bad in (
        _tamper(url, sig=flipped),
        _tamper(url, exp=str(exp + 1000)),
        other_key,
        f"/media/{stored}",
        f"/media/{stored}?exp={exp}",
    ):
        response = await client.get(bad)
        assert response.status_code == 403, bad
        assert stored not in response.text and "video" not in response.text


async def test_expired_is_403(client: httpx.AsyncClient, stored: str) -> None:
    response = await client.get(_url(stored, ttl=-1))
    assert response.status_code == 403
    # expired links to missing files look the same: nothing about the key leaks
    missing = await client.get(_url(make_key(9, 9, "video", "mp4"), ttl=-1))
    assert (missing.status_code, missing.text) == (response.status_code, response.text)


async def test_deleted_file_is_404(
    client: httpx.AsyncClient, stored: str, storage: Storage
) -> None:
    url = _url(stored)
    assert (await client.get(url)).status_code == 200
    await storage.delete(stored)
    assert (await client.get(url)).status_code == 404


async def test_directory_is_never_listed(client: httpx.AsyncClient, stored: str) -> None:
    for key in ("u1/v7", "u1"):
        response = await client.get(_url(key))
        assert response.status_code == 404
        assert "video.mp4" not in response.text


async def test_escaping_keys_are_404(client: httpx.AsyncClient, stored: str) -> None:
    # Even correctly signed, a key outside the pattern never reaches the disk.
    for key in (".tmp/x", "u1/v7/.video.mp4.part"):
        assert (await client.get(_url(key))).status_code == 404


@pytest.mark.parametrize(
    ("ext", "content_type"),
    [
        ("webm", "video/webm"),
        ("jpg", "image/jpeg"),
        ("png", "image/png"),
        ("webp", "image/webp"),
    ],
)
async def test_content_types(
    client: httpx.AsyncClient, storage: Storage, ext: str, content_type: str
) -> None:
    key = make_key(1, 2, "thumbnail", ext)
    await storage.save_bytes(key, b"x" * 10)
    response = await client.get(_url(key))
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type


async def test_post_is_not_allowed(client: httpx.AsyncClient, stored: str) -> None:
    assert (await client.post(_url(stored))).status_code == 405


async def test_large_file_streams(client: httpx.AsyncClient, storage: Storage) -> None:
    key = make_key(3, 3, "video", "webm")
    blob = os.urandom(3 * 1024 * 1024 + 17)
    await storage.save_bytes(key, blob)
    async with client.stream("GET", _url(key)) as response:
        chunks = [chunk async for chunk in response.aiter_raw()]
    assert b"".join(chunks) == blob
    assert len(chunks) > 1
