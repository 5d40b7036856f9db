"""``GET /media/{key}?exp=...&sig=...``: stored media behind signed, expiring URLs.

A local folder's files are served by Starlette's ``FileResponse`` (streaming, single and
multiple byte ranges, If-Range, HEAD). An object store's are streamed through the API by
:class:`StoredObjectResponse` (one ranged GET per range asked for), with the same headers
and the same answers; or, with ``VIDGEN_MEDIA_REDIRECT``, answered with a 302 to the store's
own presigned URL, valid no longer than the signed link (ranges and caching then come from
the store; see docs/storage.md for when to choose which). This module adds what
``FileResponse`` lacks, for both:

- the signature check (403 for a tampered or expired link, saying nothing about the key);
- 404 for anything that is not a stored regular file (never a listing);
- conditional GETs: ``If-None-Match`` / ``If-Modified-Since`` answer 304, a failed
  ``If-Match`` / ``If-Unmodified-Since`` 412 (RFC 9110's order of preconditions);
- byte positions of any length (one past CPython's 4,300-digit ``int()`` limit is past the
  end of the file, not a 500);
- RFC 9110 range edge cases: an unknown range unit is ignored (200), a malformed or wholly
  unsatisfiable range is 416 with ``Content-Range: bytes */size`` (``FileResponse`` answers
  400 to a malformed one), and unsatisfiable parts of a multi-range request are dropped.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import stat
import time
from email.utils import formatdate, parsedate_to_datetime

from starlette.datastructures import Headers, QueryParams
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vidgen.media import signing
from vidgen.media.storage import InvalidKey, Storage, StoredObject, content_type

# More parts than this and the Range header is ignored (a full 200), as FileResponse does.
MAX_RANGES = 100
_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


# A byte position longer than this many digits is past the end of any file; int() would
# also refuse one longer than 4,300 digits (CPython's conversion limit) with a ValueError.
_MAX_POSITION_DIGITS = 18
_PAST_ANY_FILE = 10**_MAX_POSITION_DIGITS


class _Unsatisfiable(Exception):
    pass


def _position(digits: str) -> int:
    """A Range byte position (ASCII digits); any absurdly long one is "past the end"."""
    return _PAST_ANY_FILE if len(digits) > _MAX_POSITION_DIGITS else int(digits)


def _normalise_range(header: str, size: int) -> str | None:
    """The satisfiable parts of a Range header, rewritten as explicit ``bytes=a-b,...``.

    Returns None when the header must be ignored (another unit, too many parts).

    Raises:
        _Unsatisfiable: A malformed header, or one with no satisfiable part.
    """
    unit, sep, spec = header.partition("=")
    if not sep:
        raise _Unsatisfiable
    if unit.strip().lower() != "bytes":
        return None
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        return None
    kept: list[str] = []
    for part in parts:
        match = _RANGE_SPEC.fullmatch(part.strip())
        if match is None or match.group(1) == match.group(2) == "":
            raise _Unsatisfiable
        first, last = match.group(1), match.group(2)
        if first == "":  # suffix: the last N bytes
            length = _position(last)
            if length == 0 or size == 0:
                continue
            kept.append(f"{max(0, size - length)}-{size - 1}")
            continue
        start = _position(first)
        if last != "" and _position(last) < start:
            raise _Unsatisfiable
        if start >= size:
            continue
        end = size - 1 if last == "" else min(_position(last), size - 1)
        kept.append(f"{start}-{end}")
    if not kept:
        raise _Unsatisfiable
    return "bytes=" + ",".join(kept)


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2), as If-None-Match requires."""
    if header.strip() == "*":
        return True
    plain = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == plain for tag in header.split(","))


def _etag_matches_strongly(header: str, etag: str) -> bool:
    """Strong comparison (RFC 9110 13.1.1), as If-Match requires: weak tags never match."""
    if header.strip() == "*":
        return True
    if etag.startswith("W/"):
        return False
    return any(tag.strip() == etag for tag in header.split(","))


def _http_date(header: str) -> float | None:
    """The instant an HTTP date header names, or None for a date that cannot be read (RFC
    9110: the condition is then ignored)."""
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if since is None or since.tzinfo is None:
        return None
    return since.timestamp()


def _modified_since(header: str, mtime: float) -> bool:
    """True when the file changed after the (valid) date in ``header``."""
    since = _http_date(header)
    return since is not None and int(mtime) > since


def _not_modified_since(header: str, mtime: float) -> bool:
    """True when the file did not change after the (valid) date in ``header``."""
    since = _http_date(header)
    return since is not None and int(mtime) <= since


def _with_headers(scope: Scope, replace: dict[bytes, bytes | None]) -> Scope:
    """A copy of ``scope`` whose request headers are replaced (None removes one)."""
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in replace]
    headers += [(k, v) for k, v in replace.items() if v is not None]
    return {**scope, "headers": headers}


class SignedMedia:
    """The ASGI app behind ``/media/{key:path}``.

    Args:
        storage: Where the files are.
        secret: The URL signing secret.
        redirect: Answer with a redirect to the store's presigned URL (object stores).
    """

    def __init__(self, storage: Storage, secret: str | bytes, *, redirect: bool = False) -> None:
        self.storage = storage
        self.secret = secret
        self.redirect = redirect

    async def _find(
        self, key: str, headers: dict[str, str]
    ) -> tuple[Response, os.stat_result] | None:
        """The response for a stored file and its stat, or None when nothing is there."""
        try:
            path = self.storage.local_path(key)
        except InvalidKey:
            return None
        media_type = content_type(key)
        if path is not None:
            try:
                st = await asyncio.to_thread(os.stat, path)
            except OSError:
                return None
            if not stat.S_ISREG(st.st_mode):
                return None
            return FileResponse(path, stat_result=st, media_type=media_type, headers=headers), st
        found = await self.storage.stat(key)
        if found is None:
            return None
        response = StoredObjectResponse(self.storage, found, media_type=media_type, headers=headers)
        return response, response.stat_result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response_scope = scope
        response = await self._respond(scope)
        if isinstance(response, tuple):
            response, response_scope = response
        await response(response_scope, receive, send)

    async def _respond(self, scope: Scope) -> Response | tuple[Response, Scope]:
        key = scope["path_params"]["key"]
        query = QueryParams(scope.get("query_string", b""))
        now = time.time()
        exp, sig = query.get("exp"), query.get("sig")
        if not signing.verify(key, exp, sig, self.secret, now=now):
            return PlainTextResponse(
                "This media link is invalid or has expired.",
                status_code=403,
                headers={"Cache-Control": "no-store"},
            )
        assert exp is not None  # verified above
        max_age = max(0, int(exp) - int(now))
        headers = {
            "Cache-Control": f"private, max-age={max_age}",
            "X-Content-Type-Options": "nosniff",
        }
        found = await self._find(key, headers)
        if found is None:
            return _not_found()
        response, st = found
        if self.redirect:
            url = await self.storage.presign(key, expires_in=max(1, max_age))
            if url is not None:
                # The store answers the ranges and conditions itself, for as long as the
                # signed link is valid; the redirect is as private as the link.
                return RedirectResponse(url, status_code=302, headers=headers)
        request_headers = Headers(scope=scope)
        etag = response.headers["etag"]
        # Preconditions in RFC 9110's order (13.2.2): If-Match, else If-Unmodified-Since,
        # then If-None-Match, else If-Modified-Since, then If-Range.
        if_match = request_headers.get("if-match")
        if_unmodified_since = request_headers.get("if-unmodified-since")
        if (if_match is not None and not _etag_matches_strongly(if_match, etag)) or (
            if_match is None
            and if_unmodified_since is not None
            and _modified_since(if_unmodified_since, st.st_mtime)
        ):
            return Response(
                status_code=412,
                headers={"ETag": etag, "Cache-Control": "no-store"},
            )
        if_none_match = request_headers.get("if-none-match")
        if_modified_since = request_headers.get("if-modified-since")
        if (if_none_match is not None and _etag_matches(if_none_match, etag)) or (
            if_none_match is None
            and if_modified_since is not None
            and _not_modified_since(if_modified_since, st.st_mtime)
        ):
            return Response(
                status_code=304,
                headers={
                    "ETag": etag,
                    "Last-Modified": response.headers["last-modified"],
                    "Cache-Control": f"private, max-age={max_age}",
                },
            )
        http_range = request_headers.get("range")
        if http_range is None:
            return response
        if_range = request_headers.get("if-range")
        if if_range is not None and if_range not in (etag, response.headers["last-modified"]):
            # The client's copy is stale: send the whole (new) file.
            return response, _with_headers(scope, {b"range": None, b"if-range": None})
        try:
            normalised = _normalise_range(http_range, st.st_size)
        except _Unsatisfiable:
            return Response(
                status_code=416,
                headers={
                    "Content-Range": f"bytes */{st.st_size}",
                    "Accept-Ranges": "bytes",
                    "Cache-Control": "no-store",
                },
            )
        replaced = {b"range": normalised.encode("latin-1") if normalised else None}
        return response, _with_headers(scope, replaced)


def _not_found() -> Response:
    return PlainTextResponse("Not found.", status_code=404, headers={"Cache-Control": "no-store"})


def media_routes(storage: Storage, secret: str | bytes, *, redirect: bool = False) -> list[Route]:
    """The signed media route, ``GET``/``HEAD /media/{key:path}?exp=...&sig=...``.

    Args:
        storage: Where the files are.
        secret: The URL signing secret (the same one :func:`vidgen.media.signing.signed_url`
            used).
        redirect: Answer with a redirect to the object store's presigned URL.
    """
    app = SignedMedia(storage, secret, redirect=redirect)
    return [Route("/media/{key:path}", app, methods=["GET", "HEAD"], name="media")]


class StoredObjectResponse(Response):
    """An object of a store streamed through: the whole of it, or the (already normalised,
    explicit ``bytes=a-b,...``) ranges of the request, as ``FileResponse`` would answer.

    Its ``stat_result`` holds the object's size and time, so the caller's preconditions work
    as for a file; its ETag is the store's own.
    """

    def __init__(
        self,
        storage: Storage,
        found: StoredObject,
        *,
        media_type: str,
        headers: dict[str, str],
    ) -> None:
        self.storage = storage
        self.key = found.key
        self.size = found.size
        self.media_type = media_type
        self.status_code = 200
        self.background = None
        modified = int(found.modified)
        self.stat_result = os.stat_result(
            (stat.S_IFREG | 0o644, 0, 0, 1, 0, 0, found.size, modified, modified, modified)
        )
        etag = found.etag or f'"{found.size:x}-{modified:x}"'
        self.init_headers(
            {
                **headers,
                "accept-ranges": "bytes",
                "content-length": str(found.size),
                "last-modified": formatdate(modified, usegmt=True),
                "etag": etag,
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = scope["method"].upper() == "HEAD"
        ranges = _explicit_ranges(Headers(scope=scope).get("range"), self.size)
        headers = dict(self.headers)
        if not ranges:
            status, body = 200, [(0, self.size, b"")]
            tail = b""
        elif len(ranges) == 1:
            start, end = ranges[0]
            status, body, tail = 206, [(start, end, b"")], b""
            headers["content-range"] = f"bytes {start}-{end - 1}/{self.size}"
            headers["content-length"] = str(end - start)
        else:
            boundary = secrets.token_hex(13)
            length, part_header = FileResponse.generate_multipart(
                self,  # type: ignore[arg-type]  # uses nothing of FileResponse's own state
                ranges,
                boundary,
                self.size,
                self.media_type,
            )
            status = 206
            body = [(start, end, part_header(start, end)) for start, end in ranges]
            tail = f"--{boundary}--".encode("latin-1")
            headers["content-type"] = f"multipart/byteranges; boundary={boundary}"
            headers["content-length"] = str(length)
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        if head:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        # Stream until done, or until the client goes away (then stop reading the store).
        streaming = asyncio.ensure_future(self._stream(send, body, tail, multi=len(body) > 1))
        watching = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (streaming, watching):
                task.cancel()
            await asyncio.gather(streaming, watching, return_exceptions=True)
        if streaming.done() and not streaming.cancelled() and streaming.exception() is not None:
            raise streaming.exception()  # type: ignore[misc]

    async def _stream(
        self, send: Send, parts: list[tuple[int, int, bytes]], tail: bytes, *, multi: bool
    ) -> None:
        for start, end, header in parts:
            if header:
                await send({"type": "http.response.body", "body": header, "more_body": True})
            if end > start:
                async for chunk in self.storage.read(self.key, start=start, end=end):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if multi:
                await send({"type": "http.response.body", "body": b"\r\n", "more_body": True})
        await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _explicit_ranges(header: str | None, size: int) -> list[tuple[int, int]]:
    """``bytes=a-b,...`` as written by :func:`_normalise_range` → [(a, b + 1), ...]."""
    if not header:
        return []
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return []
    ranges = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        start, end = int(first), min(int(last) + 1, size)
        if start < end:
            ranges.append((start, end))
    return ranges
