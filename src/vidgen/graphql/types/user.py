"""Accounts: the user type, the token a sign-in returns, and the sign-in inputs."""

from __future__ import annotations

import strawberry
from strawberry import relay

from vidgen import models
from vidgen.graphql.types.rows import accepts


@strawberry.type(description="A user account.")
class User(relay.Node):
    id: relay.NodeID[int]
    email: str
    is_admin: bool

    is_type_of = accepts(models.User)


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
