"""Accounts: users, passwords and API tokens.

Passwords are hashed with argon2 (off the event loop: hashing is deliberately slow). Tokens
are random (``vg_`` + 43 url-safe characters), shown once, and stored only as their SHA-256
hash, so a database leak reveals no usable token. A token can expire (``token_ttl_days``)
and be revoked. ``last_used_at`` is refreshed at most once a minute per token, so
authenticating a request costs one SELECT, not a write every time.

Each user also has the secret that signs their outgoing webhooks (``whsec_`` + base64,
kept as it is: signing needs it), made with the account and replaced by
:func:`rotate_webhook_secret`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import logging
import re
import secrets
import unicodedata
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from tortoise.backends.asyncpg import AsyncpgDBClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from vidgen import db, dialect, errors
from vidgen.models import ApiToken, User
from vidgen.services.throttle import Throttle
from vidgen.webhooks_out.signing import new_secret

TOKEN_PREFIX = "vg_"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Characters that do not show (controls, format characters such as U+200B ZERO WIDTH
# SPACE, separators) or are not characters at all (lone surrogates): an address holding
# one reads like another account's ("\u200bu@ex.io" and "u@ex.io").
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
_hasher = PasswordHasher()
# Verified against when the email is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("vidgen-dummy-password")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256 hex digest.

    Any text hashes, also text UTF-8 cannot encode (a lone surrogate, which JSON can carry
    in a WebSocket's connection_init): no issued token has one, so it simply matches none.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _has_invisible(value: str) -> bool:
    """True when ``value`` holds a character of :data:`_INVISIBLE_CATEGORIES`."""
    if value.isascii():
        return not value.isprintable() or " " in value  # controls or spaces
    return any(unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in value)


def normalize_email(email: str) -> str:
    """Trim and lower-case an email address; refuse anything that does not look like one,
    or that holds a character that does not show (see :data:`_INVISIBLE_CATEGORIES`)."""
    value = (email or "").strip().lower()
    if len(value) > 320 or not _EMAIL_RE.match(value):
        raise errors.BadUserInput("Enter a valid email address.", field="email")
    if _has_invisible(value):
        raise errors.BadUserInput(
            "An email address cannot contain control, format (zero-width) or space characters.",
            field="email",
        )
    return value


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise errors.BadUserInput(
            f"The password must have at least {MIN_PASSWORD_LENGTH} characters.",
            field="password",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise errors.BadUserInput(
            f"The password must have at most {MAX_PASSWORD_LENGTH} characters.", field="password"
        )


async def hash_password(password: str) -> str:
    """argon2 hash of ``password``, computed in a worker thread."""
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash`` (computed in a worker thread)."""

    def verify() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


async def create_user(*, email: str, password: str | None = None, is_admin: bool = False) -> User:
    """Create a user.

    Args:
        email: The sign-in address (stored lower-case).
        password: At least 8 characters; None makes a random one (a token-only account,
            e.g. from ``vidgen createuser``).
        is_admin: Admins see and manage everything.

    Raises:
        BadUserInput: email or password invalid.
        Conflict: the email is taken.
    """
    address = normalize_email(email)
    if password is None:
        password = secrets.token_urlsafe(32)
    _check_password(password)
    password_hash = await hash_password(password)
    if await User.filter(email=address).exists():
        raise errors.Conflict("An account with that email already exists.", field="email")
    try:
        async with in_transaction():
            return await User.create(email=address, password_hash=password_hash, is_admin=is_admin)
    except IntegrityError as exc:  # lost a race with the same email
        raise errors.Conflict("An account with that email already exists.", field="email") from exc


