"""Object types compiled to Python expressions, then to one function per plan.

A selection set on an object type becomes a dict display, ``{"key": <expression>, ...}``,
whose expressions read the source's values directly: ``row[3]`` for a column of a
statement's row (converted values, by index), ``viewer.email`` for a model instance in hand
(:class:`Source`). Every check the plain path makes becomes part of the expression, with
``_fb()`` (raise :class:`~.values.Fallback`) where graphql-core would have reported an
error. :class:`Code` gathers the names these expressions use; :meth:`Code.function` turns
the whole response into one Python function, so a page of fifty videos costs one call, not
a call per field.

How each field is compiled, from its GraphQL type and how vidgen resolves it:

- a field without a resolver (Strawberry's default ``getattr``) reads the model column of
  the same name and encodes it by its scalar type (:func:`leaf`);
- Relay's ``id`` encodes the ``id`` column; ``__typename`` is a constant;
- the fields vidgen resolves in code are compiled by hand below, each equal to its
  resolver (the differential test compares them over generated documents): a video's
  ``status``, ``statusMessage``, ``kind``, ``outputFormat``, the signed URLs, ``eventCursor``,
  ``webhookSecret``, the relations (to-one: joined into the row's statement; to-many:
  one batched statement per relation, see :class:`Batch`);
- any other field (one with arguments, ``limits``, ``usage``, ``webhookDeliveries``, the
  nested ``videos`` connections, a story's ``project``, ``film`` and ``clips``) makes
  the document
  :class:`~.selection.Unsupported`.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    is_non_null_type,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter
from tortoise.models import Model

from vidgen import dialect, models
from vidgen.graphql.compiled import values
from vidgen.graphql.compiled.selection import Unsupported, collect, sub_selections
from vidgen.graphql.types.enums import OutputFormatEnum, VideoKindEnum, VideoStatusEnum
from vidgen.media.signing import signed_url

MODELS: dict[str, type[Model]] = {
    "Video": models.Video,
    "User": models.User,
    "Project": models.Project,
    "Story": models.Story,
    "Theme": models.Theme,
    "Tag": models.Tag,
    "StatusChange": models.VideoStatusEvent,
}

# Stored value -> GraphQL name. The models' enums are StrEnums: a member and its text are
# the same key.
STATUS_NAMES = {member.value: member.name for member in VideoStatusEnum}
FORMAT_NAMES = {member.value: member.name for member in OutputFormatEnum}
KIND_NAMES = {member.value: member.name for member in VideoKindEnum}


def _fb() -> Any:
    raise values.Fallback


def _float(value: Any, non_null: bool) -> Any:
    if type(value) is int and -(2**53) < value < 2**53:
        return float(value)
    if value is None and not non_null:
        return None
    raise values.Fallback


def _null(value: Any, non_null: bool) -> Any:
    """The slow branch of a leaf: None where the field is nullable, else Fallback."""
    if value is None and not non_null:
        return None
    raise values.Fallback


def _sign(settings: Any, key: str) -> str:
    return signed_url(
        settings.resolved_public_url,
        key,
        ttl=settings.signed_url_ttl_seconds,
        secret=settings.resolved_secret_key,
    )


class Code:
    """The names the generated expressions use, and the function made of them."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {
            "_fb": _fb,
            "_float": _float,
            "_null": _null,
            "_sign": _sign,
            "_dt": dt.datetime,
            "_fin": math.isfinite,
            "_b64": base64.b64encode,
            "_cursor": values.cursor,
            "_strings": values.string_list,
        }
        self._count = 0
        # PostgreSQL: to-many relations as ARRAY subqueries of the page's own statement (one
        # round trip); SQLite: one statement per relation batch (see Batch).
        self.inline = dialect.is_postgres()

    def name(self, value: Any, hint: str = "c") -> str:
        self._count += 1
        name = f"_{hint}{self._count}"
        self.env[name] = value
        return name

    def variable(self, hint: str) -> str:
        self._count += 1
        return f"{hint}{self._count}"

    def function(self, parameters: str, body: str) -> Callable[..., Any]:
        source = f"def _plan({parameters}):\n    batches = request.batches\n    return {body}\n"
        namespace = dict(self.env)
        exec(compile(source, "<vidgen compiled plan>", "exec"), namespace)  # noqa: S102 - our own text
        function: Callable[..., Any] = namespace["_plan"]
        function.source = source  # type: ignore[attr-defined] - for debugging and tests
        return function


