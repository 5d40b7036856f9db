"""Multipart uploads to an S3 bucket, with bounded memory.

A file larger than one part goes up as the parts of a multipart upload: at most
``part_concurrency`` parts in flight, the next one read only when a slot is free, so at most
that many parts (plus one) are held whatever the size. The object appears only when the upload
is completed; a failed or cancelled upload is aborted (and ``vidgen purge`` aborts one whose
process was killed). Every coroutine here runs on the client's loop (see ``s3_client``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class Uploader:
    """Uploads to one bucket through ``call`` (one S3 operation by name, on the client's loop).

    Args:
        call: ``await call("upload_part", Key=..., ...)``; the bucket is filled in by it.
        part_size: bytes per part (S3's least is 5 MiB, but the last part).
        part_concurrency: parts of one upload in flight at once.
    """

    def __init__(
        self, call: Callable[..., Awaitable[Any]], *, part_size: int, part_concurrency: int
    ) -> None:
        self._call = call
        self.part_size = part_size
        self.part_concurrency = part_concurrency

    async def upload_path(self, object_key: str, path: Path, media_type: str) -> int:
        """Upload a finished local file: one PUT when it fits a part, else in parts."""
        size = (await asyncio.to_thread(path.stat)).st_size
        if size <= self.part_size:
            body = await asyncio.to_thread(path.read_bytes)
            await self._call("put_object", Key=object_key, Body=body, ContentType=media_type)
            return len(body)
        await self.upload_whole(object_key, file_parts(path, self.part_size), media_type)
        return size

    async def upload_whole(
        self, object_key: str, parts: AsyncIterator[bytes], media_type: str
    ) -> None:
        upload_id = await self.create(object_key, media_type)
        try:
            done = await self.upload_parts(object_key, upload_id, parts)
            await self.complete(object_key, upload_id, done)
        except BaseException:
            await asyncio.shield(self.abort(object_key, upload_id))
            raise

    async def create(self, object_key: str, media_type: str) -> str:
        started = await self._call(
            "create_multipart_upload", Key=object_key, ContentType=media_type
        )
        return str(started["UploadId"])

    async def upload_parts(
        self, object_key: str, upload_id: str, parts: AsyncIterator[bytes]
    ) -> list[dict[str, Any]]:
        """Upload every part of ``parts``, at most ``part_concurrency`` at once; the next part
        is read only when a slot is free, so at most that many parts (plus one) are held."""
        done: list[dict[str, Any]] = []
        running: set[asyncio.Task[dict[str, Any]]] = set()

        async def one(number: int, body: bytes) -> dict[str, Any]:
            sent = await self._call(
                "upload_part", Key=object_key, UploadId=upload_id, PartNumber=number, Body=body
            )
            return {"PartNumber": number, "ETag": sent["ETag"]}

        try:
            number = 0
            async for body in parts:
                number += 1
                running.add(asyncio.ensure_future(one(number, body)))
                del body
                if len(running) >= self.part_concurrency:
                    finished, running = await asyncio.wait(
                        running, return_when=asyncio.FIRST_COMPLETED
                    )
                    done += [task.result() for task in finished]
            if running:
                finished, running = await asyncio.wait(running)
                done += [task.result() for task in finished]
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
        return sorted(done, key=lambda part: part["PartNumber"])

    async def complete(self, object_key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
        await self._call(
            "complete_multipart_upload",
            Key=object_key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )

    async def abort(self, object_key: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", Key=object_key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - `vidgen purge` aborts what is left
            logger.warning(
                "could not abort a multipart upload",
                extra={"action": "storage.abort", "key": object_key},
                exc_info=True,
            )


async def file_parts(path: Path, part_size: int) -> AsyncIterator[bytes]:
    """``path`` in parts of ``part_size``, each read in a thread as it is asked for."""
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        while True:
            part = await asyncio.to_thread(fh.read, part_size)
            if not part:
                return
            yield part
    finally:
        await asyncio.to_thread(fh.close)
