"""The one classifier: Retry-After parsing, status classes, scrubbing, connection errors."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from vidgen.providers import errors
from vidgen.providers.base import PredictionLost, ProviderError

CTX = errors.ErrorContext(
    provider="runway", key_setting="VIDGEN_RUNWAY_API_KEY", secrets=("key_" + "ab" * 64,)
)


def response(
    status: int, body: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    request = httpx.Request("GET", "https://api.example.test/v1/x")
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "30"}, 0.25),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert errors.parse_retry_after(headers, now=0.0) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2026, 1, 1, 12, 0, 42, tzinfo=UTC), usegmt=True)
    assert errors.parse_retry_after({"Retry-After": later}, now=now.timestamp()) == 42.0


@pytest.mark.parametrize(
    ("status", "retryable", "code"),
    [
        (400, False, "bad_request"),
        (422, False, "bad_request"),
        (401, False, "auth"),
        (403, False, "auth"),
        (404, False, "not_found"),
        (408, True, "conflict_or_timeout"),
        (409, True, "conflict_or_timeout"),
        (429, True, "rate_limited"),
        (500, True, "server_error"),
        (502, True, "server_error"),
        (503, True, "server_error"),
        (504, True, "server_error"),
    ],
)
def test_status_classes(status: int, retryable: bool, code: str) -> None:
    error = CTX.from_response(response(status, {"error": "nope"}), "submit")
    assert (error.retryable, error.code, error.status_code) == (retryable, code, status)


def test_404_on_a_known_prediction_is_lost() -> None:
    assert isinstance(CTX.from_response(response(404), "poll", lost_on_404=True), PredictionLost)


def test_validation_message_keeps_the_providers_words() -> None:
    body = {"error": {"message": "Invalid size", "param": "size", "code": "invalid_value"}}
    error = CTX.from_response(response(400, body), "submit")
    assert "size: Invalid size" in error.message
    detail = {"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]}
    assert "body.prompt: field required" in CTX.from_response(response(422, detail), "x").message


def test_policy_words_in_a_400_are_content_policy() -> None:
    error = CTX.from_response(response(400, {"error": "Prompt flagged by moderation"}), "submit")
    assert (error.retryable, error.code) == (False, "content_policy")
    stability = errors.ErrorContext(
        "stability", "VIDGEN_STABILITY_API_KEY", forbidden_is_policy=True
    )
    assert stability.from_response(response(403), "submit").code == "content_policy"


def test_secrets_and_credential_shapes_are_scrubbed() -> None:
    key = CTX.secrets[0]
    text = CTX.scrub(
        f"bad key {key}; Authorization: Bearer abc.def; r8_abcdefghijkl sk-proj-123456789"
    )
    assert key not in text and "abc.def" not in text
    assert "r8_abcdefghijkl" not in text and "sk-proj-123456789" not in text
    error = CTX.from_response(response(401, {"error": f"Key {key} is disabled"}), "submit")
    assert key not in error.message
    assert error.message.startswith("VIDGEN_RUNWAY_API_KEY was rejected by runway (401)")


def test_failed_predictions() -> None:
    assert errors.failed("fal", "runner died").code == "prediction_failed"
    assert not errors.failed("fal", "runner died").retryable
    policy = errors.failed("fal", "flagged as NSFW")
    assert (policy.code, policy.retryable) == ("content_policy", False)
    by_code = errors.failed("fal", "failed", retryable=True, provider_code="content_policy_x")
    assert (by_code.code, by_code.retryable) == ("content_policy", False)


@pytest.mark.parametrize(
    ("text", "failure_code"),
    [
        ("The moderation system is temporarily unavailable.", "INPUT_PREPROCESSING.INTERNAL"),
        ("Internal error while running safety checks.", "INTERNAL.BAD_OUTPUT.CODE01"),
    ],
)
def test_a_documented_retryable_code_beats_words_in_the_text(text: str, failure_code: str) -> None:
    """Runway's call: a code its docs call retryable, with free text that mentions
    moderation because the moderation system broke."""
    error = errors.failed("runway", f"{text} [{failure_code}]", retryable=True)
    assert (error.code, error.retryable) == ("prediction_failed", True)
    error = errors.failed("runway", text, retryable=True, provider_code=failure_code)
    assert (error.code, error.retryable) == ("prediction_failed", True)
    # Classified but permanent: the words still do not make it a policy refusal.
    error = errors.failed("runway", text, provider_code="ASSET.INVALID")
    assert (error.code, error.retryable) == ("prediction_failed", False)


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "inf"},
        {"Retry-After": "1e400"},
        {"Retry-After": "999999999999"},
        {"retry-after-ms": "inf"},
        {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},
    ],
)
def test_retry_after_is_finite_and_at_most_a_day(headers: dict[str, str]) -> None:
    assert errors.parse_retry_after(headers, now=0.0) == errors.MAX_RETRY_AFTER_SECONDS == 86400
    assert errors.parse_retry_after({"Retry-After": "nan"}, now=0.0) is None


def test_a_429_without_retry_after() -> None:
    replicate = CTX.from_response(
        response(429, {"detail": "Request was throttled. Your rate limit resets in ~30s."}),
        "submit",
    )
    assert (replicate.code, replicate.retry_after) == ("rate_limited", 30.0)
    minutes = CTX.from_response(response(429, {"error": "Try again in 2 minutes."}), "submit")
    assert minutes.retry_after == 120.0
    # Nothing stated: None, and the engine's fallback applies (see tests/jobs).
    assert CTX.from_response(response(429, {"error": "slow down"}), "submit").retry_after is None
    locked = errors.ErrorContext("stability", "VIDGEN_STABILITY_API_KEY", rate_limit_seconds=60)
    assert locked.from_response(response(429), "submit").retry_after == 60.0
    # A stated wait still wins over the documented lock-out.
    said = locked.from_response(response(429, headers={"Retry-After": "5"}), "submit")
    assert said.retry_after == 5.0


def test_deeply_nested_json_is_a_malformed_response() -> None:
    deep = b"[" * 100_000
    with pytest.raises(ProviderError) as caught:
        with CTX.translating("poll"):
            httpx.Response(200, content=deep).json()
    assert (caught.value.retryable, caught.value.code) == (True, "malformed_response")
    request = httpx.Request("GET", "https://api.example.test/v1/x")
    error = CTX.from_response(httpx.Response(500, content=deep, request=request), "poll")
    assert (error.retryable, error.code) == (True, "server_error")


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient() as client:
        with pytest.raises(ProviderError) as caught:
            with CTX.translating("submit"):
                await client.get(f"http://127.0.0.1:{port}/")
    assert (caught.value.retryable, caught.value.code) == (True, "connection")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_bad_configuration_is_permanent() -> None:
    with pytest.raises(ProviderError) as caught:
        with CTX.translating("submit"):
            raise httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'")
    assert (caught.value.retryable, caught.value.code) == (False, "request_error")


def test_a_429_for_an_exhausted_quota_is_not_retried() -> None:
    """OpenAI's "insufficient_quota" 429 ends only with billing: retried as an outage it
    would hold jobs for hours (VIDGEN_PROVIDER_OUTAGE_SECONDS) instead of saying so."""
    body = {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        }
    }
    error = CTX.from_response(response(429, body), "submit")
    assert (error.retryable, error.code, error.status_code) == (False, "quota_exhausted", 429)
    assert "out of quota" in error.message
    plain = CTX.from_response(response(429, {"error": {"message": "Rate limit reached"}}), "submit")
    assert (plain.retryable, plain.code) == (True, "rate_limited")


def google_error(status: int, state: str, message: str, *details: dict[str, object]) -> object:
    error: dict[str, object] = {"code": status, "message": message, "status": state}
    if details:
        error["details"] = list(details)
    return {"error": error}


def test_googles_retry_info_gives_the_wait_of_a_429() -> None:
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}
    body = google_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", retry_info)
    error = CTX.from_response(response(429, body), "submit")
    assert (error.code, error.retry_after) == ("rate_limited", 13.0)
    # A Retry-After header, when there is one, still wins.
    both = CTX.from_response(response(429, body, {"Retry-After": "2"}), "submit")
    assert both.retry_after == 2.0


def test_googles_invalid_key_400_is_an_auth_error() -> None:
    """Google answers a wrong key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID."""
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
    body = google_error(400, "INVALID_ARGUMENT", "API key not valid.", info)
    error = CTX.from_response(response(400, body), "submit")
    assert (error.retryable, error.code, error.status_code) == (False, "auth", 400)
    assert "VIDGEN_RUNWAY_API_KEY was rejected" in error.message
    other = google_error(400, "INVALID_ARGUMENT", "durationSeconds must be 8.")
    assert CTX.from_response(response(400, other), "submit").code == "bad_request"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Request was throttled. Your rate limit resets in ~30s.", 30.0),
        ("Request was throttled. Expected available in 29 seconds.", 29.0),
        ("Request was throttled. Expected available in 1 second.", 1.0),
        ("Please try again in 2 minutes.", 120.0),
        ("Request was throttled.", None),
    ],
)
def test_waits_stated_in_words(text: str, seconds: float | None) -> None:
    assert errors.retry_after_from_text(text) == seconds
