"""Media in an S3-compatible object store (AWS S3, MinIO, Cloudflare R2, ...): ``s3://``.

The client is aiobotocore's (chosen over obstore for its whole S3 API: multipart uploads
that vidgen starts, completes, lists and aborts itself, bucket creation and lifecycle rules;
the measurements are in bench/README.md). It runs on an event loop of its own, in a daemon
thread (:class:`_IoLoop`): async callers on any loop await it, and the job pipeline's
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
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from vidgen.media.storage.base import (
    InvalidKey,
    StorageUnavailable,
    StoredObject,
    TooLarge,
)
from vidgen.media.storage.keys import content_type, is_valid_key, validate_key

logger = logging.getLogger(__name__)

T = TypeVar("T")

PART_SIZE = 8 * 1024 * 1024  # S3's least is 5 MiB (but the last part)
PART_CONCURRENCY = 4  # parts in flight per upload: memory ≤ (this + 1) × PART_SIZE
READ_CHUNK = 1024 * 1024  # bytes per hop between the client's loop and a reader's
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's longest
PROBE_NAME = ".vidgen-ready"  # written by check(); not a valid key, so never listed
# Error codes by which a store refuses who we are (or what we may do).
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
}


_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def _session() -> Any:
    """One botocore session per process: its loaded service models are shared by every
    client (loading them costs a few hundred milliseconds)."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            from aiobotocore.session import get_session

            _SESSION = get_session()
        return _SESSION


class _IoLoop:
    """An asyncio loop in a daemon thread, started on first use, for the S3 client."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure())

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the client's loop from any other loop (cancellation carries over)."""
        return await asyncio.wrap_future(self.submit(coro))

    def run_blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        """``coro``'s result, from a thread that is not the client's (a worker thread)."""
        if self._thread is threading.current_thread():
            coro.close()
            raise RuntimeError("a blocking storage call on the storage's own loop")
        return self.submit(coro).result()

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(5)
        if not loop.is_running():
            loop.close()