class Columns:
    """The SELECT list of one statement: expressions, and how each value is converted."""

    def __init__(self) -> None:
        self.exprs: list[str] = []
        self._index: dict[tuple[str, str], int] = {}
        self._convert: list[values.Convert | None] = []

    def add(self, alias: str, model: type[Model], column: str) -> int:
        key = (alias, column)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.exprs)
            self.exprs.append(f'{alias}."{column}"')
            self._convert.append(values.converter(model, column))
        return index

    def add_raw(self, expr: str) -> int:
        """A column whose value needs no conversion (a key, written by the statement)."""
        self.exprs.append(expr)
        self._convert.append(None)
        return len(self.exprs) - 1

    def set(self, index: int, expr: str, convert: values.Convert | None) -> None:
        self.exprs[index] = expr
        self._convert[index] = convert

    def reader(self) -> Callable[[list[Any]], list[list[Any]]]:
        """Raw rows to lists of converted values."""
        converting = [(i, c) for i, c in enumerate(self._convert) if c is not None]

        def read(rows: list[Any]) -> list[list[Any]]:
            out = []
            for row in rows:
                found = list(row)
                for index, convert in converting:
                    found[index] = convert(found[index])
                out.append(found)
            return out

        return read


@dataclass
class Join:
    """A to-one relation read in its parent's statement (LEFT JOIN on the key)."""

    alias: str
    table: str
    parent_alias: str
    parent_column: str


@dataclass
class Batch:
    """A to-many relation of a page's videos: on PostgreSQL a column of the page's own
    statement (``column``: an ARRAY of ROWs, or the latest event's id), elsewhere one
    statement for all the page's videos (``columns`` then starts with the video id)."""

    kind: str  # "tags", "history" or "latest"
    columns: Columns  # the relation's selected columns
    slot: int  # where its rows go in the request's batches (a statement of its own)
    video_index: int  # where the parent row holds the video id
    column: int = -1  # where the parent row holds the relation (in the page's statement)
    read: Callable[[list[Any]], list[list[Any]]] | None = None


@dataclass
class Source:
    """Where a compiled object's values come from: the rows of a statement (``var`` names
    the row in the generated code) or a model instance (``columns`` None)."""

    model: type[Model]
    code: Code
    var: str
    alias: str = ""
    columns: Columns | None = None
    joins: list[Join] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    counter: list[int] = field(default_factory=lambda: [0])

    def column(self, name: str) -> str:
        if self.columns is None:
            return f"{self.var}.{_attribute(self.model, name)}"
        return f"{self.var}[{self.columns.add(self.alias, self.model, name)}]"

    def join(self, model: type[Model], parent_column: str) -> Source:
        if self.columns is None:
            raise Unsupported("a relation of an object in hand")
        self.counter[0] += 1
        alias = f"j{self.counter[0]}"
        self.joins.append(Join(alias, model._meta.db_table, self.alias, parent_column))
        return Source(
            model, self.code, self.var, alias, self.columns, self.joins, self.batches, self.counter
        )

    def batch(self, kind: str, model: type[Model]) -> tuple[Batch, Source]:
        if self.columns is None:
            raise Unsupported("a relation of an object in hand")
        video_index = self.columns.add(self.alias, self.model, "id")
        columns = Columns()
        column = -1
        if self.code.inline:
            column = self.columns.add_raw("")  # written when the relation is compiled
        else:
            columns.add_raw("k")
        found = Batch(kind, columns, len(self.batches), video_index, column)
        self.batches.append(found)
        item = Source(model, self.code, self.code.variable("b"), "r", columns, [], self.batches)
        item.counter = self.counter
        return found, item


def _attribute(model: type[Model], column: str) -> str:
    for attr, db_column in model._meta.fields_db_projection.items():
        if db_column == column:
            return attr
    raise KeyError(column)


