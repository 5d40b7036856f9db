"""Database set-up: the Tortoise config, start-up with migrations, and shutdown; and the
few places that reach under the ORM for speed, each checked against Tortoise's own way by a
test: the raw-row builder (:class:`RowBuilder`, tests/api/test_list_fast.py), the new-row
builder (:class:`NewRowBuilder`, tests/models/test_video_insert.py: both rely on Tortoise
1.1's instance layout, its ``__dict__`` and bookkeeping attributes), and statements sent
straight to asyncpg's pool (:func:`fetch`, :func:`one_connection`,
tests/models/test_db_pool.py)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg

from vidgen import pins

#: Tortoise, whose internals this module relies on (the instance layout the row builders
#: write, the transaction entry it repairs, the pooled client's ``_pool``), at the one
#: version they were checked against; pinned the same in ``pyproject.toml``.
PINNED = {"tortoise-orm": "1.1.9"}
pins.check(
    PINNED,
    module="vidgen.db",
    relies_on="Tortoise ORM's internals (its instance layout, transaction entry and pool)",
)

from tortoise.backends.asyncpg.client import AsyncpgDBClient  # noqa: E402 - after the check
from tortoise.backends.base.client import TransactionContextPooled  # noqa: E402
from tortoise.backends.base.config_generator import expand_db_url  # noqa: E402
from tortoise.backends.base.executor import EXECUTOR_CACHE  # noqa: E402
from tortoise.backends.sqlite.client import SqliteTransactionContext  # noqa: E402
from tortoise.connection import get_connections  # noqa: E402
from tortoise.context import TortoiseContext  # noqa: E402
from tortoise.exceptions import IntegrityError, OperationalError, TransactionManagementError  # noqa: E402
from tortoise.fields.data import CharEnumFieldInstance, DatetimeField  # noqa: E402
from tortoise.migrations.api.migrate import migrate as tortoise_migrate  # noqa: E402
from tortoise.models import Model  # noqa: E402
from tortoise.timezone import get_default_timezone, get_use_tz  # noqa: E402

from vidgen import dialect  # noqa: E402
from vidgen.settings import Settings  # noqa: E402

logger = logging.getLogger(__name__)

MODELS_MODULE = "vidgen.models"
MIGRATIONS_MODULE = "vidgen.migrations"

#: The largest id a row can have: every primary key a client can name is a 32-bit integer
#: column, and the database refuses a larger number as a parameter.
MAX_ROW_ID = 2**31 - 1


MAX_ROW_ID_DIGITS = len(str(MAX_ROW_ID))


def is_row_id(number: int) -> bool:
    """True when some row could have ``number`` as its id (1 to :data:`MAX_ROW_ID`)."""
    return 0 < number <= MAX_ROW_ID


def row_id_in(text: str) -> int:
    """The row id written as ``text`` in an id or cursor, or 0 (which no row has) for a
    number no row has, or one not written the one way ids are written (``str(id)``: no
    sign, spaces, leading zeros, underscores or non-ASCII digits, all of which ``int()``
    accepts), so that one row never answers to several spellings.

    Raises:
        ValueError: ``text`` is not a number at all.
    """
    if len(text) > MAX_ROW_ID_DIGITS + 1:
        # Never how an id is written; int() would refuse past 4,300 digits (ValueError).
        digits = text.strip().removeprefix("-").removeprefix("+").replace("_", "")
        if digits.isdecimal():
            return 0
    number = int(text)
    return number if is_row_id(number) and str(number) == text else 0


async def _release_as_is(connection: Any) -> None:
    """asyncpg's pool ``reset`` hook: nothing to undo when a connection goes back.

    Tortoise takes a pool connection for every statement outside a transaction, and
    asyncpg's default reset sends ``CLOSE ALL; UNLISTEN *; RESET ALL;
    SELECT pg_advisory_unlock_all()`` on every release: one more round trip per statement
    (six per list page). vidgen leaves no session state behind: no LISTEN (events go
    through Redis), no cursors, no session ``SET`` (server settings are fixed at connect),
    advisory locks only transaction-scoped (``pg_advisory_xact_lock``). asyncpg still rolls
    back a transaction left open before calling this hook.
    """


# --- entering a transaction: undo it all when BEGIN fails ------------------------------------


async def _enter_pooled(self: TransactionContextPooled) -> Any:
    """``TransactionContextPooled.__aenter__`` (PostgreSQL) that cleans up when BEGIN fails.

    Tortoise's own binds the task's connection ContextVar to the new transaction and then
    awaits BEGIN; when BEGIN raises (a timed-out or cut connection) or is canceled,
    ``__aexit__`` never runs: the task keeps a dead transaction as its connection for every
    later statement (a worker's heartbeat then fails forever, and its jobs are rescued from
    under it), and the pool connection is never given back. Here a failed BEGIN unbinds the
    task and drops the connection: its state is unknown (BEGIN may have run, or stopped
    halfway through the protocol), so it is closed, never reused.
    """
    await self.ensure_connection()
    pool = self.client._parent._pool
    connection = await pool.acquire()
    self.client._connection = connection
    self.token = get_connections().set(self.connection_name, self.client)
    try:
        await self.client.begin()
    except BaseException:
        get_connections().reset(self.token)
        # Already closed and detached (the connection was lost) makes these raise: the
        # error to report is BEGIN's (or the cancellation), never theirs.
        with contextlib.suppress(Exception):
            connection.terminate()
        with contextlib.suppress(Exception):
            await pool.release(connection)  # returns at once once terminated
        raise
    return self.client


async def _enter_sqlite(self: SqliteTransactionContext) -> Any:
    """``SqliteTransactionContext.__aenter__`` that cleans up when BEGIN fails.

    Tortoise's own takes the connection's transaction lock, binds the task and awaits BEGIN;
    when BEGIN raises or is canceled, the lock is never released and every later transaction
    of the process waits forever (the embedded default's whole API and worker). Here a
    failed BEGIN unbinds the task, rolls back whatever the statement left open (a canceled
    BEGIN still runs on aiosqlite's thread; the rollback is queued behind it), and releases
    the lock.
    """
    await self._trxlock.acquire()
    try:
        await self.ensure_connection()
        self.token = get_connections().set(self.connection_name, self.connection)
        try:
            await self.connection.begin()
        except BaseException:
            get_connections().reset(self.token)
            raise
    except BaseException:
        raw = getattr(self.connection, "_connection", None)
        try:
            if raw is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(raw.rollback())
        finally:
            # Also when canceled again meanwhile: the rollback is queued already (shield
            # starts it at once), so whoever takes the lock next runs after it.
            self._trxlock.release()
        raise
    return self.connection


def _guard_transaction_entry() -> None:
    # Tortoise 1.1 (pinned in pyproject); tests/models/test_transaction_entry.py checks both.
    TransactionContextPooled.__aenter__ = _enter_pooled  # type: ignore[method-assign]
    SqliteTransactionContext.__aenter__ = _enter_sqlite  # type: ignore[method-assign]


_guard_transaction_entry()


def _connection(
    url: str, settings: Settings | None, *, timeouts: bool = False
) -> dict[str, Any] | str:
    if url.startswith("sqlite"):
        # Tortoise's regexp() and match() on every SQLite connection: the video search
        # ignores case beyond ASCII with match() (vidgen.services.videos.search).
        if "install_regexp_functions" not in url:
            url += ("&" if "?" in url else "?") + "install_regexp_functions=True"
        return url
    scheme, rest = url.split("://", 1)
    if scheme in {"postgres", "postgresql", "asyncpg"}:
        # Tortoise's default pool max is 5: far too few for an API with subscriptions.
        maxsize = settings.db_pool_max if settings else 20
        sep = "&" if "?" in rest else "?"
        if "maxsize=" not in rest:
            rest = f"{rest}{sep}minsize=1&maxsize={maxsize}"
        config = expand_db_url(f"asyncpg://{rest}")
        config["credentials"]["reset"] = _release_as_is
        if timeouts and settings is not None and settings.db_command_timeout_seconds > 0:
            _add_timeouts(config["credentials"], settings.db_command_timeout_seconds)
        return config
    return url


def _add_timeouts(credentials: dict[str, Any], seconds: float) -> None:
    """Never wait forever on a PostgreSQL connection that stopped answering.

    A connection can die without an error: a NAT or firewall that forgets it, a half-open
    TCP peer, a server that froze. Every statement sent on it then waits forever, and the
    job engine's heartbeat (on another connection) keeps that job's lease alive, so nobody
    rescues it. Two limits, both ``seconds``:

    - asyncpg's ``command_timeout``: a statement unanswered that long raises
      ``TimeoutError`` (an ``OSError``: transient to :mod:`vidgen.jobs.transient`, so the
      engine retries it on a fresh connection, as after a dropped one). asyncpg asks the
      server to cancel the statement and drops the connection.
    - the server's ``idle_in_transaction_session_timeout``: a transaction whose client went
      quiet (its connection is gone but the server cannot tell) is rolled back and its
      session ended, so its row locks do not block the retry. vidgen's transactions wait
      on nothing but the database, except ``generateVideo`` with an input image, whose
      transaction also covers writing that file (a disk stalled that long fails the
      request, and the file is removed).

    Migrations run without them (:func:`migrate_database`): a long one is not a dead one.
    """
    credentials["command_timeout"] = seconds
    server = dict(credentials.get("server_settings") or {})
    server.setdefault("idle_in_transaction_session_timeout", str(max(1, round(seconds * 1000))))
    credentials["server_settings"] = server


def tortoise_config(
    url: str, settings: Settings | None = None, *, timeouts: bool = False
) -> dict[str, Any]:
    """The Tortoise config for one database URL (``sqlite://`` or ``postgres://``); with
    ``timeouts``, PostgreSQL connections give up on a silent peer (:func:`_add_timeouts`)."""
    return {
        "connections": {"default": _connection(url, settings, timeouts=timeouts)},
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite://") and ":memory:" not in url:
        from pathlib import Path

        Path(url.removeprefix("sqlite://").split("?")[0]).parent.mkdir(parents=True, exist_ok=True)


_contexts: list[TortoiseContext] = []


async def migrate_database(url: str, settings: Settings | None = None) -> None:
    """Apply the migrations in a private context that is closed afterwards."""
    _ensure_sqlite_folder(url)
    ctx = TortoiseContext()
    with ctx:
        try:
            await tortoise_migrate(config=tortoise_config(url, settings))
        finally:
            await _discard(ctx)


async def init(
    settings: Settings, *, run_migrations: bool = False, global_fallback: bool = True
) -> TortoiseContext:
    """Open the database for this process (and migrate first when asked).

    The context is also installed as the process-wide fallback, because under uvicorn the
    lifespan task and the request tasks do not share ContextVars (Tortoise's global
    fallback: see ``docs/library-notes.md``).
    """
    url = settings.resolved_database_url
    if run_migrations:
        await migrate_database(url, settings)
    _ensure_sqlite_folder(url)
    # Tortoise caches INSERT/UPDATE SQL per (connection name, table), not per dialect: a
    # process that reopens "default" on another backend (the test suite) must drop it.
    EXECUTOR_CACHE.clear()
    ctx = TortoiseContext()
    ctx.__enter__()
    await ctx.init(
        config=tortoise_config(url, settings, timeouts=True),
        _enable_global_fallback=global_fallback,
    )
    _contexts.append(ctx)
    if global_fallback:  # the process's database (a second one would have raised above)
        dialect.remember(ctx.connections.get("default").capabilities.dialect)
    return ctx


async def _discard(ctx: TortoiseContext) -> None:
    # TortoiseContext.__aexit__ without the ContextVar reset, which may run in another task.
    await ctx.close_connections()
    ctx._apps = None
    ctx._inited = False


async def close() -> None:
    """Close every context this process opened (connections, pools, global fallback)."""
    dialect.remember(None)
    while _contexts:
        ctx = _contexts.pop()
        await _discard(ctx)
        try:
            ctx.__exit__(None, None, None)
        except ValueError:  # the ContextVar token belongs to another task's context
            pass


# --- building model instances from raw rows ----------------------------------------------

_DATETIME = dt.datetime


class RowBuilder:
    """Turns raw rows (asyncpg records, sqlite3 rows, dicts) that carry every column of
    ``model`` into instances equal to ``model._init_from_db(**row)`` — the same attributes,
    values, types, time zones and order — at about a third of the cost.

    ``_init_from_db`` sets four bookkeeping attributes through ``Model.__setattr__`` and then
    every column through ``object.__setattr__``, calling ``to_python_value`` for the fields
    the driver does not convert (datetimes, enums, JSON). Here the attributes go into one
    dict that becomes the instance's ``__dict__``, and two conversions are inlined: an
    *aware* ``datetime`` under ``use_tz`` becomes ``value.astimezone(default zone)`` (what
    ``DatetimeField.to_python_value`` returns for it), and a ``CharEnumField`` value its enum
    member (``enum_type(value)``). Every other value of those fields, and every other field,
    goes through the field's own ``to_python_value``. A row without some column is built by
    ``_init_from_db`` itself (a partial instance).

    With a ``prefix``, the model's columns are read from ``row[prefix + column]`` (a joined
    table's columns, named so), and a row without them is an error.
    """

    __slots__ = ("model", "prefix", "_native", "_default", "_complex", "_custom_pk", "_key")

    def __init__(self, model: type[Model], prefix: str = "") -> None:
        meta = model._meta
        self.model = model
        self.prefix = prefix
        self._key = _builder_key(model)
        # Tortoise's ``_custom_generated_pk``: True when the database does NOT generate the key.
        self._custom_pk = meta.db_pk_column not in meta.generated_db_fields
        self._native = tuple((prefix + key, attr) for key, attr, _ in meta.db_native_fields)
        self._default = tuple(
            (prefix + key, attr, f.field_type) for key, attr, f in meta.db_default_fields
        )
        self._complex = tuple(
            (prefix + key, attr, _converter(field)) for key, attr, field in meta.db_complex_fields
        )

    def __call__(self, row: Any) -> Any:
        values: dict[str, Any] = {
            "_partial": False,
            "_saved_in_db": True,
            "_custom_generated_pk": self._custom_pk,
            "_await_when_save": {},
        }
        try:
            for key, attr in self._native:
                values[attr] = row[key]
            for key, attr, field_type in self._default:
                value = row[key]
                values[attr] = None if value is None else field_type(value)
            for key, attr, convert in self._complex:
                values[attr] = convert(row[key])
        except (KeyError, IndexError):  # a column is missing: Tortoise's partial instance
            if self.prefix:
                raise
            return self.model._init_from_db(**row)
        instance = _new(self.model)
        _set(instance, "__dict__", values)
        return instance


_new = object.__new__
_set = object.__setattr__


def _converter(field: Any) -> Callable[[Any], Any]:
    slow = field.to_python_value
    if type(field) is DatetimeField and get_use_tz():
        zone = get_default_timezone()

        def to_datetime(value: Any) -> Any:
            if type(value) is _DATETIME and value.utcoffset() is not None:
                return value.astimezone(zone)
            return slow(value)

        return to_datetime
    if type(field) is CharEnumFieldInstance:
        members = field.enum_type._value2member_map_

        def to_member(value: Any) -> Any:
            if type(value) is str:
                member = members.get(value)
                if member is not None:
                    return member
            return slow(value)

        return to_member
    return slow


def _builder_key(model: type[Model]) -> tuple[Any, ...]:
    # What the builder depends on: the field lists Tortoise computes per backend at init
    # (which fields the driver converts; refilled in place, so copied), and the time zone.
    meta = model._meta
    return (
        list(meta.db_native_fields),
        list(meta.db_default_fields),
        list(meta.db_complex_fields),
        get_use_tz(),
        get_default_timezone(),
    )


_builders: dict[tuple[type[Model], str], RowBuilder] = {}


def row_builder(model: type[Model], prefix: str = "") -> RowBuilder:
    """The :class:`RowBuilder` of ``model`` for the database opened now (look it up once per
    batch of rows, not per row)."""
    builder = _builders.get((model, prefix))
    if builder is None or not _current(builder._key, model):
        builder = _builders[model, prefix] = RowBuilder(model, prefix)
    return builder


def _current(key: tuple[Any, ...], model: type[Model]) -> bool:
    meta = model._meta
    native, default, complex_, use_tz, zone = key
    return (
        meta.db_native_fields == native
        and meta.db_complex_fields == complex_
        and meta.db_default_fields == default
        and get_use_tz() is use_tz
        and get_default_timezone() is zone
    )


# --- new rows: an unsaved instance and the values its INSERT writes ------------------------

_NO_DEFAULT: Any = object()


class NewRowBuilder:
    """Builds new (unsaved) instances of ``model`` equal to ``model(**kwargs)``, and the
    columns and values an INSERT of one writes, equal to Tortoise's own conversion of every
    field (``to_db_value``, validators included), at a fraction of the cost.

    ``Model.__init__`` sets each given field through ``Model.__setattr__`` (after
    ``to_python_value``) and then, for every other field, asks ``inspect`` whether its
    default is a coroutine function before setting it. Here the instance starts as a copy
    of ``model()``'s attributes (the defaults, made once), with fresh values for defaults
    that are callable or mutable, and the given fields are converted as ``__init__`` converts
    them. Arguments ``__init__`` treats otherwise (a relation object, a generated primary
    key, an unknown name) and models with coroutine defaults are built by ``model(**kwargs)``
    itself.

    :meth:`values` converts each column's value with its field's ``to_db_value``, except a
    value that is the very object of the field's constant default (a field the instance
    still holds its default in): its database value was converted and validated once, here.
    Fields with ``auto_now`` or ``auto_now_add`` are converted every time (that stamps the
    instance).
    """

    __slots__ = (
        "model", "_fields_map", "_use_tz", "_zone", "_template", "_fresh", "_given", "_columns",
    )  # fmt: skip

    def __init__(self, model: type[Model]) -> None:
        meta = model._meta
        self.model = model
        self._fields_map = meta.fields_map
        self._use_tz, self._zone = get_use_tz(), get_default_timezone()
        template = model()
        attributes = dict(template.__dict__)
        if attributes.get("_await_when_save"):  # coroutine defaults: always model(**kwargs)
            self._template = None
        else:
            self._template = attributes
        fresh = []
        for name in meta.fields.difference(meta.fetch_fields):
            default = meta.fields_map[name].default
            if callable(default):
                fresh.append((name, default))
            elif default is not None and not isinstance(default, int | float | str | bool | bytes):
                fresh.append((name, functools.partial(copy.deepcopy, default)))
        self._fresh = tuple(fresh)
        # Fields __init__ converts with to_python_value alone (not relations, not a key the
        # database generates).
        self._given = {
            name: meta.fields_map[name]
            for name in meta.fields_db_projection
            if not (meta.fields_map[name].pk and meta.fields_map[name].generated)
            and name not in meta.fk_fields
            and name not in meta.o2o_fields
        }
        columns = []
        for name, column in meta.fields_db_projection.items():
            field = meta.fields_map[name]
            if field.generated:
                continue
            default, converted = _NO_DEFAULT, None
            plain = field.default is not None and not callable(field.default)
            stamped = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
            if (plain or field.default is None) and not stamped:
                try:
                    converted = field.to_db_value(field.default, template)
                    default = field.default
                except Exception:  # noqa: BLE001 - refused (a required field): always converted
                    pass
            columns.append((name, column, field.to_db_value, default, converted))
        self._columns = tuple(columns)

    def current(self) -> bool:
        """Whether the opened database's set-up is the one this builder was made under."""
        return (
            self.model._meta.fields_map is self._fields_map
            and get_use_tz() is self._use_tz
            and get_default_timezone() is self._zone
        )

    def __call__(self, **kwargs: Any) -> Any:
        """A new instance, equal to ``model(**kwargs)``.

        Raises:
            ValueError: a non-nullable field was given None (as ``model(**kwargs)`` raises).
        """
        template, given = self._template, self._given
        if template is None or not given.keys() >= kwargs.keys():
            return self.model(**kwargs)
        values = template.copy()
        values["_await_when_save"] = {}
        for name, make in self._fresh:
            values[name] = make()
        for name, value in kwargs.items():
            field = given[name]
            if value is None and not field.null:
                raise ValueError(f"{name} is non nullable field, but null was passed")
            values[name] = field.to_python_value(value)
        instance = _new(self.model)
        _set(instance, "__dict__", values)
        return instance

    def values(self, instance: Any) -> dict[str, Any]:
        """The columns and values inserting ``instance`` writes (its fields converted with
        ``to_db_value``, which may raise ``ValidationError``; auto dates stamped on it)."""
        attributes = instance.__dict__
        values: dict[str, Any] = {}
        for name, column, to_db, default, converted in self._columns:
            value = attributes[name]
            values[column] = converted if value is default else to_db(value, instance)
        return values


_new_builders: dict[type[Model], NewRowBuilder] = {}


def new_row_builder(model: type[Model]) -> NewRowBuilder:
    """The :class:`NewRowBuilder` of ``model`` for the database opened now."""
    builder = _new_builders.get(model)
    if builder is None or not builder.current():
        builder = _new_builders[model] = NewRowBuilder(model)
    return builder


# --- one statement, straight to the pool ---------------------------------------------------


class _Held:
    """The pool connection a :func:`one_connection` scope holds (taken on first use)."""

    __slots__ = ("pool", "connection", "open")

    def __init__(self) -> None:
        self.pool: Any = None
        self.connection: Any = None
        self.open = True


_held: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("vidgen_db_held", default=None)


@contextlib.asynccontextmanager
async def one_connection() -> AsyncIterator[None]:
    """A scope whose statements sent straight to the pool (:func:`fetch`,
    ``users.authenticate``: see :func:`pooled`) share ONE pool connection, taken by the
    first of them and given back when the scope ends: one acquire and release for a
    request's few statements instead of one per statement (about 55 us of CPU each).

    For a short request whose statements run one after the other. Code inside that is about
    to wait for another connection of the same pool (an ORM query, a transaction) calls
    :func:`release_held` first: a scope never waits for the pool while holding one of its
    connections, so requests holding connections cannot starve each other of the rest.
    """
    held = _Held()
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        await _release(held)


async def release_held() -> None:
    """Give back the connection of the current :func:`one_connection` scope, if any; the
    scope's later statements take pool connections one by one, as outside it."""
    held = _held.get()
    if held is not None:
        await _release(held)


async def _release(held: _Held) -> None:
    held.open = False
    connection, held.connection = held.connection, None
    if connection is not None:
        await held.pool.release(connection)


async def pooled(pool: Any) -> Any:
    """Where a statement for ``pool`` (an asyncpg pool) runs: the connection of the current
    :func:`one_connection` scope (taken now if it has none yet), or the pool itself."""
    held = _held.get()
    if held is None or not held.open:
        return pool
    if held.connection is None:
        held.connection = await pool.acquire()
        held.pool = pool
    return held.connection if held.pool is pool else pool


async def fetch(conn: Any, sql: str, params: Sequence[Any]) -> Sequence[Any]:
    """The rows of one statement on ``conn`` (a Tortoise client), each readable by column
    name (``row["id"]``), as ``conn.execute_query_dict`` returns them.

    On PostgreSQL outside a transaction the statement goes straight to the pool
    (``Pool.fetch``: one prepared statement from asyncpg's cache, without the ORM's
    per-statement wrappers; the scope's connection inside :func:`one_connection`), logged
    like the ORM's statements and with its errors translated
    as Tortoise translates them (``IntegrityError``, ``OperationalError``,
    ``TransactionManagementError``). Anywhere else (SQLite, a transaction's connection)
    through ``execute_query_dict``.
    """
    pool = conn._pool if type(conn) is AsyncpgDBClient else None
    if pool is None:
        return await conn.execute_query_dict(sql, list(params))  # type: ignore[no-any-return]
    if conn.log.isEnabledFor(logging.DEBUG):
        conn.log.debug("%s: %s", sql, params)
    try:
        return await (await pooled(pool)).fetch(sql, *params)  # type: ignore[no-any-return]
    except (asyncpg.SyntaxOrAccessError, asyncpg.exceptions.DataError) as exc:
        raise OperationalError(exc) from exc
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(exc) from exc
    except asyncpg.InvalidTransactionStateError as exc:
        raise TransactionManagementError(exc) from exc
