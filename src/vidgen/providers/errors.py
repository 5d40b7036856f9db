"""The one place where provider failures are classified.

Every HTTP adapter wraps its calls in :meth:`ErrorContext.translating`, which turns httpx
exceptions, error responses and unreadable bodies into :class:`~vidgen.providers.base.ProviderError`
(always ``raise ... from exc``)::

    ProviderError                      retryable?  code
    ├── timeouts (connect/read/write/pool)   yes   timeout
    ├── connection reset / refused           yes   connection
    ├── 408, 409, 425                        yes   conflict_or_timeout
    ├── 429 (+ Retry-After / retry-after-ms, yes   rate_limited
    │        Google's RetryInfo, a "resets in
    │        ~30s" or "Expected available in
    │        N seconds" body, or the provider's
    │        documented lock-out)
    ├── 5xx                                  yes   server_error
    ├── malformed body (also too deep)       yes   malformed_response
    ├── 400 / 405 / 413 / 415 / 422          no    bad_request   (the provider's own words)
    ├── 401 / 403, Google's API_KEY_INVALID   no    auth          (names the setting to fix)
    ├── 404 on a known prediction            yes   prediction_lost (PredictionLost)
    ├── 404 otherwise                        no    not_found
    ├── content policy                       no    content_policy
    └── failed prediction                    no    prediction_failed (see :func:`failed`)

API keys never reach a message: every text that came from the provider goes through
:meth:`ErrorContext.scrub`, which removes the configured secrets and anything that looks
like a credential.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from vidgen.providers.base import PredictionLost, ProviderError

__all__ = [
    "MAX_RETRY_AFTER_SECONDS",
    "ErrorContext",
    "bounded_wait",
    "failed",
    "looks_like_policy",
    "parse_retry_after",
    "retry_after_from_text",
]

# Statuses that a retry may cure. 409 is retried by the official Runway/OpenAI SDKs.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
AUTH_STATUSES = frozenset({401, 403})

# How much of a provider's error text we keep in a message.
MAX_DETAIL_CHARS = 500

# The longest wait a provider's Retry-After can ask of us: one day. Longer (or "inf", or a
# date in the year 9999) is taken as a day, so that a schedule can always be computed and a
# job is never parked for ever by one odd header.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0

# A wait stated in an error's text, as Replicate does in both of its documented forms ("Your
# rate limit resets in ~30s.", and "Expected available in 1 second.").
_TEXT_RETRY_AFTER = re.compile(
    r"(?i)\b(?:resets?|try again|retry|available)\s+(?:in|after)\s+~?\s*(\d+(?:\.\d+)?)\s*"
    r"(s|secs?|seconds?|m|mins?|minutes?)\b"
)

# Credentials in the shapes the providers issue (and generic auth headers), scrubbed even
# when they are not the configured key (e.g. a key echoed back by a gateway).
_CREDENTIAL_PATTERNS = re.compile(
    r"(?i)(bearer\s+\S+|key\s+[A-Za-z0-9_:\-]{16,}|\bkey_[0-9a-f]{16,}|\br8_[A-Za-z0-9]{8,}"
    r"|\bsk-[A-Za-z0-9_\-]{8,}|\bwhsec_[A-Za-z0-9+/=]{8,})"
)

# Words in a provider's failure text that mean "the content was refused" (Replicate and fal
# report policy refusals as free text; Runway and OpenAI also give codes).
_POLICY_WORDS = (
    "content policy",
    "content_policy",
    "moderation",
    "nsfw",
    "safety",
    "flagged",
    "sensitive content",
    "content_filtered",
)


def looks_like_policy(*texts: object) -> bool:
    """True when a failure text or code says the content was refused by moderation."""
    joined = " ".join(str(t) for t in texts if t).lower()
    return any(word in joined for word in _POLICY_WORDS)


def bounded_wait(seconds: float | None) -> float | None:
    """``seconds`` clamped to ``[0, MAX_RETRY_AFTER_SECONDS]``; None (no hint) for NaN."""
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


def parse_retry_after(headers: httpx.Headers | dict[str, str], *, now: float) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``Retry-After`` (seconds or an
    HTTP-date), or None when the provider gave no usable hint.

    Always finite: never negative, never more than :data:`MAX_RETRY_AFTER_SECONDS` (a day).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return bounded_wait(float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return bounded_wait(float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return bounded_wait(when.timestamp() - now)


def retry_after_from_text(text: str) -> float | None:
    """A wait stated in an error's words ("resets in ~30s", "try again in 2 minutes")."""
    match = _TEXT_RETRY_AFTER.search(text)
    if match is None:
        return None
    seconds = float(match.group(1))
    if match.group(2).lower().startswith("m"):
        seconds *= 60.0
    return bounded_wait(seconds)


