"""vidgen's exceptions. Each carries the contract's ``extensions.code``.

::

    VidgenError (INTERNAL)
    ├── Unauthenticated        UNAUTHENTICATED
    ├── Forbidden              FORBIDDEN
    ├── NotFound               NOT_FOUND   (also for other users' objects: ids reveal nothing)
    ├── BadUserInput           BAD_USER_INPUT  (``field`` names the offending input)
    ├── Conflict               CONFLICT    (illegal transition, duplicate, stale write)
    ├── RateLimited            RATE_LIMITED    (too many attempts: ``retryAfter`` seconds)
    ├── QuotaExceeded          QUOTA_EXCEEDED  (a user's limit: ``retryAfter`` when a wait helps)
    └── ConfigurationError     INTERNAL    (raised at start-up, never to clients)

The GraphQL layer turns these into errors with ``extensions.code`` in one place; anything
else reaches clients as INTERNAL and is logged in full.
"""

from __future__ import annotations

import math


class VidgenError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, **extensions: object) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = {k: v for k, v in extensions.items() if v is not None}


class Unauthenticated(VidgenError):
    code = "UNAUTHENTICATED"

    def __init__(
        self, message: str = "Sign in first: send 'Authorization: Bearer <token>'."
    ) -> None:
        super().__init__(message)


class Forbidden(VidgenError):
    code = "FORBIDDEN"


class NotFound(VidgenError):
    code = "NOT_FOUND"

    def __init__(self, what: str = "object", message: str | None = None) -> None:
        super().__init__(message or f"No {what} with that id.")


class BadUserInput(VidgenError):
    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.field = field


class Conflict(VidgenError):
    code = "CONFLICT"


def _whole_seconds(seconds: float | None) -> int | None:
    """A wait as clients get it in ``retryAfter``: whole seconds, rounded up, at least 1."""
    if seconds is None:
        return None
    return max(1, math.ceil(seconds))


class RateLimited(VidgenError):
    """Too many attempts in a short time (failed logins, mutations); ``retry_after`` says
    how many seconds until the next one is accepted."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float | None = None, **extensions: object):
        self.retry_after = _whole_seconds(retry_after)
        super().__init__(message, retryAfter=self.retry_after, **extensions)


class QuotaExceeded(VidgenError):
    """A user's limit (active jobs, seconds of video a day) is reached; ``retry_after``
    when waiting frees enough of it."""

    code = "QUOTA_EXCEEDED"

    def __init__(self, message: str, *, retry_after: float | None = None, **extensions: object):
        self.retry_after = _whole_seconds(retry_after)
        super().__init__(message, retryAfter=self.retry_after, **extensions)


class ConfigurationError(VidgenError):
    code = "INTERNAL"