async def issue_token(
    *, user: User, name: str = "default", ttl_days: int | None = None
) -> tuple[str, ApiToken]:
    """Make a new API token for ``user``.

    Returns:
        The token (shown once, never stored) and its row.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = _now() + dt.timedelta(days=ttl_days) if ttl_days else None
    row = await ApiToken.create(
        user=user,
        token_hash=hash_token(token),
        name=(name or "default")[:100],
        prefix=token[:10],
        expires_at=expires_at,
    )
    return token, row


async def register(
    *,
    email: str,
    password: str,
    signup_enabled: bool = True,
    ttl_days: int | None = None,
    throttle: Throttle | None = None,
    client: str | None = None,
) -> tuple[str, User]:
    """Sign up: create a (non-admin) user and a first token.

    Args:
        throttle, client: count the attempt against the client's address
            (:meth:`Throttle.registration`).

    Raises:
        Forbidden: registration is switched off (``VIDGEN_SIGNUP_ENABLED=false``).
        RateLimited: too many sign-ups from this address lately.
        BadUserInput, Conflict: as :func:`create_user`.
    """
    if not signup_enabled:
        raise errors.Forbidden("Registration is switched off on this server; ask an admin.")
    if throttle is not None:
        await throttle.registration(address=client)
    if password is None:
        raise errors.BadUserInput("A password is required.", field="password")
    user = await create_user(email=email, password=password, is_admin=False)
    token, _ = await issue_token(user=user, name="register", ttl_days=ttl_days)
    return token, user


async def login(
    *,
    email: str,
    password: str,
    ttl_days: int | None = None,
    throttle: Throttle | None = None,
    client: str | None = None,
) -> tuple[str, User]:
    """Check a password and issue a new token.

    Args:
        throttle, client: count a failure against the email and the client's address,
            refusing attempts past their limits (:meth:`Throttle.login_attempt`).

    Raises:
        RateLimited: too many failures lately, decided before any account is looked up
            (the same answer whether the email has an account or not).
        Unauthenticated: unknown email or wrong password (the same message for both).
    """
    attempt = await throttle.login_attempt(email=email, address=client) if throttle else None
    address = (email or "").strip().lower()
    # No account has a longer address, or one with an invisible character (register
    # refuses both; accounts made before that check are not looked up either): look
    # nothing up, but still verify, so the answer is that of any unknown email.
    known = len(address) <= 320 and not _has_invisible(address)
    user = await User.get_or_none(email=address) if known else None
    ok = await verify_password(user.password_hash if user else _DUMMY_HASH, password or "")
    if user is None or not ok:
        raise errors.Unauthenticated("Wrong email or password.")
    if attempt is not None:
        await attempt.succeeded()
    token, _ = await issue_token(user=user, name="login", ttl_days=ttl_days)
    return token, user


@functools.cache
def _authenticate_sql(dialect: str) -> tuple[str, tuple[str, ...]]:
    """:func:`authenticate`'s statement for ``dialect`` and the user columns it selects
    (after the token's id, revoked_at, expires_at and last_used_at), each named
    ``USER_PREFIX + column``."""
    columns = tuple(sorted(User._meta.db_fields))
    mark = "$1" if dialect == "postgres" else "?"
    selected = ", ".join(f'u."{column}" AS "{USER_PREFIX}{column}"' for column in columns)
    sql = (
        f't."id", t."revoked_at", t."expires_at", t."last_used_at", {selected}'
        f' FROM "{ApiToken._meta.db_table}" t JOIN "{User._meta.db_table}" u'
        f' ON u."id" = t."user_id" WHERE t."token_hash" = {mark}'
    )
    return "SELECT " + sql, columns


USER_PREFIX = "u_"


async def authenticate(token: str) -> User | None:
    """The user a token belongs to, or None when it is unknown, revoked or expired.

    One prebuilt SELECT joining the token and its user (this runs on every request); the
    user is built from the row as Tortoise builds a fetched one. On PostgreSQL, outside a
    transaction, the statement goes straight to the pool's connection (``Pool.fetchrow``, or
    the connection of the request's ``db.one_connection`` scope:
    one prepared statement, asyncpg's own errors, which the callers' outage handling knows),
    logged like the ORM's statements, without the ORM's per-statement wrappers. Nothing is
    cached: a revoked token is refused by the very next request, in every process.
    """
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    conn = ApiToken._meta.db
    sql, columns = _authenticate_sql(dialect.name())
    hashed = hash_token(token)
    pool = getattr(conn, "_pool", None) if type(conn) is AsyncpgDBClient else None
    if pool is not None:
        if conn.log.isEnabledFor(logging.DEBUG):
            conn.log.debug("%s: %s", sql, [hashed])
        row = await (await db.pooled(pool)).fetchrow(sql, hashed)
        if row is None:
            return None
        token_id, revoked_at, expires_at, last_used_at = row[0], row[1], row[2], row[3]
        build: Any = db.row_builder(User, USER_PREFIX)
    else:
        _, rows = await conn.execute_query(sql, [hashed])
        if not rows:
            return None
        row = rows[0]
        token_id, revoked_at, expires_at, last_used_at, *user_values = tuple(row)

        def build(_: Any) -> User:
            return User._init_from_db(**dict(zip(columns, user_values, strict=True)))

    if revoked_at is not None:
        return None
    now = _now()
    fields = ApiToken._meta.fields_map
    if expires_at is not None:
        expires_at = fields["expires_at"].to_python_value(expires_at)
        if expires_at <= now:
            return None
    if last_used_at is not None:
        last_used_at = fields["last_used_at"].to_python_value(last_used_at)
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        # A conditional UPDATE: concurrent requests within the minute write nothing more.
        await db.release_held()  # an ORM statement: never wait for the pool holding one
        query = ApiToken.filter(id=token_id)
        if last_used_at is None:
            query = query.filter(last_used_at__isnull=True)
        else:
            query = query.filter(last_used_at__lt=now - LAST_USED_RESOLUTION)
        await query.update(last_used_at=now)
    return build(row)  # type: ignore[no-any-return]


async def revoke_token(*, token: str) -> bool:
    """Revoke a token (sign out). Returns False when it was unknown or already revoked."""
    updated = await ApiToken.filter(token_hash=hash_token(token), revoked_at__isnull=True).update(
        revoked_at=_now()
    )
    return bool(updated)


async def rotate_webhook_secret(*, viewer: User) -> str:
    """Give the viewer a new webhook signing secret and return it; the old one signs
    nothing from now on, retries of earlier events included (each attempt is signed when
    it is sent)."""
    secret = new_secret()
    await User.filter(id=viewer.id).update(webhook_secret=secret)
    viewer.webhook_secret = secret
    return secret
