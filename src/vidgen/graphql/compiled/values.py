"""From a column's raw value to the response's JSON value, by functions chosen once.

Two steps, each picked per column when a plan is compiled:

- :func:`converter`: what Tortoise's ``_init_from_db`` does to that column's raw value on
  the open database (nothing for the columns the driver already converts, the field type's
  constructor for the "default" ones, ``to_python_value`` for datetimes, enums and JSON);
- an encoder: what graphql-core's ``complete_leaf_value`` (the scalar's or enum's
  ``serialize``) makes of the converted value. Anything the plain path would answer with
  an error (None for a non-null field, an Int out of 32 bits, a float that is not finite,
  an enum value with no member) raises :class:`Fallback`, and the request runs through
  Strawberry instead, which then reports exactly that error.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from tortoise import timezone
from tortoise.fields import DatetimeField
from tortoise.fields.data import CharEnumFieldInstance
from tortoise.models import Model

MAX_INT = 2**31 - 1
MIN_INT = -(2**31)


class Fallback(Exception):  # noqa: N818 - a signal, not an error: the plain path answers
    """The compiled plan cannot give the plain path's answer for this request."""


Convert = Callable[[Any], Any]


def converter(model: type[Model], column: str) -> Convert | None:
    """What ``model._init_from_db`` does to ``column``'s raw value on the open database
    (None: nothing). Tortoise sorts the fields per backend when it opens the database."""
    meta = model._meta
    for key, _attr, _field in meta.db_native_fields:
        if key == column:
            return None
    for key, _attr, field in meta.db_default_fields:
        if key == column:
            field_type = field.field_type
            return lambda value: None if value is None else field_type(value)
    for key, _attr, field in meta.db_complex_fields:
        if key == column:
            return _complex(field)
    raise KeyError(f"{model.__name__} has no column {column!r}")


def _complex(field: Any) -> Convert:
    slow = field.to_python_value
    if type(field) is DatetimeField and timezone.get_use_tz():
        zone = timezone.get_default_timezone()

        def to_datetime(value: Any) -> Any:
            if type(value) is dt.datetime and value.utcoffset() is not None:
                return value.astimezone(zone)  # what to_python_value returns for it
            return slow(value)

        return to_datetime
    if type(field) is CharEnumFieldInstance:
        return lambda value: value  # the stored text: the encoders read it as such
    return slow


# --- leaf encoders (graphql-core's serialize, or Fallback) ----------------------------------


def string(non_null: bool) -> Convert:
    def encode(value: Any) -> Any:
        if type(value) is str:
            return value
        if value is None and not non_null:
            return None
        raise Fallback

    return encode


def integer(non_null: bool) -> Convert:
    def encode(value: Any) -> Any:
        if type(value) is int and MIN_INT <= value <= MAX_INT:
            return value
        if value is None and not non_null:
            return None
        raise Fallback

    return encode


def floating(non_null: bool) -> Convert:
    def encode(value: Any) -> Any:
        if type(value) is float and math.isfinite(value):
            return value
        if type(value) is int and -(2**53) < value < 2**53:
            return float(value)
        if value is None and not non_null:
            return None
        raise Fallback

    return encode


def boolean(non_null: bool) -> Convert:
    def encode(value: Any) -> Any:
        if type(value) is bool:
            return value
        if value is None and not non_null:
            return None
        raise Fallback

    return encode


def datetime(non_null: bool) -> Convert:
    def encode(value: Any) -> Any:
        if type(value) is dt.datetime:
            return value.isoformat()
        if value is None and not non_null:
            return None
        raise Fallback

    return encode


def enum_names(members: dict[str, str], non_null: bool) -> Convert:
    """A stored value to its GraphQL enum name (``members``: value -> name)."""

    def encode(value: Any) -> Any:
        if value is None and not non_null:
            return None
        name = members.get(getattr(value, "value", value))
        if name is None:
            raise Fallback
        return name

    return encode


def string_list(value: Any) -> list[str]:
    """``[String!]!`` from a JSON column's value."""
    if type(value) is not list or any(type(item) is not str for item in value):
        raise Fallback
    return list(value)


def global_id(type_name: str) -> Convert:
    """Relay's id (``base64("Type:<id>")``), as Strawberry writes it."""
    prefix = f"{type_name}:"

    def encode(value: Any) -> Any:
        if type(value) is not int:
            raise Fallback
        return base64.b64encode(f"{prefix}{value}".encode()).decode()

    return encode


def cursor(created_at: Any, row_id: Any) -> str:
    """``vidgen.graphql.pagination.encode_cursor`` of a row with these values."""
    if type(created_at) is not dt.datetime or type(row_id) is not int:
        raise Fallback
    raw = f"c1:{created_at.isoformat()}|{row_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()
