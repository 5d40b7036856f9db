"""Global ids: the Relay ``id`` of every node type (``base64("Type:123")``), read back."""

from __future__ import annotations

from strawberry import relay

from vidgen import db, errors


def parse_global_id(value: str) -> relay.GlobalID:
    """``value`` as a global id, only in the one spelling this API writes.

    Strawberry's decoder is lenient (base64 with stray characters, extra or wrong padding,
    a trailing newline: ``VmlkZW86MR==`` and ``Vm lk ZW86MQ==`` both read as ``Video:1``;
    docs/library-notes.md), so one row would answer to many ids, which breaks caches keyed
    by id. The id is decoded,
    then written again: anything but the same text is not a valid id.

    Raises:
        ValueError: not a global id in that spelling.
    """
    gid = relay.GlobalID.from_id(value)
    if relay.to_base64(gid.type_name, gid.node_id) != value:
        raise ValueError("not a global id as this API writes them")
    return gid


def decode_id(value: str | relay.GlobalID, type_name: str, *, field: str = "id") -> int | None:
    """The database id inside a global id of type ``type_name``.

    Returns None for a well-formed id of another type (it names nothing of this kind), and
    0 for one whose number is outside the id columns' range or not written as ids are.

    Raises:
        BadUserInput: with ``field`` when the value is not a global id at all.
    """
    try:
        gid = value if isinstance(value, relay.GlobalID) else parse_global_id(value)
        # 0 for a number no row can have (the database would refuse it as a parameter)
        # or one spelled unlike our ids ("007", " 7"): answered exactly like a missing row.
        node_id = db.row_id_in(gid.node_id)
    except (ValueError, TypeError) as exc:
        raise errors.BadUserInput(f"{field} is not a valid id.", field=field) from exc
    if gid.type_name != type_name:
        return None
    return node_id


def require_id(value: str | None, type_name: str, *, field: str) -> int | None:
    """Like :func:`decode_id` for input fields: another type's id is BAD_USER_INPUT."""
    if value is None:
        return None
    node_id = decode_id(value, type_name, field=field)
    if node_id is None:
        raise errors.BadUserInput(f"No {type_name.lower()} with that id ({field}).", field=field)
    return node_id
