"""The GraphQL context: who is asking, the process's runtime, and per-operation loaders.

The context API (what resolvers, permissions and the subscriptions module may rely on)::

    context = info.context                       # a Context
    context.runtime                              # vidgen.runtime.Runtime (settings, bus,
                                                 #   providers, storage)
    context.settings                             # = context.runtime.settings
    context.viewer                               # models.User | None
    context.require_viewer()                     # the User, else raises errors.Unauthenticated
    await context.reauthenticate()               # re-check the stored token NOW (revoked or
                                                 #   expired since the socket opened?) and
                                                 #   return the User or None; updates viewer
    context.loaders                              # dataloaders.Loaders of the CURRENT operation
    context.fresh_loaders()                      # new Loaders for the current task, returned;
                                                 #   later `context.loaders` in this task
                                                 #   (and its field resolvers) use them
    context.request                              # starlette Request or WebSocket (None in
                                                 #   schema.execute tests)
    context.connection_params                    # WebSocket connection_init payload, or None

How it is made:

- HTTP: one Context per request (``get_context``); the viewer comes from the
  ``Authorization: Bearer <token>`` header. A bad or revoked token leaves ``viewer`` None and
  sets ``auth_error``, so protected fields say UNAUTHENTICATED with a useful message.
- WebSocket: Strawberry calls ``get_context`` ONCE per socket and shares the object between
  all operations on it. ``on_ws_connect`` authenticates the ``connection_init`` payload and
  sets ``viewer`` and ``token``. Because the object is shared, subscription resolvers must:
  call ``await context.reauthenticate()`` when they start (and may do so again later), and
  call ``context.fresh_loaders()`` before yielding each event, so nested fields
  (``owner``, ``tags``, ``statusHistory``...) are loaded fresh for that event and batched
  within it. ``fresh_loaders`` binds the loaders to the calling task through a ContextVar:
  Strawberry runs every WebSocket operation in its own task, so concurrent subscriptions on
  one socket never see each other's loaders.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vidgen import errors, logs
from vidgen.graphql.dataloaders import Loaders
from vidgen.services import users

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.websockets import WebSocket

    from vidgen.models import User
    from vidgen.runtime import Runtime
    from vidgen.settings import Settings

# (context, loaders) for the current task; see Context.fresh_loaders.
_operation_loaders: contextvars.ContextVar[tuple[Context, Loaders] | None] = contextvars.ContextVar(
    "vidgen_operation_loaders", default=None
)


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value (None when absent)."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""  # present but malformed
    return token.strip()


@dataclass(eq=False)
class Context:
    """One request's (or one WebSocket's) view of the world. See the module docstring."""

    runtime: Runtime
    request: Request | WebSocket | None = None
    response: Response | None = None
    viewer: User | None = None
    token: str | None = None
    auth_error: str | None = None
    # Strawberry stores the connection_init payload here (it must exist as an attribute).
    connection_params: dict[str, Any] | None = None
    _loaders: Loaders = field(default_factory=Loaders)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def loaders(self) -> Loaders:
        bound = _operation_loaders.get()
        if bound is not None and bound[0] is self:
            return bound[1]
        return self._loaders

    def fresh_loaders(self) -> Loaders:
        """New loaders for the current task (operation); returned and used from now on."""
        loaders = Loaders()
        _operation_loaders.set((self, loaders))
        return loaders

    def require_viewer(self) -> User:
        """The signed-in user, else :class:`~vidgen.errors.Unauthenticated`."""
        if self.viewer is None:
            if self.auth_error:
                raise errors.Unauthenticated(self.auth_error)
            raise errors.Unauthenticated()
        return self.viewer

    async def authenticate(self, authorization: str | None) -> User | None:
        """Sign in with an ``Authorization`` header value (``Bearer <token>``)."""
        token = bearer_token(authorization)
        self.token = token or None
        self.viewer = None
        self.auth_error = None
        if token is None:
            return None
        if not token:
            self.auth_error = "Send the token as 'Authorization: Bearer <token>'."
            return None
        self.viewer = await users.authenticate(token)
        if self.viewer is None:
            self.auth_error = "The token is invalid, expired or revoked; sign in again."
        else:
            logs.user_id.set(self.viewer.id)  # every log line of this request names the user
            # The viewer owns most of what it lists: `owner` then costs no query.
            self._loaders.user_by_id.prime(self.viewer.id, self.viewer)
        return self.viewer

    async def reauthenticate(self) -> User | None:
        """Check the stored token again (tokens can be revoked while a socket is open)."""
        if self.token is None:
            self.viewer = None
            return None
        self.viewer = await users.authenticate(self.token)
        if self.viewer is None:
            self.auth_error = "The token is invalid, expired or revoked; sign in again."
        return self.viewer
