"""Object types compiled to lists of ``(response key, function)``.

A compiled object is a list of pairs; its value for a source is
``{key: function(source, request) for key, function in pairs}``. What a source is depends on
where the object comes from (:class:`Source`): a row of a statement the plan sends (a list of
converted column values, read by index) or a model instance in hand (the viewer, read by
attribute). Each field is compiled once, from its GraphQL type and how vidgen resolves it:

- a field without a resolver (Strawberry's default ``getattr``) reads the model column of
  the same name and encodes it by its scalar type (:mod:`.values`);
- Relay's ``id`` encodes the ``id`` column; ``__typename`` is a constant;
- the fields vidgen resolves in code are compiled by hand below, each equal to its
  resolver (the differential test compares them over generated documents): a video's
  ``status``, ``statusMessage``, ``outputFormat``, the signed URLs, ``eventCursor``,
  ``webhookSecret``, the relations (to-one: joined into the row's statement; to-many:
  one batched statement per relation, see :class:`Batch`);
- any other field (one with arguments, ``limits``, ``usage``, ``webhookDeliveries``, the
  nested ``videos`` connections, a story's ``project``) makes the document
  :class:`~.selection.Unsupported`.
"""

from __future__ import annotations

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

from vidgen import models
from vidgen.graphql.compiled import values
from vidgen.graphql.compiled.selection import Unsupported, collect, sub_selections
from vidgen.graphql.types.enums import OutputFormatEnum, VideoStatusEnum
from vidgen.media.signing import signed_url

Pairs = list[tuple[str, Callable[[Any, Any], Any]]]

MODELS: dict[str, type[Model]] = {
    "Video": models.Video,
    "User": models.User,
    "Project": models.Project,
    "Story": models.Story,
    "Theme": models.Theme,
    "Tag": models.Tag,
    "StatusChange": models.VideoStatusEvent,
}

_STATUS_NAMES = {member.value: member.name for member in VideoStatusEnum}
_FORMAT_NAMES = {member.value: member.name for member in OutputFormatEnum}


def obj(pairs: Pairs) -> Callable[[Any, Any], dict[str, Any]]:
    """The function making a compiled object's value."""
    if len(pairs) == 1:
        ((only_key, only),) = pairs
        return lambda source, request: {only_key: only(source, request)}
    return lambda source, request: {key: make(source, request) for key, make in pairs}


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
    """A to-many relation of a page's videos, read in one statement for all of them."""

    kind: str  # "tags", "history" or "latest"
    columns: Columns  # after the video id (index 0)
    slot: int  # where its rows go in the request's batches
    video_index: int  # where the parent row holds the video id
    read: Callable[[list[Any]], list[list[Any]]] | None = None


@dataclass
class Source:
    """Where a compiled object's values come from: a statement's rows or a model instance."""

    model: type[Model]
    alias: str = ""
    columns: Columns | None = None  # None: read a model instance's attributes
    joins: list[Join] = field(default_factory=list)
    batches: list[Batch] = field(default_factory=list)
    counter: list[int] = field(default_factory=lambda: [0])

    def column(self, name: str) -> Callable[[Any], Any]:
        if self.columns is None:
            attr = _attribute(self.model, name)
            return lambda instance: getattr(instance, attr)
        index = self.columns.add(self.alias, self.model, name)
        return lambda row: row[index]

    def join(self, model: type[Model], parent_column: str) -> Source:
        if self.columns is None:
            raise Unsupported("a relation of an object in hand")
        self.counter[0] += 1
        alias = f"j{self.counter[0]}"
        self.joins.append(Join(alias, model._meta.db_table, self.alias, parent_column))
        return Source(model, alias, self.columns, self.joins, self.batches, self.counter)

    def batch(self, kind: str, model: type[Model]) -> tuple[Batch, Source]:
        if self.columns is None:
            raise Unsupported("a relation of an object in hand")
        video_index = self.columns.add(self.alias, self.model, "id")
        columns = Columns()
        columns.exprs.append("k")  # index 0: the video id (written by the statement)
        columns._convert.append(None)
        found = Batch(kind, columns, slot=len(self.batches), video_index=video_index)
        self.batches.append(found)
        return found, Source(model, "r", columns, [], self.batches, self.counter)


def _attribute(model: type[Model], column: str) -> str:
    for attr, db_column in model._meta.fields_db_projection.items():
        if db_column == column:
            return attr
    raise KeyError(column)


