"""Signed media URLs: an HMAC-SHA256 over the key and an expiry time.

A signed URL lets ``<video src>`` fetch a file without an Authorization header while one
user still cannot read another's files: the signature covers the exact key and the expiry,
so changing either one, or using the URL after it expires, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

# Domain separation: a signature made here can never be replayed as any other HMAC we make.
_CONTEXT = b"vidgen-media-v1"


def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise ValueError("The signing secret must not be empty.")
    return secret


def sign(key: str, expires_at: int, secret: str | bytes) -> str:
    """Sign ``key`` until ``expires_at``.

    Args:
        key: The storage key.
        expires_at: Unix time (seconds) after which the signature is refused.
        secret: The server's signing secret.

    Returns:
        The signature, URL-safe base64 without padding.
    """
    message = b"\n".join((_CONTEXT, key.encode(), str(int(expires_at)).encode()))
    digest = hmac.new(_secret_bytes(secret), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed_url(
    public_url: str, key: str, *, ttl: int, secret: str | bytes, now: float | None = None
) -> str:
    """Build ``{public_url}/media/{key}?exp=...&sig=...`` valid for ``ttl`` seconds.

    Args:
        public_url: The server's public base URL, e.g. ``https://api.example.com``.
        key: The storage key.
        ttl: How long the URL stays valid, in seconds.
        secret: The server's signing secret.
        now: The current Unix time (defaults to ``time.time()``).
    """
    current = time.time() if now is None else now
    expires_at = int(current) + int(ttl)
    query = urlencode({"exp": expires_at, "sig": sign(key, expires_at, secret)})
    return f"{public_url.rstrip('/')}/media/{quote(key, safe='/')}?{query}"


def verify(
    key: str,
    exp: int | str | None,
    sig: str | None,
    secret: str | bytes,
    now: float | None = None,
) -> bool:
    """True when ``sig`` is a valid signature of ``key`` until ``exp`` and ``exp`` is in the future.

    Malformed or missing values are simply invalid (never an exception).
    """
    if exp is None or sig is None:
        return False
    try:
        expires_at = int(exp)
    except (TypeError, ValueError):
        return False
    if isinstance(exp, str) and exp != str(expires_at):
        # "0100", "+100" or " 100" would sign the same number as another spelling.
        return False
    current = time.time() if now is None else now
    if current >= expires_at:
        return False
    expected = sign(key, expires_at, secret)
    return hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace"))
