"""An operation compiled once into a plan, and the plan run for one request.

A :class:`Plan` holds, per root field, what to run: ``viewer`` (the signed-in user, in
hand), ``videos`` (:class:`VideoList`: one page statement with its to-one relations joined,
one statement per to-many relation batch, and ``COUNT(*)`` when ``totalCount`` is
selected) and ``__typename``. Running it gives the response's ``data``, or raises
:class:`~.values.Fallback` when the plain path would answer otherwise (an error of any
kind: not signed in, a bad argument or cursor, a value a scalar cannot represent). Nothing a
plan runs writes anything, so a fallback simply runs the request again through Strawberry.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    Node,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
)
from graphql.execution.values import get_argument_values, get_variable_values

from vidgen import models
from vidgen.graphql import pagination
from vidgen.graphql.compiled import statements, values
from vidgen.graphql.compiled.objects import Batch, Columns, Compiler, Source
from vidgen.graphql.compiled.selection import Unsupported, collect, sub_selections
from vidgen.graphql.types.ids import require_id
from vidgen.services import videos as video_service
from vidgen.settings import Settings


@dataclass
class Request:
    """What a plan's functions may read while building one response."""

    viewer: models.User | None
    settings: Settings
    batches: list[dict[Any, Any]] = field(default_factory=list)


class VideoList:
    """The root ``videos(first, after, filter)`` connection, compiled."""

    def __init__(self, compiler: Compiler, nodes: list[FieldNode], gfield: Any) -> None:
        self.node = nodes[0]
        # Arguments without variables are coerced once (see run).
        self.static = not any(
            isinstance(found, VariableNode) for found in _walk(self.node.arguments)
        )
        self.static_args: dict[str, Any] | None = None
        self.gfield = gfield
        schema = compiler.schema
        connection = schema.get_type("VideoConnection")
        edge_type = schema.get_type("VideoEdge")
        page_info = schema.get_type("PageInfo")
        assert isinstance(connection, GraphQLObjectType)
        assert isinstance(edge_type, GraphQLObjectType)
        assert isinstance(page_info, GraphQLObjectType)
        self.columns = Columns()
        source = Source(models.Video, compiler.code, "row", "v", self.columns)
        self.count = False

        def cursor(row: str) -> str:
            at = self.columns.add("v", models.Video, "created_at")
            key = self.columns.add("v", models.Video, "id")
            return f"_cursor({row}[{at}], {row}[{key}])"

        fields = collect(schema, connection, sub_selections(nodes), compiler.fragments)
        parts = []
        for key, field_nodes in fields.items():
            name = field_nodes[0].name.value
            if name == "__typename":
                parts.append(f"{key!r}: 'VideoConnection'")
            elif name == "totalCount":
                self.count = True
                parts.append(f"{key!r}: count")
            elif name == "pageInfo":
                info = collect(schema, page_info, sub_selections(field_nodes), compiler.fragments)
                parts.append(f"{key!r}: {self._page_info(info, cursor)}")
            elif name == "edges":
                edge = collect(schema, edge_type, sub_selections(field_nodes), compiler.fragments)
                parts.append(f"{key!r}: {self._edges(compiler, edge, cursor, source)}")
            else:
                raise Unsupported(f"VideoConnection.{name}")
        self.build = compiler.code.function(
            "rows, more, count, request", "{" + ", ".join(parts) + "}"
        )
        for batch in source.batches:
            if not batch.columns.exprs:  # only __typename: ROW() needs a column
                model = models.Tag if batch.kind == "tags" else models.VideoStatusEvent
                batch.columns.add("r", model, "id")
            batch.read = batch.columns.reader()
            if batch.column >= 0:  # inside the page's statement (see objects.Batch)
                sql = statements.inline_batch(batch.kind, batch.columns.exprs)
                read = None if batch.kind == "latest" else batch.read
                self.columns.set(batch.column, sql, read)
        self.read = self.columns.reader()
        self.batches = [batch for batch in source.batches if batch.column < 0]
        self.select = ", ".join(self.columns.exprs) or 'v."id"'
        self.joins = "".join(
            f' LEFT JOIN "{join.table}" {join.alias} ON {join.alias}."id" = '
            f'{join.parent_alias}."{join.parent_column}"'
            for join in source.joins
        )

    @staticmethod
    def _page_info(fields: dict[str, list[FieldNode]], cursor: Callable[[str], str]) -> str:
        items = []
        for key, field_nodes in fields.items():
            name = field_nodes[0].name.value
            if name == "__typename":
                items.append(f"{key!r}: 'PageInfo'")
            elif name == "hasNextPage":
                items.append(f"{key!r}: more")
            elif name == "hasPreviousPage":
                items.append(f"{key!r}: False")
            elif name == "startCursor":
                items.append(f"{key!r}: ({cursor('rows[0]')} if rows else None)")
            elif name == "endCursor":
                items.append(f"{key!r}: ({cursor('rows[-1]')} if rows else None)")
            else:
                raise Unsupported(f"PageInfo.{name}")
        return "{" + ", ".join(items) + "}"

    @staticmethod
    def _edges(
        compiler: Compiler,
        fields: dict[str, list[FieldNode]],
        cursor: Callable[[str], str],
        source: Source,
    ) -> str:
        items = []
        for key, field_nodes in fields.items():
            name = field_nodes[0].name.value
            if name == "__typename":
                items.append(f"{key!r}: 'VideoEdge'")
            elif name == "cursor":
                items.append(f"{key!r}: {cursor('row')}")
            elif name == "node":
                items.append(f"{key!r}: {compiler.object('Video', field_nodes, source)}")
            else:
                raise Unsupported(f"VideoEdge.{name}")
        return "[{" + ", ".join(items) + "} for row in rows]"

    async def run(self, variables: dict[str, Any], request: Request) -> Any:
        viewer = request.viewer
        if viewer is None:
            raise values.Fallback  # UNAUTHENTICATED
        args = self.static_args
        if args is None:
            try:
                args = get_argument_values(self.gfield, self.node, variables)
            except GraphQLError as exc:
                raise values.Fallback from exc
            if self.static:  # no variable in them: the same every time
                self.static_args = args
        settings = request.settings
        try:
            listed = _video_list(viewer, args.get("filter"))
            size = pagination.page_size(
                args.get("first"),
                default=settings.page_size_default,
                maximum=settings.page_size_max,
            )
            after = args.get("after")
            cursor = pagination.decode_cursor(after) if after else None
        except Exception as exc:  # noqa: BLE001 - the plain path reports it
            raise values.Fallback from exc
        where = statements.video_filters(listed)
        raw = await statements.page(
            self.select, self.joins, where, cursor, size + 1, with_count=self.count
        )
        rows = self.read(raw)
        count = None
        if self.count:  # the last column, when there is a row to hold it
            count = int(rows[0][-1]) if rows else await statements.count(where)
        more = len(rows) > size
        rows = rows[:size]
        request.batches = [await _load(batch, rows) for batch in self.batches]
        return self.build(rows, more, count, request)


