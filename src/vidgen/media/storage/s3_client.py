"""How vidgen drives aiobotocore's S3 client: its own event loop in a daemon thread, one
botocore session per process, and the store's errors read and explained.

The client runs on :class:`IoLoop` so that async callers on any loop (the API's, a worker's,
one per test) and the job pipeline's blocking media stage (a worker thread) share one client,
and no client is bound to a loop that may be gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from vidgen.media.storage.base import StorageUnavailable

T = TypeVar("T")

# Error codes by which a store refuses who we are (or what we may do).
CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
}


_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def session() -> Any:
    """One botocore session per process: its loaded service models are shared by every
    client (loading them costs a few hundred milliseconds)."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            from aiobotocore.session import get_session

            _SESSION = get_session()
        return _SESSION


class IoLoop:
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


def error_code(exc: BaseException) -> str:
    """A botocore ClientError's code ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def is_missing(exc: BaseException) -> bool:
    return error_code(exc) in {"404", "NoSuchKey", "NotFound"} or http_status(exc) == 404


def explain(
    exc: BaseException, *, bucket: str, endpoint_url: str | None, where: str
) -> StorageUnavailable:
    """One clear message for a store's refusal: which setting or permission to fix."""
    code = error_code(exc)
    name = type(exc).__name__
    if code == "NoSuchBucket":
        return StorageUnavailable(
            f"The bucket {bucket!r} does not exist at {endpoint_url or 'AWS S3'}:"
            " create it (`vidgen storage init`) or fix VIDGEN_STORAGE_URL."
        )
    if code in CREDENTIAL_CODES:
        return StorageUnavailable(
            f"The object store refused the credentials ({code}) for {where}: check "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), and "
            "AWS_REGION."
        )
    if code in {"AccessDenied", "AllAccessDisabled", "Forbidden", "403"}:
        return StorageUnavailable(
            f"The object store denied a write to {where} ({code}): the credentials "
            "need s3:PutObject, s3:GetObject, s3:DeleteObject, s3:ListBucket and the "
            "multipart permissions on it."
        )
    if name in {"NoCredentialsError", "PartialCredentialsError"}:
        return StorageUnavailable(
            f"No AWS credentials for {where}: set AWS_ACCESS_KEY_ID and "
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
            f"Cannot reach the object store for {where} ({name}): check "
            "VIDGEN_S3_ENDPOINT_URL and that the store is up."
        )
    return StorageUnavailable(f"The object store {where} failed: {name}: {exc}")


async def next_on(source: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> bytes | None:
    """The next chunk of an async iterator that belongs to another loop (None at its end)."""

    async def step() -> bytes | None:
        try:
            return await anext(source)
        except StopAsyncIteration:
            return None

    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(step(), loop))


async def read_up_to(body: Any, size: int) -> bytes:
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


async def close_body(body: Any) -> None:
    body.close()
