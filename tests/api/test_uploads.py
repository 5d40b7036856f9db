"""generateVideo(input: {inputImage}) by a real multipart client: stored only when valid,
refused (BAD_USER_INPUT inputImage, nothing written, nothing stored) otherwise, CSRF-guarded
and size-capped."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib

import pytest
from PIL import Image

from tests.api import documents as d
from tests.api.conftest import Account, LiveServer, media_files, row_counts, start_live_server
from tests.api.test_contract import db_id
from vidgen.jobs import lifecycle
from vidgen.models import Video

UPLOAD = """
mutation Upload($input: GenerateVideoInput!) {
  generateVideo(input: $input) { id inputImageUrl provider }
}
"""


def png(size: tuple[int, int] = (64, 48)) -> bytes:
    image = Image.new("RGB", size, (200, 30, 90))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height, built without allocating its pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


async def upload(
    server: LiveServer,
    token: str,
    data: bytes,
    *,
    filename: str = "in.png",
    preflight: bool = True,
    **input_: object,
):
    return await server.upload(
        UPLOAD,
        {"input": {"prompt": "pan over it", "inputImage": None, **input_}},
        {"variables.input.inputImage": (filename, data, "image/png")},
        token=token,
        preflight=preflight,
    )


async def test_upload_is_stored_and_served(live_server: LiveServer, alice: Account) -> None:
    image = png()
    response = await upload(live_server, alice.token, image)
    assert response.status_code == 200, response.text
    video = response.json()["data"]["generateVideo"]
    row = await Video.get(id=db_id(video["id"]))
    assert row.input_image == f"u{alice.user.id}/v{row.id}/input.png"
    assert [p.name for p in media_files(live_server.settings)] == ["input.png"]

    url = video["inputImageUrl"]
    assert url.startswith(live_server.settings.resolved_public_url)
    served = await live_server.client.get(url.replace(live_server.settings.resolved_public_url, ""))
    assert served.status_code == 200 and served.content == image

    # The other header that forces a CORS preflight works too.
    response = await live_server.client.post(
        "/graphql",
        data={
            "operations": json.dumps(
                {
                    "query": 'mutation($f: Upload) { generateVideo(input: {prompt: "x", '
                    "inputImage: $f}) { id } }",
                    "variables": {"f": None},
                }
            ),
            "map": json.dumps({"0": ["variables.f"]}),
        },
        files={"0": ("x.png", image, "image/png")},
        headers={"Authorization": f"Bearer {alice.token}", "X-Apollo-Operation-Name": "x"},
    )
    assert response.status_code == 200 and "errors" not in response.json(), response.text


@pytest.mark.parametrize(
    "name",
    ["text renamed .png", "truncated png", "huge pixel count", "empty file"],
)
async def test_bad_images_are_refused_and_nothing_stored(
    live_server: LiveServer, alice: Account, name: str
) -> None:
    data = {
        "text renamed .png": b"just some text, not an image\n" * 10,
        "truncated png": png((200, 200))[:300],
        "huge pixel count": huge_png(20_000, 20_000),
        "empty file": b"",
    }[name]
    before = await row_counts()
    response = await upload(live_server, alice.token, data)
    assert response.status_code == 200, response.text
    error = d.only_error(response.json())
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "inputImage"}, error
    assert await row_counts() == before
    assert media_files(live_server.settings) == []


async def test_multipart_without_preflight_header_is_refused(
    live_server: LiveServer, alice: Account
) -> None:
    before = await row_counts()
    response = await upload(live_server, alice.token, png(), preflight=False)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await row_counts() == before
    assert media_files(live_server.settings) == []


async def test_provider_without_image_input_refuses_images(
    live_server: LiveServer, alice: Account
) -> None:
    base = live_server.runtime.providers["test"]
    text_only = dataclasses.replace(base.capabilities, image_to_video=False)

    class TextOnly:
        name = "textonly"
        capabilities = text_only
        available = True

        async def aclose(self) -> None:
            pass

    live_server.runtime.providers["textonly"] = TextOnly()  # type: ignore[assignment]
    before = await row_counts()
    response = await upload(
        live_server, alice.token, png(), provider="textonly", resolution="512x512"
    )
    error = d.only_error(response.json())
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "inputImage"}
    assert await row_counts() == before
    assert media_files(live_server.settings) == []


async def test_oversize_bodies_are_refused(db, alice: Account) -> None:
    async with start_live_server(db, max_request_bytes=100_000, max_upload_bytes=50_000) as server:
        before = await row_counts()
        # Over the request limit: 413 before the body is read whole.
        big = b"\x89PNG\r\n\x1a\n" + b"\0" * 200_000
        response = await upload(server, alice.token, big)
        assert response.status_code == 413
        # Under the request limit but over the upload limit: BAD_USER_INPUT inputImage.
        response = await upload(server, alice.token, b"\x89PNG\r\n\x1a\n" + b"\0" * 60_000)
        error = d.only_error(response.json())
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "inputImage"}
        # A streamed body without Content-Length is counted as it arrives.

        async def chunks():
            for _ in range(30):
                yield b"x" * 10_000

        response = await server.client.post(
            "/graphql",
            content=chunks(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {alice.token}"},
        )
        assert response.status_code == 413
        assert await row_counts() == before
        assert media_files(server.settings) == []


async def test_failed_transaction_removes_the_stored_image(
    live_server: LiveServer, alice: Account, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    async def broken(*args, **kwargs):
        raise RuntimeError("database went away at /secret/path")

    monkeypatch.setattr(lifecycle, "record_created", broken)
    before = await row_counts()
    response = await upload(live_server, alice.token, png())
    error = d.only_error(response.json())
    assert error["extensions"]["code"] == "INTERNAL"
    assert "secret" not in response.text and "RuntimeError" not in response.text
    logged = [r for r in caplog.records if r.exc_info and r.levelname == "ERROR"]
    assert any("database went away" in str(r.exc_info[1]) for r in logged)
    assert any(error["extensions"]["errorId"] in r.getMessage() for r in logged)
    assert await row_counts() == before
    assert media_files(live_server.settings) == []
