"""Permission classes: access rules declared on fields, not repeated in resolvers.

Only "signed in" is a field-level rule. Ownership is the services' job: they scope every
query by viewer, so another user's object is simply not found.
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info

from vidgen import errors


class IsAuthenticated(BasePermission):
    """The caller sent a valid bearer token."""

    message = "Sign in first: send 'Authorization: Bearer <token>'."
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        info.context.require_viewer()  # raises Unauthenticated saying what was wrong
        return True

    def on_unauthorized(self) -> None:
        # Raise the domain error so the one error mapper gives it its code and message.
        raise errors.Unauthenticated(self.message)
