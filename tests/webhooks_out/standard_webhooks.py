"""A verifier of the Standard Webhooks spec, written for the tests from the spec alone.

It shares no code with ``vidgen.webhooks_out`` (the signer under test): the tests check
vidgen's deliveries with it, and check it against the spec's published example.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

TOLERANCE_SECONDS = 5 * 60


class InvalidSignature(Exception):
    pass


def _key(secret: str) -> bytes:
    prefix, _, encoded = secret.partition("_")
    if prefix != "whsec" or not encoded:
        raise InvalidSignature("secret is not whsec_<base64>")
    return base64.standard_b64decode(encoded)


def expected_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    content = b"%s.%s.%s" % (msg_id.encode(), timestamp.encode(), body)
    mac = hmac.HMAC(_key(secret), content, digestmod="sha256")
    return base64.standard_b64encode(mac.digest()).decode("ascii")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> Any:
    """The JSON of a delivery whose headers and body check out; InvalidSignature if not.

    Per the spec: the three headers must be present; the timestamp within five minutes of
    now; one of the space-separated ``v1,<base64>`` signatures must equal the HMAC-SHA256
    of ``{id}.{timestamp}.{body}`` keyed with the secret's base64-decoded part.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        timestamp = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as exc:
        raise InvalidSignature(f"missing header {exc}") from exc
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp outside the tolerance")
    wanted = expected_signature(secret, msg_id, timestamp, body)
    for item in signatures.split(" "):
        version, _, value = item.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), wanted.encode()):
            return json.loads(body)
    raise InvalidSignature("no signature matches")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
