"""Accounts: the user type, the token a sign-in returns, and the sign-in inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import strawberry
from strawberry import relay
from strawberry.types import Info

from vidgen import models
from vidgen.graphql.context import context_of
from vidgen.graphql.fastpath.field_plans import direct
from vidgen.graphql.types.limits import UserLimits, UserUsage, readable
from vidgen.graphql.types.rows import accepts

if TYPE_CHECKING:
    from vidgen.graphql.context import Context


@strawberry.type(description="A user account.")
class User(relay.Node):
    id: relay.NodeID[int]
    email: str
    is_admin: bool

    is_type_of = accepts(models.User)

    @strawberry.field(description="The limits that apply to this user (theirs and admins').")
    def limits(root: strawberry.Parent[Any], info: Info) -> UserLimits:
        context = context_of(info)
        readable(context, root)
        return UserLimits.of(root, context)

    @strawberry.field(description="What counts against this user's limits (theirs and admins').")
    async def usage(root: strawberry.Parent[Any], info: Info) -> UserUsage:
        context = context_of(info)
        readable(context, root)
        return await UserUsage.of(root, context)

    @strawberry.field(
        description="The secret that signs your outgoing webhooks (whsec_ + base64); null "
        "for anyone but you. Replace it with rotateWebhookSecret."
    )
    @direct
    def webhook_secret(root: Any, context: Context) -> str | None:
        viewer = context.viewer
        if viewer is None or viewer.id != root.id:
            return None
        return root.webhook_secret


@strawberry.type(description="A new bearer token and its user.")
class AuthPayload:
    token: str = strawberry.field(description="Send as 'Authorization: Bearer <token>'.")
    user: User


@strawberry.input
class RegisterInput:
    email: str
    password: str


@strawberry.input
class LoginInput:
    email: str
    password: str