def _code(exc: BaseException) -> str:
    """A botocore ClientError's code ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def _missing(exc: BaseException) -> bool:
    return _code(exc) in {"404", "NoSuchKey", "NotFound"} or _status(exc) == 404


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
        self._io = _IoLoop(f"vidgen-s3-{bucket}")
        self._clients: dict[str, Any] = {}  # "main" / "public", on the io loop
        self._stack: contextlib.AsyncExitStack | None = None
        self._client_lock: asyncio.Lock | None = None

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
            _session().create_client(
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
        code = _code(exc)
        name = type(exc).__name__
        if code == "NoSuchBucket":
            return StorageUnavailable(
                f"The bucket {self.bucket!r} does not exist at {self.endpoint_url or 'AWS S3'}:"
                " create it (`vidgen storage init`) or fix VIDGEN_STORAGE_URL."
            )
        if code in _CREDENTIAL_CODES:
            return StorageUnavailable(
                f"The object store refused the credentials ({code}) for {self.where}: check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), and "
                "AWS_REGION."
            )
        if code in {"AccessDenied", "AllAccessDisabled", "Forbidden", "403"}:
            return StorageUnavailable(
                f"The object store denied a write to {self.where} ({code}): the credentials "
                "need s3:PutObject, s3:GetObject, s3:DeleteObject, s3:ListBucket and the "
                "multipart permissions on it."
            )
        if name in {"NoCredentialsError", "PartialCredentialsError"}:
            return StorageUnavailable(
                f"No AWS credentials for {self.where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or give the machine an instance role)."
            )
        if name in {
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ReadTimeoutError",
            "ClientConnectorError",
            "ServerDisconnectedError",
            "TimeoutError",
        } or isinstance(exc, OSError | asyncio.TimeoutError):
            return StorageUnavailable(
                f"Cannot reach the object store for {self.where} ({name}): check "
                "VIDGEN_S3_ENDPOINT_URL and that the store is up."
            )
        return StorageUnavailable(f"The object store {self.where} failed: {name}: {exc}")

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
            if not _missing(exc):
                raise self._explain(exc) from exc
            try:
                await self._call("create_bucket", **params)
            except Exception as exc:  # noqa: BLE001 - translated
                if _code(exc) in {"BucketAlreadyExists", "BucketAlreadyOwnedByYou"}:
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
        size = await self._io.run(self._upload_path(object_key, Path(src), content_type(key)))
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
                chunk = await _next_on(source, caller)
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
        await self._io.run(self._upload_parts_whole(object_key, parts(), media_type))
        return total

    async def _upload_path(self, object_key: str, path: Path, media_type: str) -> int:
        size = (await asyncio.to_thread(path.stat)).st_size
        if size <= self.part_size:
            body = await asyncio.to_thread(path.read_bytes)
            await self._call("put_object", Key=object_key, Body=body, ContentType=media_type)
            return len(body)
        await self._upload_parts_whole(object_key, _file_parts(path, self.part_size), media_type)
        return size

    async def _upload_parts_whole(
        self, object_key: str, parts: AsyncIterator[bytes], media_type: str
    ) -> None:
        upload_id = await self._create_upload(object_key, media_type)
        try:
            done = await self._upload_parts(object_key, upload_id, parts)
            await self._complete(object_key, upload_id, done)
        except BaseException:
            await asyncio.shield(self._abort(object_key, upload_id))
            raise

    async def _create_upload(self, object_key: str, media_type: str) -> str:
        started = await self._call(
            "create_multipart_upload", Key=object_key, ContentType=media_type
        )
        return str(started["UploadId"])

    async def _upload_parts(
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

    async def _complete(self, object_key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
        await self._call(
            "complete_multipart_upload",
            Key=object_key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )

    async def _abort(self, object_key: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", Key=object_key, UploadId=upload_id)
        except Exception:  # noqa: BLE001 - `vidgen purge` aborts what is left
            logger.warning(
                "could not abort a multipart upload",
                extra={"action": "storage.abort", "key": object_key},
                exc_info=True,
            )

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
            if _missing(exc):
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
            if _missing(exc):
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
                chunk = await self._io.run(_read_up_to(body, READ_CHUNK))
                if not chunk:
                    break
                yield chunk
        finally:
            # Also when the reader stops early (a client went away): drop the connection.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._io.run(_close_body(body)))

    async def _open_body(self, object_key: str, span: str) -> Any:
        try:
            got = await self._call("get_object", Key=object_key, Range=span)
        except Exception as exc:
            if _missing(exc):
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
                await self._io.run(self._abort(object_key, upload_id))
                removed += 1
        return removed + await asyncio.to_thread(_purge_scratch, self.scratch_dir, cutoff)

    # --- a job's files ----------------------------------------------------------------------
    def staging(self) -> S3Staging:
        return S3Staging(self)

    def _scratch_file(self, key: str) -> Path:
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        name = validate_key(key).rpartition("/")[2]
        return self.scratch_dir / f"{uuid.uuid4().hex}-{name}.part"


class S3Staging:
    """One job's files: written to scratch files, uploaded, then made visible at once.

    :meth:`prepare` uploads every file larger than one part as the parts of a multipart
    upload (nothing is visible yet); :meth:`commit` completes those uploads and PUTs the
    small files (each is atomic), then removes the scratch files; :meth:`discard` aborts the
    uploads and removes the scratch files. Blocking calls, made from a worker thread.
    """

    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage
        self._files: list[Path] = []
        self._uploads: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}

    def file(self, key: str) -> Path:
        path = self.storage._scratch_file(key)
        self._files.append(path)
        return path

    def prepare(self, files: Mapping[str, Path]) -> None:
        store = self.storage
        for key, path in files.items():
            if key in self._uploads or path.stat().st_size <= store.part_size:
                continue
            object_key = store._object_key(key)
            upload_id = store._io.run_blocking(store._create_upload(object_key, content_type(key)))
            self._uploads[key] = (object_key, upload_id, [])
            parts = store._io.run_blocking(
                store._upload_parts(object_key, upload_id, _file_parts(path, store.part_size))
            )
            self._uploads[key] = (object_key, upload_id, parts)

    def commit(self, files: Mapping[str, Path]) -> dict[str, int]:
        self.prepare(files)
        store = self.storage
        sizes: dict[str, int] = {}
        for key, path in files.items():
            upload = self._uploads.pop(key, None)
            if upload is not None:
                object_key, upload_id, parts = upload
                store._io.run_blocking(store._complete(object_key, upload_id, parts))
                sizes[key] = path.stat().st_size
            else:
                sizes[key] = store._io.run_blocking(
                    store._upload_path(store._object_key(key), path, content_type(key))
                )
        for path in files.values():
            with contextlib.suppress(OSError):
                path.unlink()
        return sizes

    def discard(self) -> None:
        store = self.storage
        uploads, self._uploads = self._uploads, {}
        for object_key, upload_id, _parts in uploads.values():
            with contextlib.suppress(Exception):
                store._io.run_blocking(store._abort(object_key, upload_id))
        for path in self._files:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        self._files.clear()


async def _file_parts(path: Path, part_size: int) -> AsyncIterator[bytes]:
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


async def _next_on(source: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> bytes | None:
    """The next chunk of an async iterator that belongs to another loop (None at its end)."""

    async def step() -> bytes | None:
        try:
            return await anext(source)
        except StopAsyncIteration:
            return None

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(step(), loop))


async def _read_up_to(body: Any, size: int) -> bytes:
    """Up to ``size`` bytes of a response body (fewer only at its end)."""
    chunks: list[bytes] = []
    wanted = size
    while wanted > 0:
        chunk = await body.read(wanted)
        if not chunk:
            break
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


async def _close_body(body: Any) -> None:
    body.close()


def _purge_scratch(folder: Path, cutoff: float) -> int:
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in os.scandir(folder):
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed
