"""``GET /media/{key}?exp=...&sig=...``: stored media behind signed, expiring URLs.

Streaming, single and multiple byte ranges, If-Range and HEAD come from Starlette's
``FileResponse``. This module adds what it lacks:

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
import stat
import time
from email.utils import parsedate_to_datetime
from pathlib import Path

from starlette.datastructures import Headers, QueryParams
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vidgen.media import signing
from vidgen.media.storage import InvalidKey, Storage

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}
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
        storage: Where the files are (its ``path(key)`` must be a local file).
        secret: The URL signing secret.
    """

    def __init__(self, storage: Storage, secret: str | bytes) -> None:
        self.storage = storage
        self.secret = secret

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
        try:
            path = self.storage.path(key)
            st = await asyncio.to_thread(os.stat, path)
        except (InvalidKey, OSError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            return _not_found()
        assert exp is not None  # verified above
        max_age = max(0, int(exp) - int(now))
        response = FileResponse(
            path,
            stat_result=st,
            media_type=CONTENT_TYPES.get(Path(key).suffix.lower(), "application/octet-stream"),
            headers={
                "Cache-Control": f"private, max-age={max_age}",
                "X-Content-Type-Options": "nosniff",
            },
        )
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


def media_routes(storage: Storage, secret: str | bytes) -> list[Route]:
    """The signed media route, ``GET``/``HEAD /media/{key:path}?exp=...&sig=...``.

    Args:
        storage: Where the files are.
        secret: The URL signing secret (the same one :func:`vidgen.media.signing.signed_url`
            used).
    """
    return [
        Route(
            "/media/{key:path}", SignedMedia(storage, secret), methods=["GET", "HEAD"], name="media"
        )
    ]
