"""Secrets and signatures: vidgen's signer against the Standard Webhooks spec's published
example and against the tests' own verifier (tests/webhooks_out/standard_webhooks.py)."""

from __future__ import annotations

import base64
import time

import pytest

from tests.webhooks_out import standard_webhooks
from vidgen.webhooks_out import signing

# The example the Standard Webhooks specification publishes.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_both_implementations_reproduce_the_spec_example() -> None:
    assert signing.signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert standard_webhooks.verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP) == {
        "test": 2432232314
    }


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    first, second = signing.new_secret(), signing.new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert len(first) <= 64  # the column


def test_headers_verify_and_any_change_breaks_them() -> None:
    secret = signing.new_secret()
    body = b'{"type":"video.updated"}'
    now = int(time.time())
    headers = signing.headers(secret, "msg_1", now, body)
    assert standard_webhooks.verify(secret, headers, body) == {"type": "video.updated"}
    tampered = [
        (signing.new_secret(), headers, body),
        (secret, {**headers, "webhook-id": "msg_2"}, body),
        (secret, {**headers, "webhook-timestamp": str(now + 1)}, body),
        (secret, headers, body + b" "),
    ]
    for other_secret, other_headers, other_body in tampered:
        with pytest.raises(standard_webhooks.InvalidSignature):
            standard_webhooks.verify(other_secret, other_headers, other_body)


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_%%%"])
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError):
        signing.secret_key(secret)
