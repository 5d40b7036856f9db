"""Permission classes: access rules declared on fields, not repeated in resolvers.

Field-level rules: "signed in", and "an admin" for admin-only mutations. Ownership is the
services' job: they scope every query by viewer, so another user's object is simply not
found.
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


class IsAdmin(BasePermission):
    """The caller is an admin (list it after :class:`IsAuthenticated`)."""

    message = "Only an admin can do this."
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return bool(info.context.require_viewer().is_admin)

    def on_unauthorized(self) -> None:
        raise errors.Forbidden(self.message)
