"""authenticate(): one statement per request, and exactly the semantics of the ORM lookup it
replaced (unknown/revoked/expired -> None, last_used_at stamped at most once a minute, the
User as a fetched row)."""

from __future__ import annotations

import datetime as dt

from tests.api.conftest import StatementCounter
from vidgen.models import ApiToken, User
from vidgen.services import users


def _ago(**delta: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(**delta)


async def test_a_known_token_costs_one_select_and_the_stamp_at_most_once_a_minute(
    db, count_statements: StatementCounter
) -> None:
    user = await users.create_user(email="fast@example.com", password="long enough")
    token, row = await users.issue_token(user=user)
    assert row.last_used_at is None

    with count_statements.counting() as counter:
        assert (await users.authenticate(token)).id == user.id
        # The first use stamps last_used_at: SELECT + conditional UPDATE.
        assert counter.count == 2, counter.statements
        assert counter.statements[1].lstrip().upper().startswith("UPDATE")
        counter.reset()
        for _ in range(3):
            assert (await users.authenticate(token)).id == user.id
        assert counter.count == 3, counter.statements  # one SELECT each, no write
        assert all(s.lstrip().upper().startswith("SELECT") for s in counter.statements)
    stamped = (await ApiToken.get(id=row.id)).last_used_at
    assert stamped is not None and _ago(minutes=1) < stamped

    # Older than the resolution: stamped again (once); just inside it: left alone.
    await ApiToken.filter(id=row.id).update(last_used_at=_ago(seconds=61))
    with count_statements.counting() as counter:
        counter.reset()
        assert await users.authenticate(token) is not None
        assert counter.count == 2, counter.statements
    assert (await ApiToken.get(id=row.id)).last_used_at > _ago(seconds=30)
    inside = _ago(seconds=50)
    await ApiToken.filter(id=row.id).update(last_used_at=inside)
    with count_statements.counting() as counter:
        counter.reset()
        assert await users.authenticate(token) is not None
        assert counter.count == 1, counter.statements
    assert (await ApiToken.get(id=row.id)).last_used_at == inside


async def test_unknown_revoked_and_expired_tokens_give_none(db) -> None:
    user = await users.create_user(email="gone@example.com", password="long enough")
    token, row = await users.issue_token(user=user, ttl_days=1)
    assert await users.authenticate(token) is not None
    for bad in ("", "vg_", token + "x", "xx" + token[2:], "vg_" + "a" * 300):
        assert await users.authenticate(bad) is None

    await ApiToken.filter(id=row.id).update(expires_at=_ago(seconds=-30))  # not yet
    assert await users.authenticate(token) is not None
    await ApiToken.filter(id=row.id).update(expires_at=_ago(seconds=1))
    assert await users.authenticate(token) is None
    await ApiToken.filter(id=row.id).update(expires_at=None)
    assert await users.authenticate(token) is not None
    assert await users.revoke_token(token=token) is True
    assert await users.authenticate(token) is None

    # Another token of the same user is unaffected; deleting the user ends it.
    other, _ = await users.issue_token(user=user)
    assert (await users.authenticate(other)).id == user.id
    await User.filter(id=user.id).delete()
    assert await users.authenticate(other) is None


async def test_the_user_is_a_fetched_row(db) -> None:
    user = await users.create_user(email="row@example.com", password="long enough", is_admin=True)
    token, _ = await users.issue_token(user=user)
    viewer = await users.authenticate(token)
    fetched = await User.get(id=user.id)

    assert type(viewer) is User
    for name in User._meta.fields_db_projection:
        assert getattr(viewer, name) == getattr(fetched, name), name
    assert viewer.pk == user.id and viewer.is_admin is True
    assert viewer.created_at.tzinfo is not None
    assert viewer._saved_in_db and not viewer._partial
    # It works as a saved instance: relations query by it and it can be saved.
    assert await ApiToken.filter(user=viewer).count() == 1
    viewer.is_admin = False
    await viewer.save(update_fields=["is_admin"])
    assert (await User.get(id=user.id)).is_admin is False
