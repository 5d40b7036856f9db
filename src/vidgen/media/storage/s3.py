"""Media in an S3-compatible object store (AWS S3, MinIO, Cloudflare R2, ...): ``s3://``.

The client is aiobotocore's (chosen over obstore for its whole S3 API: multipart uploads
that vidgen starts, completes, lists and aborts itself, bucket creation and lifecycle rules;
the measurements are in bench/README.md). It runs on an event loop of its own, in a daemon
thread (``s3_client.IoLoop``): async callers on any loop await it, and the job pipeline's
blocking media stage calls it from its worker thread, with no second client and no client
bound to a loop that may be gone (tests run one loop per test).

Atomic writes: a single PUT, or a multipart upload whose object appears only when it is
completed. Large files go up in parts of :data:`PART_SIZE`, at most :data:`PART_CONCURRENCY`
in flight, read from disk (or from the stream) as they go: memory stays bounded whatever
the size. A failed or cancelled upload is aborted; one whose process was killed is aborted
by ``vidgen purge`` (:meth:`S3Storage.purge_incomplete`), and ``vidgen storage init`` also
sets the bucket to drop incomplete uploads after a day.

Keys are stored under the URL's prefix (``s3://bucket/prefix`` → ``prefix/u1/v2/video.mp4``)
with their media type. The store's own names (the readiness probe) start with a dot, which
no key may, so they are never listed as media.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

from vidgen.media.storage.base import (
    InvalidKey,
    StorageUnavailable,
    StoredObject,
    TooLarge,
)
from vidgen.media.storage.keys import content_type, is_valid_key, validate_key
from vidgen.media.storage.s3_client import (
    IoLoop,
    close_body,
    error_code,
    explain,
    is_missing,
    next_on,
    read_up_to,
    session,
)
from vidgen.media.storage.s3_multipart import Uploader
from vidgen.media.storage.s3_staging import S3Staging, purge_scratch

logger = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # S3's least is 5 MiB (but the last part)
PART_CONCURRENCY = 4  # parts in flight per upload: memory ≤ (this + 1) × PART_SIZE
READ_CHUNK = 1024 * 1024  # bytes per hop between the client's loop and a reader's
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's longest
PROBE_NAME = ".vidgen-ready"  # written by check(); not a valid key, so never listed


class S3Storage:
    """Media in a bucket of an S3-compatible store.

    Args:
        bucket: the bucket (it must exist: see :meth:`create_bucket`).
        prefix: a folder inside it ('' for the bucket's root).
        endpoint_url: a non-AWS endpoint (``http://minio:9000``): path-style addressing.
            None: AWS S3 itself.
        public_endpoint_url: the endpoint as browsers and providers reach it, for presigned
            URLs (default: ``endpoint_url``).
        region: the signing region (None: botocore's own resolution, else us-east-1).
        scratch_dir: a local folder for files on their way in (created on first use).
        part_size: bytes per part of a multipart upload (at least 5 MiB).
        part_concurrency: parts of one upload in flight at once.
        max_attempts: tries per request (botocore's standard retries, with backoff).
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str | None = None,
        scratch_dir: Path,
        part_size: int = PART_SIZE,
        part_concurrency: int = PART_CONCURRENCY,
        max_attempts: int = 4,
    ) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 parts are at least 5 MiB.")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        self.public_endpoint_url = public_endpoint_url or None
        self.region = region or None
        self.scratch_dir = Path(scratch_dir)
        self.part_size = part_size
        self.part_concurrency = max(1, part_concurrency)
        self.max_attempts = max(1, max_attempts)  # per request, retries included
        self.description = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._io = IoLoop(f"vidgen-s3-{bucket}")
        self._clients: dict[str, Any] = {}  # "main" / "public", on the io loop
        self._stack: contextlib.AsyncExitStack | None = None
        self._client_lock: asyncio.Lock | None = None
        self.uploads = Uploader(
            self._call, part_size=self.part_size, part_concurrency=self.part_concurrency
        )

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Storage({self.description!r}{where})"

    @property
    def where(self) -> str:
        """The bucket and its endpoint, for messages."""
        return f"{self.description} ({self.endpoint_url or 'AWS S3'})"

    # --- the client (on the io loop) -------------------------------------------------------
    async def _client(self, which: str = "main") -> Any:
        client = self._clients.get(which)
        if client is not None:
            return client
        if self._client_lock is None:
            self._client_lock = asyncio.Lock()
        async with self._client_lock:
            if which not in self._clients:
                self._clients[which] = await self._make_client(which)
            return self._clients[which]

    async def _make_client(self, which: str) -> Any:
        from aiobotocore.config import AioConfig

        if self._stack is None:
            self._stack = contextlib.AsyncExitStack()
        endpoint = self.endpoint_url
        if which == "public":
            endpoint = self.public_endpoint_url or self.endpoint_url
        config = AioConfig(
            signature_version="s3v4",
            # Non-AWS stores (MinIO, a test server) are addressed by path; AWS picks itself.
            s3={"addressing_style": "path" if endpoint else "auto"},
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
            # Checksums only where S3 requires them: stores that are not AWS refuse some of
            # the newer default ones.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return await self._stack.enter_async_context(
            session().create_client(
                "s3", endpoint_url=endpoint, region_name=self.region, config=config
            )
        )

    async def open(self) -> None:
        """Start the client (credentials are resolved on first request)."""
        await self._io.run(self._client())

    async def close(self) -> None:
        """Close the client and stop its loop; the next use starts them again."""
        stack = self._stack
        self._stack, self._clients, self._client_lock = None, {}, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await self._io.run(stack.aclose())
        self._io.stop()

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key_of(self, object_key: str) -> str | None:
        if self.prefix:
            if not object_key.startswith(self.prefix + "/"):
                return None
            object_key = object_key[len(self.prefix) + 1 :]
        return object_key if is_valid_key(object_key) else None

    def _list_prefix(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    async def _call(self, operation: str, **params: Any) -> Any:
        """One S3 operation on the io loop (from a coroutine already on it)."""
        client = await self._client()
        return await getattr(client, operation)(Bucket=self.bucket, **params)

    def _run(self, operation: str, **params: Any) -> Awaitable[Any]:
        """One S3 operation, awaited from any loop."""
        return self._io.run(self._call(operation, **params))

    # --- checks -----------------------------------------------------------------------------
    async def check(self) -> None:
        """Write the probe object: the bucket exists, the credentials work, writes go in.

        Raises:
            StorageUnavailable: saying which (unreachable, no bucket, refused credentials).
        """
        try:
            await self._run("put_object", Key=self._probe_key(), Body=str(time.time()).encode())
        except Exception as exc:  # noqa: BLE001 - translated into one clear message
            raise self._explain(exc) from exc

    def _probe_key(self) -> str:
        return f"{self.prefix}/{PROBE_NAME}" if self.prefix else PROBE_NAME

    def _explain(self, exc: BaseException) -> StorageUnavailable:
        return explain(exc, bucket=self.bucket, endpoint_url=self.endpoint_url, where=self.where)

    async def create_bucket(self) -> bool:
        """Create the bucket (True), or find it there already and ours (False); then ask the
        store to drop incomplete multipart uploads after a day (where it can).

        Raises:
            StorageUnavailable: the store refused (another account owns the name, ...).
        """
        return await self._io.run(self._create_bucket())

    async def _create_bucket(self) -> bool:
        params: dict[str, Any] = {}
        region = self.region
        if region and region != "us-east-1" and self.endpoint_url is None:
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await self._call("head_bucket")
            created = False
        except Exception as exc:  # noqa: BLE001 - translated
            if not is_missing(exc):
                raise self._explain(exc) from exc
            try:
                await self._call("create_bucket", **params)
            except Exception as exc:  # noqa: BLE001 - translated
                if error_code(exc) in {"BucketAlreadyExists", "BucketAlreadyOwnedByYou"}:
                    raise StorageUnavailable(
                        f"The bucket name {self.bucket!r} is taken (by another account, or "
                        "just now)."
                    ) from exc
                raise self._explain(exc) from exc
            created = True
        try:
            await self._call(
                "put_bucket_lifecycle_configuration",
                LifecycleConfiguration={
                    "Rules": [
                        {
                            "ID": "vidgen-abort-incomplete-uploads",
                            "Status": "Enabled",
                            "Filter": {"Prefix": self._list_prefix()},
                            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                        }
                    ]
                },
            )
        except Exception:  # noqa: BLE001 - optional: `vidgen purge` aborts them too
            logger.warning(
                "the store took no lifecycle rule; `vidgen purge` aborts incomplete uploads",
                extra={"action": "storage.lifecycle", "bucket": self.bucket},
                exc_info=True,
            )
        return created

    # --- writes -----------------------------------------------------------------------------
    async def save_bytes(self, key: str, data: bytes) -> int:
        """Store ``data`` under ``key`` in one PUT (atomic) and return its size."""
        object_key = self._object_key(key)
        body = bytes(data)
        await self._run("put_object", Key=object_key, Body=body, ContentType=content_type(key))
        return len(body)

    async def save_file(self, key: str, src: Path) -> int:
        """Upload a finished local file under ``key`` (in parts when large) and remove it."""
        object_key = self._object_key(key)
        size = await self._io.run(
            self.uploads.upload_path(object_key, Path(src), content_type(key))
        )
        with contextlib.suppress(OSError):
            await asyncio.to_thread(Path(src).unlink)
        return size

    async def save_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> int:
        """Store an async stream under ``key``: one PUT when it fits one part, else a
        multipart upload fed part by part (memory stays bounded), aborted on any error.

        Raises:
            TooLarge: the stream passed ``max_bytes``; nothing is stored.
        """
        object_key = self._object_key(key)
        media_type = content_type(key)
        buffer = bytearray()
        total = 0
        source = chunks.__aiter__()
        # Fill the first part on the caller's loop: a small stream is one PUT.
        async for chunk in source:
            total += len(chunk)
            if total > max_bytes:
                raise TooLarge(max_bytes)
            buffer += chunk
            if len(buffer) >= self.part_size:
                break
        if len(buffer) < self.part_size:
            await self._run(
                "put_object", Key=object_key, Body=bytes(buffer), ContentType=media_type
            )
            return total
        first = bytes(buffer)
        buffer.clear()

        async def parts() -> AsyncIterator[bytes]:
            # Pulled from the io loop; the caller's chunks are awaited on the caller's loop.
            nonlocal total
            yield first
            pending = bytearray()
            while True:
                chunk = await next_on(source, caller)
                if chunk is None:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise TooLarge(max_bytes)
                pending += chunk
                while len(pending) >= self.part_size:
                    yield bytes(pending[: self.part_size])
                    del pending[: self.part_size]
            if pending:
                yield bytes(pending)

        caller = asyncio.get_running_loop()
        await self._io.run(self.uploads.upload_whole(object_key, parts(), media_type))
        return total

    # --- reads ------------------------------------------------------------------------------
    def local_path(self, key: str) -> None:
        """Objects have no local file."""
        return None

    async def stat(self, key: str) -> StoredObject | None:
        """HEAD the object: size, time and ETag; None when it is not there."""
        try:
            head = await self._run("head_object", Key=self._object_key(key))
        except InvalidKey:
            return None
        except Exception as exc:
            if is_missing(exc):
                return None
            raise
        return StoredObject(
            key=key,
            size=int(head["ContentLength"]),
            modified=head["LastModified"].timestamp(),
            etag=head.get("ETag"),
        )

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    async def size(self, key: str) -> int:
        """The object's size. Raises FileNotFoundError when nothing is stored under ``key``."""
        found = await self.stat(key)
        if found is None:
            raise FileNotFoundError(key)
        return found.size

    async def read_bytes(self, key: str) -> bytes:
        """The whole object. Raises FileNotFoundError when it is not there."""
        return await self._io.run(self._read_all(self._object_key(key)))

    async def _read_all(self, object_key: str) -> bytes:
        try:
            got = await self._call("get_object", Key=object_key)
        except Exception as exc:
            if is_missing(exc):
                raise FileNotFoundError(object_key) from exc
            raise
        async with got["Body"] as body:
            return await body.read()

    async def read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` up to ``end`` (exclusive) with one ranged GET.

        Raises:
            FileNotFoundError: nothing is stored under ``key``.
        """
        object_key = self._object_key(key)
        if end is not None and end <= start:
            return
        span = f"bytes={start}-" + ("" if end is None else str(end - 1))
        body = await self._io.run(self._open_body(object_key, span))
        try:
            while True:
                chunk = await self._io.run(read_up_to(body, READ_CHUNK))
                if not chunk:
                    break
                yield chunk
        finally:
            # Also when the reader stops early (a client went away): drop the connection.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._io.run(close_body(body)))

    async def _open_body(self, object_key: str, span: str) -> Any:
        try:
            got = await self._call("get_object", Key=object_key, Range=span)
        except Exception as exc:
            if is_missing(exc):
                raise FileNotFoundError(object_key) from exc
            raise
        return got["Body"]

    async def presign(self, key: str, *, expires_in: int) -> str:
        """A presigned GET of ``key`` at the public endpoint, valid ``expires_in`` seconds
        (1 s to 7 days, SigV4's bounds)."""
        seconds = max(1, min(int(expires_in), MAX_PRESIGN_SECONDS))
        return await self._io.run(self._presign(self._object_key(key), seconds))

    async def _presign(self, object_key: str, seconds: int) -> str:
        client = await self._client("public" if self.public_endpoint_url else "main")
        return str(
            await client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": object_key},
                ExpiresIn=seconds,
            )
        )

    # --- deletes and listings ---------------------------------------------------------------
    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is fine (S3 answers 204 either way)."""
        await self._run("delete_object", Key=self._object_key(key))

    async def list_objects(self) -> AsyncIterator[StoredObject]:
        """Every object under the prefix whose name is a valid key, one page per round trip."""
        token: str | None = None
        while True:
            page = await self._io.run(self._list_page(token))
            for item in page.get("Contents", ()):
                key = self._key_of(item["Key"])
                if key is not None:
                    yield StoredObject(
                        key=key,
                        size=int(item["Size"]),
                        modified=item["LastModified"].timestamp(),
                        etag=item.get("ETag"),
                    )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def _list_page(self, token: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"Prefix": self._list_prefix()}
        if token:
            params["ContinuationToken"] = token
        return dict(await self._call("list_objects_v2", **params))

    async def incomplete_uploads(self) -> list[tuple[str, str, float]]:
        """(object key, upload id, started) of every multipart upload under the prefix."""
        return await self._io.run(self._incomplete_uploads())

    async def _incomplete_uploads(self) -> list[tuple[str, str, float]]:
        found: list[tuple[str, str, float]] = []
        params: dict[str, Any] = {"Prefix": self._list_prefix()}
        while True:
            page = await self._call("list_multipart_uploads", **params)
            for upload in page.get("Uploads", ()):
                found.append((upload["Key"], upload["UploadId"], upload["Initiated"].timestamp()))
            if not page.get("IsTruncated"):
                return found
            params["KeyMarker"] = page.get("NextKeyMarker")
            params["UploadIdMarker"] = page.get("NextUploadIdMarker")

    async def purge_incomplete(self, *, older_than_seconds: float) -> int:
        """Abort multipart uploads started longer ago than the given age (a killed worker's)
        and remove scratch files as old; how many of both."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for object_key, upload_id, started in await self.incomplete_uploads():
            if started < cutoff:
                await self._io.run(self.uploads.abort(object_key, upload_id))
                removed += 1
        return removed + await asyncio.to_thread(purge_scratch, self.scratch_dir, cutoff)

    # --- a job's files ----------------------------------------------------------------------
    def staging(self) -> S3Staging:
        return S3Staging(self)

    def _scratch_file(self, key: str) -> Path:
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        name = validate_key(key).rpartition("/")[2]
        return self.scratch_dir / f"{uuid.uuid4().hex}-{name}.part"
