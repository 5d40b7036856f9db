"""vidgen's exceptions. Each carries the contract's ``extensions.code``.

::

    VidgenError (INTERNAL)
    ├── Unauthenticated        UNAUTHENTICATED
    ├── Forbidden              FORBIDDEN
    ├── NotFound               NOT_FOUND   (also for other users' objects: ids reveal nothing)
    ├── BadUserInput           BAD_USER_INPUT  (``field`` names the offending input)
    ├── Conflict               CONFLICT    (illegal transition, duplicate, stale write)
    └── ConfigurationError     INTERNAL    (raised at start-up, never to clients)

The GraphQL layer turns these into errors with ``extensions.code`` in one place; anything
else reaches clients as INTERNAL and is logged in full.
"""

from __future__ import annotations


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


class ConfigurationError(VidgenError):
    code = "INTERNAL"