def _walk(nodes: Any) -> Any:
    """Every AST node under ``nodes`` (arguments and their values)."""
    for node in nodes or ():
        yield node
        for key in node.keys:
            child = getattr(node, key, None)
            if isinstance(child, tuple | list):
                yield from _walk(child)
            elif isinstance(child, Node):
                yield from _walk((child,))


def _video_list(viewer: models.User, given: Any) -> Any:
    """``Query.videos``'s checks and filters, as its resolver makes them."""
    given = given or {}
    statuses = given.get("status")
    return video_service.video_list(
        viewer=viewer,
        status=[s.value for s in statuses] if statuses else None,
        project_id=require_id(given.get("projectId"), "Project", field="projectId"),
        story_id=require_id(given.get("storyId"), "Story", field="storyId"),
        tag=given.get("tag"),
        theme=given.get("theme"),
        provider=given.get("provider"),
        search=given.get("search"),
        include_deleted=bool(given.get("includeDeleted")),
    )


async def _load(batch: Batch, rows: list[list[Any]]) -> dict[Any, Any]:
    """A to-many relation of the page's videos (index 0 of each row of ``batch``'s
    statement is the video id)."""
    if not rows:
        return {}
    ids = sorted({row[batch.video_index] for row in rows})
    raw = await statements.batch(batch.kind, batch.columns.exprs[1:], ids)
    if batch.kind == "latest":
        return {row[0]: row[1] for row in raw}
    assert batch.read is not None
    grouped: dict[Any, list[Any]] = defaultdict(list)
    for row in batch.read(raw):
        grouped[row[0]].append(row)
    return grouped


