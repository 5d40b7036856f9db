"""Random list documents for ``bench/api_bench.py``, and the bare endpoint's answer to each.

A :class:`Spec` describes one ``videos(first: N)`` document: which Video fields and
relations (owner, project, story, theme, tags, statusHistory, each with some of its
fields) its nodes select, whether edges select ``cursor``, which ``pageInfo`` fields and
whether ``totalCount`` are selected, all in a random order. :func:`draw` makes one from a
``random.Random``; :meth:`Spec.document` is its GraphQL text. :class:`BarePage` is what a
person writing the endpoint by hand for that document would write: one SQL statement
(to-one relations joined, to-many ones as correlated ``ARRAY`` subqueries, the count as a
window) and a loop that builds the same JSON.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from typing import Any

import orjson

# Video field -> (column, how it is written). Signed URLs and webhookDeliveries are left out
# (a URL's signature depends on the second it is made).
VIDEO_FIELDS = {
    "id": ("id", "gid"),
    "progress": ("progress", "plain"),
    "prompt": ("prompt", "plain"),
    "provider": ("provider", "plain"),
    "model": ("model", "plain"),
    "caption": ("caption", "plain"),
    "videoStyle": ("video_style", "plain"),
    "resolution": ("resolution", "plain"),
    "durationSeconds": ("duration_seconds", "plain"),
    "frameRate": ("frame_rate", "plain"),
    "fileSize": ("file_size", "plain"),
    "width": ("width", "plain"),
    "height": ("height", "plain"),
    "paragraphIndex": ("paragraph_index", "plain"),
    "predictionId": ("prediction_id", "plain"),
    "errorMessage": ("error_message", "plain"),
    "retryCount": ("retry_count", "plain"),
    "priority": ("priority", "plain"),
    "scheduledAt": ("scheduled_at", "time"),
    "version": ("version", "plain"),
    "createdAt": ("created_at", "time"),
    "updatedAt": ("updated_at", "time"),
    "completedAt": ("completed_at", "time"),
    "deletedAt": ("deleted_at", "time"),
    "status": ("status", "enum"),
    "statusMessage": ("status_message", "status_message"),
    "outputFormat": ("output_format", "enum"),
    "kind": ("kind", "enum"),
    "eventCursor": ("", "event_cursor"),
}

# Relation -> (GraphQL type, table, key column of videos or None for to-many, its fields:
# name -> (column, how)).
RELATIONS: dict[str, tuple[str, str, str | None, dict[str, tuple[str, str]]]] = {
    "owner": (
        "User",
        "users",
        "owner_id",
        {"id": ("id", "gid"), "email": ("email", "plain"), "isAdmin": ("is_admin", "plain")},
    ),
    "project": (
        "Project",
        "projects",
        "project_id",
        {
            "id": ("id", "gid"),
            "name": ("name", "plain"),
            "description": ("description", "plain"),
            "createdAt": ("created_at", "time"),
            "updatedAt": ("updated_at", "time"),
        },
    ),
    "story": (
        "Story",
        "stories",
        "story_id",
        {
            "id": ("id", "gid"),
            "title": ("title", "plain"),
            "paragraphs": ("paragraphs", "json"),
            "createdAt": ("created_at", "time"),
            "updatedAt": ("updated_at", "time"),
        },
    ),
    "theme": ("Theme", "themes", "theme_id", {"id": ("id", "gid"), "name": ("name", "plain")}),
    "tags": ("Tag", "tags", None, {"id": ("id", "gid"), "name": ("name", "plain")}),
    "statusHistory": (
        "StatusChange",
        "video_status_events",
        None,
        {"at": ("at", "time"), "message": ("message", "plain"), "status": ("to_status", "enum")},
    ),
}

PAGE_INFO = ("hasNextPage", "hasPreviousPage", "startCursor", "endCursor")


@dataclass(frozen=True)
class Spec:
    """One list document (see the module docstring)."""

    first: int
    parts: tuple[str, ...]  # "totalCount", "pageInfo", "edges" in the document's order
    page_info: tuple[str, ...]
    edge: tuple[str, ...]  # "cursor", "node" in order
    node: tuple[tuple[str, tuple[str, ...]], ...]  # (field, relation's fields or ())

    def document(self) -> str:
        def node_item(name: str, sub: tuple[str, ...]) -> str:
            return f"{name} {{ {' '.join(sub)} }}" if sub else name

        node = " ".join(node_item(name, sub) for name, sub in self.node)
        edge = " ".join(
            "cursor" if part == "cursor" else f"node {{ {node} }}" for part in self.edge
        )
        parts = []
        for part in self.parts:
            if part == "totalCount":
                parts.append("totalCount")
            elif part == "pageInfo":
                parts.append(f"pageInfo {{ {' '.join(self.page_info)} }}")
            else:
                parts.append(f"edges {{ {edge} }}")
        return f"{{ videos(first: {self.first}) {{ {' '.join(parts)} }} }}"

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "first": self.first,
                "parts": self.parts,
                "page_info": self.page_info,
                "edge": self.edge,
                "node": self.node,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Spec:
        data = orjson.loads(raw)
        return cls(
            first=data["first"],
            parts=tuple(data["parts"]),
            page_info=tuple(data["page_info"]),
            edge=tuple(data["edge"]),
            node=tuple((name, tuple(sub)) for name, sub in data["node"]),
        )


def draw(rng: random.Random) -> Spec:
    """A random list document."""
    fields = rng.sample(sorted(VIDEO_FIELDS), rng.randint(1, 16))
    items: list[tuple[str, tuple[str, ...]]] = [(name, ()) for name in fields]
    for relation, (_, _, _, sub) in RELATIONS.items():
        if rng.random() < 0.4:
            chosen = tuple(rng.sample(sorted(sub), rng.randint(1, len(sub))))
            items.append((relation, chosen))
    rng.shuffle(items)
    parts = ["edges"]
    if rng.random() < 0.4:
        parts.append("totalCount")
    page_info: tuple[str, ...] = ()
    if rng.random() < 0.4:
        parts.append("pageInfo")
        page_info = tuple(rng.sample(PAGE_INFO, rng.randint(1, len(PAGE_INFO))))
    rng.shuffle(parts)
    edge = ["node"]
    if rng.random() < 0.5:
        edge.insert(rng.randint(0, 1), "cursor")
    return Spec(
        first=rng.choice((10, 20, 50)),
        parts=tuple(parts),
        page_info=page_info,
        edge=tuple(edge),
        node=tuple(items),
    )


# --- the bare endpoint --------------------------------------------------------------------


def gid(type_name: str, node_id: int) -> str:
    return base64.b64encode(f"{type_name}:{node_id}".encode()).decode()


def cursor(created_at: Any, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"c1:{created_at.isoformat()}|{row_id}".encode()).decode()


def _writer(how: str, type_name: str) -> Any:
    if how == "gid":
        return lambda value: gid(type_name, value)
    if how == "time":
        return lambda value: None if value is None else value.isoformat()
    if how == "enum":
        return lambda value: value.upper()
    if how == "json":
        return orjson.loads
    return lambda value: value


class BarePage:
    """The hand-written statement and JSON of one :class:`Spec` (``$1`` the viewer's id,
    ``$2`` the limit)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        select: list[str] = []
        joins: list[str] = []

        def column(expr: str) -> int:
            select.append(expr)
            return len(select) - 1

        builders: list[tuple[str, Any]] = []
        for name, sub in spec.node:
            if not sub:
                builders.append((name, self._video_field(name, column)))
            else:
                builders.append((name, self._relation(name, sub, column, joins)))
        self.node = builders
        wants_cursors = "cursor" in spec.edge or {"startCursor", "endCursor"} & set(spec.page_info)
        self.cursor_at = (column("v.created_at"), column("v.id")) if wants_cursors else None
        # An uncorrelated subquery, run once per statement. ``COUNT(*) OVER ()`` would make
        # PostgreSQL build every row of the owner's videos (joins and arrays included)
        # before the LIMIT, which no one writing this endpoint by hand would ship.
        total = "(SELECT count(*) FROM videos c WHERE c.owner_id = $1 AND c.deleted_at IS NULL)"
        self.total_at = column(total) if "totalCount" in spec.parts else None
        self.limit = spec.first + (1 if "hasNextPage" in spec.page_info else 0)
        self.sql = (
            f"SELECT {', '.join(select)} FROM videos v {' '.join(joins)} "
            "WHERE v.owner_id = $1 AND v.deleted_at IS NULL "
            "ORDER BY v.created_at DESC, v.id DESC LIMIT $2"
        )

    @staticmethod
    def _video_field(name: str, column: Any) -> Any:
        source, how = VIDEO_FIELDS[name]
        if how == "status_message":
            status, message = column("v.status"), column("v.status_message")
            return lambda row: row[message] if row[status] == "processing" else None
        if how == "event_cursor":
            at = column("(SELECT max(e.id) FROM video_status_events e WHERE e.video_id = v.id)")
            return lambda row: None if row[at] is None else str(row[at])
        at = column(f"v.{source}")
        write = _writer(how, "Video")
        return lambda row: write(row[at])

    @staticmethod
    def _relation(name: str, sub: tuple[str, ...], column: Any, joins: list[str]) -> Any:
        type_name, table, key, fields = RELATIONS[name]
        writers = [(field, _writer(fields[field][1], type_name)) for field in sub]
        if key is not None:
            alias = f"r_{name}"
            joins.append(f"LEFT JOIN {table} {alias} ON {alias}.id = v.{key}")
            present = column(f"{alias}.id")
            at = [column(f"{alias}.{fields[field][0]}") for field in sub]
            pairs = list(zip(at, writers, strict=True))
            return lambda row: (
                None
                if row[present] is None
                else {field: write(row[i]) for i, (field, write) in pairs}
            )
        row_of = ", ".join(f"r.{fields[field][0]}" for field in sub)
        if name == "tags":
            inner = (
                f"SELECT ROW({row_of}) FROM video_tags vt JOIN tags r ON r.id = vt.tag_id "
                "WHERE vt.videos_id = v.id ORDER BY r.name_key, r.id"
            )
        else:
            inner = (
                f"SELECT ROW({row_of}) FROM video_status_events r WHERE r.video_id = v.id "
                "AND (r.from_status IS NULL OR r.from_status <> r.to_status) ORDER BY r.id"
            )
        at = column(f"ARRAY({inner})")
        indexed = list(enumerate(writers))
        return lambda row: [
            {field: write(item[i]) for i, (field, write) in indexed} for item in row[at]
        ]

    def render(self, rows: list[Any]) -> bytes:
        spec = self.spec
        more = len(rows) > spec.first
        rows = rows[: spec.first]
        cursor_at = self.cursor_at

        def cursor_of(row: Any) -> str:
            assert cursor_at is not None
            return cursor(row[cursor_at[0]], row[cursor_at[1]])

        connection: dict[str, Any] = {}
        for part in spec.parts:
            if part == "totalCount":
                connection[part] = rows[0][self.total_at] if rows else 0
            elif part == "pageInfo":
                info: dict[str, Any] = {}
                for name in spec.page_info:
                    if name == "hasNextPage":
                        info[name] = more
                    elif name == "hasPreviousPage":
                        info[name] = False
                    elif name == "startCursor":
                        info[name] = cursor_of(rows[0]) if rows else None
                    else:
                        info[name] = cursor_of(rows[-1]) if rows else None
                connection[part] = info
            else:
                edges = []
                for row in rows:
                    edge: dict[str, Any] = {}
                    for item in spec.edge:
                        if item == "cursor":
                            edge["cursor"] = cursor_of(row)
                        else:
                            edge["node"] = {name: build(row) for name, build in self.node}
                    edges.append(edge)
                connection[part] = edges
        return orjson.dumps({"data": {"videos": connection}})