def failed(
    provider: str,
    message: str,
    *,
    code: str | None = None,
    retryable: bool = False,
    provider_code: str | None = None,
) -> ProviderError:
    """The error for a prediction the provider itself reported as failed.

    Content-policy refusals become ``code="content_policy"``; everything else
    ``prediction_failed``. Both are permanent unless the caller knows better.

    What decides, strongest first: the caller's ``code="content_policy"`` or a
    ``provider_code`` that names moderation; then the caller's own reading of a documented
    failure code (``provider_code`` given, or ``retryable=True``, which callers pass only
    when a documented code allows a retry);
    only when neither says anything do words in the free text ("moderation", "safety", ...)
    make it a content-policy refusal. Free text is written for people and mentions the
    moderation system when that system broke (Runway's ``INPUT_PREPROCESSING.INTERNAL``), so
    it must never turn a documented retryable failure into a permanent refusal.

    Args:
        provider: The provider's name, the message's prefix.
        message: The failure as the provider described it (already scrubbed).
        code: ``"content_policy"`` when the caller knows the content was refused.
        retryable: A documented code says another attempt may succeed.
        provider_code: The provider's documented failure code or error type, when it gave
            one and the caller has classified it.
    """
    classified = retryable or bool(provider_code)
    policy = (
        code == "content_policy"
        or looks_like_policy(provider_code)
        or (not classified and looks_like_policy(message, code))
    )
    return ProviderError(
        f"{provider}: {message}"[:MAX_DETAIL_CHARS],
        retryable=retryable and not policy,
        code="content_policy" if policy else "prediction_failed",
    )


@dataclass(frozen=True)
class ErrorContext:
    """How one adapter's failures are described.

    Args:
        provider: The provider's name as used in messages ("runway").
        key_setting: The environment variable that holds its key, named in auth errors.
        secrets: Values that must never appear in a message (the key, webhook secrets).
        forbidden_is_policy: Stability answers 403 for moderation, not for a bad key.
        rate_limit_seconds: The provider's documented lock-out after a 429 (Stability: 60 s),
            used when the response states no wait of its own; None: the engine's fallback
            (``VIDGEN_RATE_LIMIT_RETRY_SECONDS``) applies.
    """

    provider: str
    key_setting: str
    secrets: tuple[str, ...] = ()
    forbidden_is_policy: bool = False
    rate_limit_seconds: float | None = None

    def scrub(self, text: str) -> str:
        """Remove every configured secret and anything shaped like a credential."""
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return _CREDENTIAL_PATTERNS.sub("***", text)

    @contextlib.contextmanager
    def translating(self, action: str, *, lost_on_404: bool = False) -> Iterator[None]:
        """Turn anything httpx or a bad body raises inside the block into ProviderError.

        Args:
            action: What was being done, for the message ("submit", "poll", ...).
            lost_on_404: A 404 means the provider forgot a prediction we know existed
                (raise :class:`PredictionLost` so the engine submits again).
        """
        try:
            yield
        except ProviderError:
            raise
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"{self.provider} did not answer in time during {action} ({type(exc).__name__}).",
                retryable=True,
                code="timeout",
                unsent=isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
            ) from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
            raise ProviderError(
                f"Could not reach {self.provider} during {action} ({type(exc).__name__}).",
                retryable=True,
                code="connection",
                unsent=isinstance(exc, httpx.ConnectError),
            ) from exc
        except httpx.HTTPStatusError as exc:
            raise self.from_response(exc.response, action, lost_on_404=lost_on_404) from exc
        except httpx.HTTPError as exc:
            # Invalid URL, unsupported protocol, too many redirects: configuration, not luck.
            raise ProviderError(
                f"{self.provider} request failed during {action}: "
                f"{self.scrub(str(exc))[:MAX_DETAIL_CHARS]}",
                retryable=False,
                code="request_error",
            ) from exc
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
            # An unreadable or unexpected body (HTML from a proxy, truncated JSON, a missing
            # field, JSON nested too deep to parse). Retryable: it is almost always a gateway
            # hiccup, and the engine's retry budget bounds the cost if it is not.
            raise ProviderError(
                f"{self.provider} sent a malformed response during {action}"
                f" ({type(exc).__name__}).",
                retryable=True,
                code="malformed_response",
            ) from exc

    def from_response(
        self, response: httpx.Response, action: str, *, lost_on_404: bool = False
    ) -> ProviderError:
        """Classify an HTTP error response (its body must have been read)."""
        status = response.status_code
        detail = self.scrub(_detail(response))
        said = f": {detail}" if detail else ""
        codes = _error_codes(response)
        rejected_key = bool(codes & KEY_REJECTED_REASONS)
        if rejected_key or (
            status in AUTH_STATUSES and not (status == 403 and self.forbidden_is_policy)
        ):
            return ProviderError(
                f"{self.key_setting} was rejected by {self.provider} ({status}){said}",
                retryable=False,
                code="auth",
                status_code=status,
            )
        if status == 403 or (status in (400, 422) and looks_like_policy(detail)):
            return ProviderError(
                f"{self.provider} refused the content ({status}){said}",
                retryable=False,
                code="content_policy",
                status_code=status,
            )
        if status == 429 and QUOTA_EXHAUSTED in (codes | {detail.lower()}):
            # OpenAI-style "You exceeded your current quota": no wait ends it, only billing.
            # Not an outage to sit out (vidgen.jobs.retry): fail now and say what to do.
            return ProviderError(
                f"{self.provider} says the account is out of quota (429){said}; add credit"
                " or raise the plan's limits, then retry the video",
                retryable=False,
                code="quota_exhausted",
                status_code=status,
            )
        if status == 429:
            # Few providers promise a Retry-After; Google states the wait in a RetryInfo,
            # Replicate in the body's words only.
            retry_after = parse_retry_after(response.headers, now=time.time())
            if retry_after is None:
                retry_after = _retry_delay(response)
            if retry_after is None:
                retry_after = retry_after_from_text(detail)
            if retry_after is None:
                retry_after = bounded_wait(self.rate_limit_seconds)
            return ProviderError(
                f"{self.provider} is rate limiting us (429){said}",
                retryable=True,
                code="rate_limited",
                retry_after=retry_after,
                status_code=status,
            )
        if status >= 500 or status in RETRYABLE_STATUSES:
            return ProviderError(
                f"{self.provider} failed during {action} ({status}){said}",
                retryable=True,
                code="server_error" if status >= 500 else "conflict_or_timeout",
                retry_after=parse_retry_after(response.headers, now=time.time()),
                status_code=status,
            )
        if status in (404, 410):
            if lost_on_404:
                lost = PredictionLost(f"{self.provider} no longer knows this prediction{said}")
                lost.status_code = status
                return lost
            return ProviderError(
                f"{self.provider} answered {status} during {action}{said}",
                retryable=False,
                code="not_found",
                status_code=status,
            )
        return ProviderError(
            f"{self.provider} rejected the request ({status}){said}",
            retryable=False,
            code="bad_request",
            status_code=status,
        )


