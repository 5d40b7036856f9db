"""The GraphQL context: who is asking, the process's runtime, and per-operation loaders.

The context API (what resolvers, permissions and the subscriptions module may rely on)::

    context = context_of(info)                   # info.context: a Context
    context.runtime                              # vidgen.runtime.Runtime (settings, bus,
                                                 #   providers, storage)
    context.settings                             # = context.runtime.settings
    context.viewer                               # models.User | None
    context.require_viewer()                     # the User, else raises errors.Unauthenticated
    await context.reauthenticate()               # re-check the stored token NOW (revoked or
                                                 #   expired since the socket opened?) and
                                                 #   return the User or None; updates viewer
    await context.refresh_viewer()               # the same, only when the last check is
                                                 #   older than settings.ws_reauth_seconds
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
  all operations on it (docs/library-notes.md). ``on_ws_connect`` authenticates the
  ``connection_init`` payload and sets ``viewer`` and ``token``. The object is shared, and a
  token can be revoked or expire while the socket is open, so the WebSocket handler calls
  ``context.refresh_viewer()`` before every operation (query, mutation or subscription): a
  token check older than ``ws_reauth_seconds`` is redone, else it costs nothing. A revoked
  token leaves ``viewer`` None and ``auth_error`` set, so the operation answers as over HTTP
  with that token. Running subscriptions call ``await context.reauthenticate()`` on their
  own schedule, and call ``context.fresh_loaders()`` before yielding each event, so nested
  fields (``owner``, ``tags``, ``statusHistory``...) are loaded fresh for that event and
  batched within it. ``fresh_loaders`` binds the loaders to the calling task through a
  ContextVar: Strawberry runs every WebSocket operation in its own task, so concurrent
  subscriptions on one socket never see each other's loaders.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vidgen import errors, logs
from vidgen.graphql.dataloaders import Loaders
from vidgen.services import users

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.websockets import WebSocket
    from strawberry.types import Info

    from vidgen.graphql.subscriptions import TokenChecks
    from vidgen.models import User
    from vidgen.runtime import Runtime
    from vidgen.settings import Settings


def _prime_viewer(name: str, loader: Any, viewer: User) -> None:
    if name == "user_by_id":
        loader.prime(viewer.id, viewer)


# (context, loaders) for the current task; see Context.fresh_loaders.
_operation_loaders: contextvars.ContextVar[tuple[Context, Loaders] | None] = contextvars.ContextVar(
    "vidgen_operation_loaders", default=None
)

REVOKED = "The token is invalid, expired or revoked; sign in again."


def context_of(info: Info) -> Context:
    """``info.context``, typed: the :class:`Context` of the operation."""
    return info.context


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
    # WebSocket: the process's shared token checks, and when the token was last checked.
    token_checks: TokenChecks | None = None
    checked_at: float | None = None
    # (result, error) of a root mutation field the compiled path already ran before
    # handing the request to Strawberry; its resolver answers with it instead of running
    # again (vidgen.graphql.compiled.mutation).
    answered: tuple[Any, BaseException | None] | None = None
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
        viewer = self.viewer
        if viewer is not None:  # as authenticate() primes the connection's loaders
            loaders.add_primer(lambda name, loader: _prime_viewer(name, loader, viewer))
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
        self.checked_at = time.monotonic()
        if self.viewer is None:
            self.auth_error = REVOKED
        else:
            logs.user_id.set(self.viewer.id)  # every log line of this request names the user
            # The viewer owns most of what it lists: `owner` then costs no query. Primed
            # when the loader is first made (a DataLoader costs more to make than most
            # requests that never use it, e.g. the compiled ones).
            viewer = self.viewer
            self._loaders.add_primer(lambda name, loader: _prime_viewer(name, loader, viewer))
        return self.viewer

    async def reauthenticate(self) -> User | None:
        """Check the stored token again now (tokens can be revoked while a socket is open).

        Through ``token_checks`` when set (one lookup per token at a time in the process),
        else straight from the database. Updates ``viewer``; a token that no longer names a
        user sets ``auth_error``.
        """
        if self.token is None:
            self.viewer = None
            return None
        if self.token_checks is not None:
            viewer = await self.token_checks.check(self.token)
        else:
            viewer = await users.authenticate(self.token)
        self.viewer = viewer
        self.checked_at = time.monotonic()
        if viewer is None:
            self.auth_error = REVOKED
        return viewer

    async def refresh_viewer(self) -> User | None:
        """The viewer the token names now, for an operation about to start on a WebSocket.

        Re-checks the token (:meth:`reauthenticate`) when the last check is older than
        ``settings.ws_reauth_seconds``; a fresh check, or a token already found gone, costs
        no query.
        """
        if self.viewer is None or self.checked_at is None:
            return self.viewer
        if time.monotonic() - self.checked_at < self.settings.ws_reauth_seconds:
            return self.viewer
        return await self.reauthenticate()