@dataclass
class Compiler:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    code: Code = field(default_factory=Code)

    def object(self, type_name: str, nodes: list[FieldNode], source: Source) -> str:
        """The dict display of ``nodes``' selections on ``type_name`` from ``source``."""
        object_type = self.schema.get_type(type_name)
        assert isinstance(object_type, GraphQLObjectType)
        fields = collect(self.schema, object_type, sub_selections(nodes), self.fragments)
        special = _SPECIAL.get(type_name, {})
        items = []
        for key, field_nodes in fields.items():
            name = field_nodes[0].name.value
            if name == "__typename":
                items.append(f"{key!r}: {type_name!r}")
                continue
            gfield = object_type.fields.get(name)
            if gfield is None or gfield.args or any(n.arguments for n in field_nodes):
                raise Unsupported(f"{type_name}.{name}")
            make = special.get(name)
            if make is not None:
                expr = make(self, field_nodes, gfield, source)
            elif name == "id" and type_name in MODELS:
                expr = self.global_id(type_name, source.column("id"))
            else:
                expr = self.basic(type_name, name, gfield, source)
            items.append(f"{key!r}: {expr}")
        return "{" + ", ".join(items) + "}"

    def basic(self, type_name: str, name: str, gfield: GraphQLField, source: Source) -> str:
        """A field Strawberry resolves with ``getattr``: its model column, encoded."""
        definition = (gfield.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if definition is None or definition.base_resolver is not None or definition.extensions:
            raise Unsupported(f"{type_name}.{name}: resolved in code")
        column = source.model._meta.fields_db_projection.get(definition.python_name)
        if column is None:
            raise Unsupported(f"{type_name}.{name}: not a column")
        return leaf(gfield.type, source.column(column))

    def global_id(self, type_name: str, expr: str) -> str:
        prefix = self.code.name(f"{type_name}:%d".encode(), "p")
        return f"(_b64({prefix} % x).decode() if type(x := {expr}) is int else _fb())"

    def enum(self, names: dict[str, str], expr: str) -> str:
        table = self.code.name(names, "e")
        return f"(n if (n := {table}.get({expr})) is not None else _fb())"


def leaf(gtype: Any, expr: str) -> str:
    """graphql-core's ``complete_leaf_value`` of ``expr`` for a scalar field: the value, or
    ``_fb()`` where graphql-core would report an error."""
    non_null = is_non_null_type(gtype)
    inner = gtype.of_type if non_null else gtype
    if isinstance(inner, GraphQLList):
        item = inner.of_type
        if isinstance(item, GraphQLNonNull) and get_named_type(item).name == "String" and non_null:
            return f"_strings({expr})"
        raise Unsupported("a list of this type")
    name = get_named_type(gtype).name
    nn = "True" if non_null else "False"
    if name == "String":
        return f"(x if type(x := {expr}) is str else _null(x, {nn}))"
    if name == "Int":
        test = "-2147483648 <= x <= 2147483647"
        return f"(x if type(x := {expr}) is int and {test} else _null(x, {nn}))"
    if name == "Boolean":
        return f"(x if type(x := {expr}) is bool else _null(x, {nn}))"
    if name == "Float":
        return f"(x if type(x := {expr}) is float and _fin(x) else _float(x, {nn}))"
    if name == "DateTime":
        return f"(x.isoformat() if type(x := {expr}) is _dt else _null(x, {nn}))"
    raise Unsupported(f"a value of type {name}")


# --- the fields vidgen resolves in code -----------------------------------------------------

Make = Callable[[Compiler, list[FieldNode], GraphQLField, Source], str]


def _status(column: str) -> Make:
    def make(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> str:
        return c.enum(STATUS_NAMES, s.column(column))

    return make


def _status_message(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> str:
    message = leaf(gfield.type, s.column("status_message"))
    return f"({message} if {s.column('status')} == 'processing' else None)"


def _output_format(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> str:
    return c.enum(FORMAT_NAMES, s.column("output_format"))


def _kind(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> str:
    return c.enum(KIND_NAMES, s.column("kind"))


def _signed_url(file_column: str, url_column: str | None) -> Make:
    """``Video.videoUrl``/``thumbnailUrl``/``inputImageUrl``: the stored file's signed URL,
    else the provider's URL (when the field has one)."""

    def make(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> str:
        otherwise = leaf(gfield.type, s.column(url_column)) if url_column else "None"
        return f"(_sign(request.settings, k) if (k := {s.column(file_column)}) else {otherwise})"

    return make


def _to_one(type_name: str, column: str, non_null: bool = False) -> Make:
    def make(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> str:
        key = s.column(column)
        joined = s.join(MODELS[type_name], column)
        found = joined.column("id")
        missing = "_fb()" if non_null else "None"  # the plain path's error for a lost row
        body = c.object(type_name, nodes, joined)
        return f"({missing} if {key} is None or {found} is None else {body})"

    return make


def _to_many(kind: str, type_name: str) -> Make:
    def make(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> str:
        video_id = s.column("id")
        batch, item = s.batch(kind, MODELS[type_name])
        body = c.object(type_name, nodes, item)
        if batch.column >= 0:
            return f"[{body} for {item.var} in {s.var}[{batch.column}]]"
        return f"[{body} for {item.var} in batches[{batch.slot}].get({video_id}, ())]"

    return make


def _event_cursor(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> str:
    video_id = s.column("id")
    batch, _ = s.batch("latest", models.VideoStatusEvent)
    if batch.column >= 0:
        return f"(None if (x := {s.var}[{batch.column}]) is None else str(x))"
    return f"(None if (x := batches[{batch.slot}].get({video_id})) is None else str(x))"


def _webhook_secret(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> str:
    secret = leaf(gfield.type, s.column("webhook_secret"))
    return (
        f"(None if request.viewer is None or request.viewer.id != {s.column('id')} else {secret})"
    )


_SPECIAL: dict[str, dict[str, Make]] = {
    "Video": {
        "status": _status("status"),
        "statusMessage": _status_message,
        "outputFormat": _output_format,
        "kind": _kind,
        "videoUrl": _signed_url("video_file", "video_url"),
        "thumbnailUrl": _signed_url("thumbnail_file", "thumbnail_url"),
        "inputImageUrl": _signed_url("input_image", None),
        "owner": _to_one("User", "owner_id", non_null=True),
        "project": _to_one("Project", "project_id"),
        "story": _to_one("Story", "story_id"),
        "theme": _to_one("Theme", "theme_id"),
        "tags": _to_many("tags", "Tag"),
        "statusHistory": _to_many("history", "StatusChange"),
        "eventCursor": _event_cursor,
    },
    "StatusChange": {"status": _status("to_status")},
    "User": {"webhookSecret": _webhook_secret},
}