# The error code of an OpenAI-compatible 429 whose cause is billing, not load.
QUOTA_EXHAUSTED = "insufficient_quota"
# Google answers a wrong API key with 400 INVALID_ARGUMENT whose ErrorInfo reason says so.
KEY_REJECTED_REASONS = frozenset({"api_key_invalid"})


def _detail(response: httpx.Response) -> str:
    """The provider's own words from an error body, in any of the shapes they use."""
    try:
        raw = response.content
    except httpx.ResponseNotRead:
        return ""
    if not raw:
        return ""
    try:
        body: Any = json.loads(raw)
    except ValueError:
        text = raw[:MAX_DETAIL_CHARS].decode("utf-8", "replace").strip()
        return text if "<html" not in text.lower() else ""
    except RecursionError:
        return ""  # nested too deep to read: a malformed body has no words worth keeping
    try:
        return _flatten(body)[:MAX_DETAIL_CHARS]
    except RecursionError:
        return ""


def _error_object(response: httpx.Response) -> dict[str, Any] | None:
    """The ``{"error": {...}}`` object of an OpenAI-style or google.rpc.Status body."""
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError, httpx.ResponseNotRead):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _error_codes(response: httpx.Response) -> set[str]:
    """The codes an error body names, lowercase: OpenAI's ``code`` and ``type``, Google's
    ``status`` and the ``reason`` of each ErrorInfo in its ``details``."""
    error = _error_object(response)
    if error is None:
        return set()
    codes = {
        str(error[k]).lower() for k in ("code", "type", "status") if isinstance(error.get(k), str)
    }
    for item in _details(error):
        if isinstance(item.get("reason"), str):
            codes.add(item["reason"].lower())
    return codes


def _retry_delay(response: httpx.Response) -> float | None:
    """The wait a google.rpc.RetryInfo in the error's ``details`` asks for ("13s", "0.5s")."""
    error = _error_object(response)
    for item in _details(error or {}):
        delay = item.get("retryDelay")
        if str(item.get("@type", "")).endswith("google.rpc.RetryInfo") and isinstance(delay, str):
            try:
                return bounded_wait(float(delay.strip().removesuffix("s")))
            except ValueError:
                return None
    return None


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [item for item in details if isinstance(item, dict)]


def _flatten(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        return "; ".join(_flatten(item) for item in body if item)
    if isinstance(body, dict):
        # OpenAI {"error": {"message"}}, Runway {"error": "..."}, Replicate/fal {"detail"},
        # Stability {"errors": [...]}, pydantic-style [{"loc", "msg"}].
        for key in ("error", "detail", "errors", "message", "msg", "failure", "title"):
            if body.get(key):
                text = _flatten(body[key])
                loc = body.get("loc") or body.get("param")
                if loc and key in ("msg", "message"):
                    where = ".".join(map(str, loc)) if isinstance(loc, list) else str(loc)
                    text = f"{where}: {text}"
                return text
        return ""
    return str(body)
