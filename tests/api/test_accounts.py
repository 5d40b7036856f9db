"""Accounts service: hashed tokens, revocation, expiry, throttled last-use stamps, admins."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.api import documents as d
from tests.api.conftest import LiveServer
from vidgen import errors
from vidgen.models import ApiToken, User
from vidgen.services import users


async def test_tokens_are_stored_hashed_and_revocable(db) -> None:
    user = await users.create_user(email="A@Example.com", password="long enough")
    assert user.email == "a@example.com"
    assert user.password_hash.startswith("$argon2")
    token, row = await users.issue_token(user=user, name="laptop")
    assert token.startswith("vg_") and len(token) > 40
    stored = await ApiToken.get(id=row.id)
    assert stored.token_hash == users.hash_token(token) and token not in stored.token_hash
    assert stored.prefix == token[:10]

    assert (await users.authenticate(token)).id == user.id
    assert await users.authenticate(token + "x") is None
    assert await users.authenticate("") is None
    assert await users.revoke_token(token=token) is True
    assert await users.revoke_token(token=token) is False
    assert await users.authenticate(token) is None


async def test_expired_tokens_do_not_authenticate(db) -> None:
    user = await users.create_user(email="b@example.com", password="long enough")
    token, row = await users.issue_token(user=user, ttl_days=1)
    assert await users.authenticate(token) is not None
    await ApiToken.filter(id=row.id).update(
        expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    )
    assert await users.authenticate(token) is None


async def test_last_used_is_written_at_most_once_a_minute(db) -> None:
    user = await users.create_user(email="c@example.com", password="long enough")
    token, row = await users.issue_token(user=user)
    await users.authenticate(token)
    first = (await ApiToken.get(id=row.id)).last_used_at
    assert first is not None
    await users.authenticate(token)
    assert (await ApiToken.get(id=row.id)).last_used_at == first
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    await ApiToken.filter(id=row.id).update(last_used_at=old)
    await users.authenticate(token)
    assert (await ApiToken.get(id=row.id)).last_used_at > old


async def test_create_user_rules(db) -> None:
    admin = await users.create_user(email="root@example.com", is_admin=True)  # random password
    assert admin.is_admin
    with pytest.raises(errors.Unauthenticated):
        await users.login(email="root@example.com", password="")
    with pytest.raises(errors.Conflict):
        await users.create_user(email="ROOT@example.com", password="long enough")
    with pytest.raises(errors.BadUserInput) as bad:
        await users.create_user(email="x@example.com", password="short")
    assert bad.value.field == "password"
    with pytest.raises(errors.Forbidden):
        await users.register(email="y@example.com", password="long enough", signup_enabled=False)
    assert await User.all().count() == 1


async def test_admin_viewer(live_server: LiveServer) -> None:
    admin = await users.create_user(email="root@example.com", is_admin=True)
    token, _ = await users.issue_token(user=admin, name="cli")
    body = await live_server.gql(d.VIEWER, token=token)
    assert body["data"]["viewer"]["isAdmin"] is True