@dataclass
class Compiler:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]

    def object(self, type_name: str, nodes: list[FieldNode], source: Source) -> Pairs:
        object_type = self.schema.get_type(type_name)
        assert isinstance(object_type, GraphQLObjectType)
        fields = collect(self.schema, object_type, sub_selections(nodes), self.fragments)
        special = _SPECIAL.get(type_name, {})
        pairs: Pairs = []
        for key, field_nodes in fields.items():
            name = field_nodes[0].name.value
            if name == "__typename":
                pairs.append((key, _constant(type_name)))
                continue
            gfield = object_type.fields.get(name)
            if gfield is None or gfield.args or any(n.arguments for n in field_nodes):
                raise Unsupported(f"{type_name}.{name}")
            make = special.get(name)
            if make is not None:
                pairs.append((key, make(self, field_nodes, gfield, source)))
            elif name == "id" and type_name in MODELS:
                pairs.append((key, _gid(type_name, source)))
            else:
                pairs.append((key, self.basic(type_name, name, gfield, source)))
        return pairs

    def basic(self, type_name: str, name: str, gfield: GraphQLField, source: Source) -> Any:
        """A field Strawberry resolves with ``getattr``: its model column, encoded."""
        definition = (gfield.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        if definition is None or definition.base_resolver is not None or definition.extensions:
            raise Unsupported(f"{type_name}.{name}: resolved in code")
        column = source.model._meta.fields_db_projection.get(definition.python_name)
        if column is None:
            raise Unsupported(f"{type_name}.{name}: not a column")
        read = source.column(column)
        encode = leaf_encoder(gfield.type)
        return lambda row, request: encode(read(row))


def leaf_encoder(gtype: Any) -> values.Convert:
    non_null = is_non_null_type(gtype)
    inner = gtype.of_type if non_null else gtype
    if isinstance(inner, GraphQLList):
        item = inner.of_type
        if isinstance(item, GraphQLNonNull) and get_named_type(item).name == "String" and non_null:
            return values.string_list
        raise Unsupported("a list of this type")
    name = get_named_type(gtype).name
    factory = _LEAVES.get(name)
    if factory is None:
        raise Unsupported(f"a value of type {name}")
    return factory(non_null)


_LEAVES = {
    "String": values.string,
    "Int": values.integer,
    "Float": values.floating,
    "Boolean": values.boolean,
    "DateTime": values.datetime,
}


def _constant(value: Any) -> Callable[[Any, Any], Any]:
    return lambda row, request: value


def _gid(type_name: str, source: Source) -> Callable[[Any, Any], Any]:
    read = source.column("id")
    encode = values.global_id(type_name)
    return lambda row, request: encode(read(row))


# --- the fields vidgen resolves in code -----------------------------------------------------


def _status(column: str) -> Any:
    def make(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, source: Source) -> Any:
        read = source.column(column)
        encode = values.enum_names(_STATUS_NAMES, non_null=True)
        return lambda row, request: encode(read(row))

    return make


def _status_message(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> Any:
    status = s.column("status")
    message = s.column("status_message")
    encode = values.string(non_null=False)
    processing = models.VideoStatus.PROCESSING.value

    def make(row: Any, request: Any) -> Any:
        if getattr(status(row), "value", status(row)) != processing:
            return None
        return encode(message(row))

    return make


def _output_format(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> Any:
    read = s.column("output_format")
    encode = values.enum_names(_FORMAT_NAMES, non_null=True)
    return lambda row, request: encode(read(row))


def _signed_url(file_column: str, url_column: str | None) -> Any:
    """``Video.videoUrl``/``thumbnailUrl``/``inputImageUrl``: the stored file's signed URL,
    else the provider's URL (when the field has one)."""

    def make(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> Any:
        key_of = s.column(file_column)
        url_of = s.column(url_column) if url_column else None
        encode = values.string(non_null=False)

        def resolve(row: Any, request: Any) -> Any:
            key = key_of(row)
            if key:
                settings = request.settings
                return signed_url(
                    settings.resolved_public_url,
                    key,
                    ttl=settings.signed_url_ttl_seconds,
                    secret=settings.resolved_secret_key,
                )
            return encode(url_of(row) if url_of else None)

        return resolve

    return make


def _to_one(type_name: str, column: str, non_null: bool = False) -> Any:
    def make(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> Any:
        model = MODELS[type_name]
        key_of = s.column(column)
        joined = s.join(model, column)
        found = joined.column("id")
        build = obj(c.object(type_name, nodes, joined))

        def resolve(row: Any, request: Any) -> Any:
            if key_of(row) is None or found(row) is None:
                if non_null:
                    raise values.Fallback  # the plain path's error for a missing row
                return None
            return build(row, request)

        return resolve

    return make


def _to_many(kind: str, type_name: str) -> Any:
    def make(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> Any:
        video_id = s.column("id")
        batch, rows = s.batch(kind, MODELS[type_name])
        build = obj(c.object(type_name, nodes, rows))
        slot = batch.slot

        def resolve(row: Any, request: Any) -> Any:
            return [build(item, request) for item in request.batches[slot].get(video_id(row), ())]

        return resolve

    return make


def _event_cursor(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> Any:
    video_id = s.column("id")
    batch, _ = s.batch("latest", models.VideoStatusEvent)
    slot = batch.slot

    def resolve(row: Any, request: Any) -> Any:
        latest = request.batches[slot].get(video_id(row))
        return None if latest is None else str(latest)

    return resolve


def _webhook_secret(c: Compiler, nodes: list[FieldNode], gfield: GraphQLField, s: Source) -> Any:
    user_id = s.column("id")
    secret = s.column("webhook_secret")
    encode = values.string(non_null=False)

    def resolve(row: Any, request: Any) -> Any:
        viewer = request.viewer
        if viewer is None or viewer.id != user_id(row):
            return None
        return encode(secret(row))

    return resolve


_SPECIAL: dict[str, dict[str, Any]] = {
    "Video": {
        "status": _status("status"),
        "statusMessage": _status_message,
        "outputFormat": _output_format,
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