class Viewer:
    """The root ``viewer``: the signed-in user in hand (null when not signed in)."""

    def __init__(self, compiler: Compiler, nodes: list[FieldNode]) -> None:
        body = compiler.object("User", nodes, Source(models.User, compiler.code, "viewer"))
        self.build = compiler.code.function("viewer, request", body)

    async def run(self, variables: dict[str, Any], request: Request) -> Any:
        viewer = request.viewer
        return None if viewer is None else self.build(viewer, request)


class Typename:
    async def run(self, variables: dict[str, Any], request: Request) -> Any:
        return "Query"


@dataclass
class Plan:
    operation: OperationDefinitionNode
    roots: list[tuple[str, Any]]

    async def data(
        self, schema: GraphQLSchema, raw_variables: dict[str, Any] | None, request: Request
    ) -> dict[str, Any]:
        """The response's ``data``; raises :class:`~.values.Fallback`."""
        definitions = self.operation.variable_definitions
        if definitions:
            coerced = get_variable_values(schema, definitions, raw_variables or {})
            if isinstance(coerced, list):
                raise values.Fallback  # the plain path reports the variables' errors
            variables = coerced
        else:
            variables = {}
        return {key: await root.run(variables, request) for key, root in self.roots}


@dataclass
class EventPlan:
    """A subscription document's selection on one Video row in hand (see
    :meth:`vidgen.graphql.compiled.CompiledPlans.event_result`)."""

    key: str
    build: Callable[..., Any]
    field: str = ""  # the root field: videoUpdated or videoUpdates
    arguments: tuple[Any, ...] = ()  # its argument nodes, as written in the document


def compile_event(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> EventPlan:
    """The event plan of a subscription document; raises :class:`Unsupported` (also for
    selections that need a statement: relations, ``eventCursor``)."""
    operation = _operation(document, operation_name)
    if operation.operation != OperationType.SUBSCRIPTION:
        raise Unsupported(operation.operation.value)
    fragments = _fragments(document)
    compiler = Compiler(schema, fragments)
    subscription_type = schema.subscription_type
    assert subscription_type is not None
    fields = collect(schema, subscription_type, [operation.selection_set], fragments)
    if len(fields) != 1:
        raise Unsupported("one root field")
    ((key, nodes),) = fields.items()
    if nodes[0].name.value not in ("videoUpdated", "videoUpdates"):
        raise Unsupported(nodes[0].name.value)
    body = compiler.object("Video", nodes, Source(models.Video, compiler.code, "video"))
    build = compiler.code.function("video, request", body)
    return EventPlan(key, build, nodes[0].name.value, tuple(nodes[0].arguments or ()))


def _operation(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        if len(operations) != 1:
            raise Unsupported("no operation named")
        operation = operations[0]
    else:
        named = [o for o in operations if o.name and o.name.value == operation_name]
        if len(named) != 1:
            raise Unsupported("no such operation")
        operation = named[0]
    if operation.directives or any(v.directives for v in operation.variable_definitions or ()):
        raise Unsupported("a directive")
    return operation


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def compile_plan(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None) -> Plan:
    """The plan of ``document``'s operation; raises :class:`Unsupported`. The document
    must be valid (the caller validated it)."""
    operation = _operation(document, operation_name)
    if operation.operation != OperationType.QUERY:
        raise Unsupported(operation.operation.value)
    fragments = _fragments(document)
    compiler = Compiler(schema, fragments)
    query_type = schema.query_type
    assert query_type is not None
    roots: list[tuple[str, Any]] = []
    for key, nodes in collect(schema, query_type, [operation.selection_set], fragments).items():
        name = nodes[0].name.value
        if name == "__typename":
            roots.append((key, Typename()))
        elif name == "viewer":
            roots.append((key, Viewer(compiler, nodes)))
        elif name == "videos":
            roots.append((key, VideoList(compiler, nodes, query_type.fields["videos"])))
        else:
            raise Unsupported(f"Query.{name}")
    return Plan(operation, roots)
