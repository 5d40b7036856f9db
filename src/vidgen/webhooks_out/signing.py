"""Signing secrets and signatures of outgoing webhooks, per the Standard Webhooks spec.

A secret is ``whsec_`` followed by the base64 of 32 random bytes; those bytes are the HMAC
key. A delivery carries three headers: ``webhook-id`` (the event's id, the same on every
retry), ``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``
(``v1,`` and the base64 of HMAC-SHA256 over ``id.timestamp.body``). Receivers recompute it
with their copy of the secret and refuse timestamps far from their clock (replays).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
KEY_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret (``whsec_`` + base64 of 32 random bytes)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a secret (the base64 part after ``whsec_``).

    Raises:
        ValueError: not a secret in that form.
    """
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret's key is base64") from exc
    if not key:
        raise ValueError("a webhook secret's key is empty")
    return key


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of one attempt: ``v1,<base64>``."""
    signed = message_id.encode() + b"." + str(int(timestamp)).encode() + b"." + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
