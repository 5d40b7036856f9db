"""The baseline of ``bench/api_bench.py``: the same two endpoints written by hand.

Starlette + asyncpg, no ORM, no GraphQL: what the list page and the enqueue cost when
somebody writes exactly the SQL they need. It does the same work vidgen does for those
requests, the obvious efficient way:

- both endpoints authenticate the bearer token (one SELECT joining ``api_tokens`` and
  ``users`` by the token's SHA-256, revoked and expired tokens refused), because a list page
  or an enqueue that skipped it would not be the same request;
- ``POST /list`` returns, for the viewer's 50 (``first``) newest live videos, exactly the
  JSON body vidgen returns for ``videos(first: 50) { edges { node { id prompt status
  createdAt owner { id email } project { id name } story { id title } theme { name }
  tags { name } } } }`` (same global ids, same ISO timestamps, tags by name), from ONE
  query with joins and a correlated ``array_agg`` for the tags;
- ``POST /enqueue`` takes the same input as ``generateVideo`` (prompt, projectId, storyId,
  theme, tags, idempotencyKey) and, in one transaction, checks the project, story, theme and
  tags belong to the viewer (one SELECT), inserts the queued ``videos`` row, its first
  ``video_status_events`` row and its ``video_tags`` links, and answers like the mutation
  ``generateVideo(input: …) { id status createdAt }``.

- ``POST /page`` takes a list document's description (:mod:`bench.documents`: which Video
  fields, relations, ``cursor``, ``pageInfo`` and ``totalCount``, in the document's order)
  and returns exactly vidgen's JSON for that document, from ONE query (to-one relations
  joined, to-many ones as correlated ``ARRAY`` subqueries, the count as a window), its SQL
  written once per description;
- ``GET /ids?first=N`` is ``videos(first: N) { edges { node { id } } }`` and ``GET /viewer``
  is ``{ viewer { id } }``: the token check and what the answer needs, nothing else.

Run (one process, like vidgen)::

    BENCH_DATABASE_URL=postgres://root@127.0.0.1:5432/DB \\
        .venv/bin/python -m uvicorn --factory bench.bare_app:app_from_env --log-level warning \\
        --no-access-log
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench import documents

AUTH_SQL = """
SELECT u.id, u.email, u.is_admin, t.revoked_at, t.expires_at
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_hash = $1
"""

LIST_SQL = """
SELECT v.id, v.prompt, v.status, v.created_at,
       u.id AS owner_id, u.email AS owner_email,
       p.id AS project_id, p.name AS project_name,
       s.id AS story_id, s.title AS story_title,
       th.name AS theme_name,
       ARRAY(
           SELECT t.name FROM video_tags vt JOIN tags t ON t.id = vt.tag_id
           WHERE vt.videos_id = v.id ORDER BY t.name_key, t.id
       ) AS tags
FROM videos v
JOIN users u ON u.id = v.owner_id
LEFT JOIN projects p ON p.id = v.project_id
LEFT JOIN stories s ON s.id = v.story_id
LEFT JOIN themes th ON th.id = v.theme_id
WHERE v.owner_id = $1 AND v.deleted_at IS NULL
ORDER BY v.created_at DESC, v.id DESC
LIMIT $2
"""

CHECK_SQL = """
SELECT
    (SELECT id FROM projects WHERE id = $2 AND owner_id = $1) AS project_id,
    (SELECT id FROM stories WHERE id = $3 AND owner_id = $1) AS story_id,
    (SELECT project_id FROM stories WHERE id = $3 AND owner_id = $1) AS story_project_id,
    (SELECT id FROM themes WHERE owner_id = $1 AND name_key = $4) AS theme_id,
    ARRAY(SELECT id FROM tags WHERE owner_id = $1 AND name_key = ANY($5::text[])) AS tag_ids
"""

INSERT_VIDEO_SQL = """
INSERT INTO videos (
    owner_id, created_by_id, prompt, provider, model, status, progress, resolution,
    output_format, duration_seconds, project_id, story_id, theme_id, retry_count,
    max_retries, rescue_count, priority, attempt, cancel_requested, idempotency_key,
    version, created_at, updated_at
) VALUES (
    $1, $1, $2, 'local', NULL, 'queued', 0, '1024x1024', 'mp4', 5.0, $3, $4, $5, 0,
    3, 0, 0, 0, false, $6, 1, $7, $7
)
ON CONFLICT (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, status, created_at
"""

INSERT_EVENT_SQL = """
INSERT INTO video_status_events (video_id, owner_id, from_status, to_status, version, at,
                                 message, actor)
VALUES ($1, $2, NULL, 'queued', 1, $3, 'queued', $4)
"""

INSERT_TAG_SQL = "INSERT INTO video_tags (videos_id, tag_id) VALUES ($1, $2)"


def gid(type_name: str, node_id: int) -> str:
    """A Relay global id, as Strawberry writes it."""
    return base64.b64encode(f"{type_name}:{node_id}".encode()).decode()


def ungid(value: str | None) -> int | None:
    if not value:
        return None
    return int(base64.b64decode(value).decode().partition(":")[2])


def label_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def error(message: str, code: str, status: int = 200) -> Response:
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status)


async def viewer(conn: asyncpg.Connection, request: Request) -> asyncpg.Record | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    row = await conn.fetchrow(AUTH_SQL, hashlib.sha256(token.strip().encode()).hexdigest())
    if row is None or row["revoked_at"] is not None:
        return None
    if row["expires_at"] is not None and row["expires_at"] <= dt.datetime.now(dt.UTC):
        return None
    return row


def video_node(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": gid("Video", row["id"]),
        "prompt": row["prompt"],
        "status": row["status"].upper(),
        "createdAt": row["created_at"].isoformat(),
        "owner": {"id": gid("User", row["owner_id"]), "email": row["owner_email"]},
        "project": None
        if row["project_id"] is None
        else {"id": gid("Project", row["project_id"]), "name": row["project_name"]},
        "story": None
        if row["story_id"] is None
        else {"id": gid("Story", row["story_id"]), "title": row["story_title"]},
        "theme": None if row["theme_name"] is None else {"name": row["theme_name"]},
        "tags": [{"name": name} for name in row["tags"]],
    }


async def list_videos(request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    first = int(request.query_params.get("first", "50"))
    async with pool.acquire() as conn:
        user = await viewer(conn, request)
        if user is None:
            return error("Sign in first.", "UNAUTHENTICATED")
        rows = await conn.fetch(LIST_SQL, user["id"], first)
    edges = [{"node": video_node(row)} for row in rows]
    return JSONResponse({"data": {"videos": {"edges": edges}}})


async def enqueue(request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    data = json.loads(await request.body())
    prompt = (data.get("prompt") or "").strip()
    if not prompt:
        return error("The prompt must not be empty.", "BAD_USER_INPUT")
    project_id = ungid(data.get("projectId"))
    story_id = ungid(data.get("storyId"))
    theme = data.get("theme")
    tag_keys = sorted({label_key(t) for t in data.get("tags") or []})
    key = data.get("idempotencyKey")
    async with pool.acquire() as conn:
        user = await viewer(conn, request)
        if user is None:
            return error("Sign in first.", "UNAUTHENTICATED")
        owner = user["id"]
        async with conn.transaction():
            theme_key = label_key(theme) if theme else None
            check = await conn.fetchrow(CHECK_SQL, owner, project_id, story_id, theme_key, tag_keys)
            if project_id is not None and check["project_id"] is None:
                return error("No project with that id.", "BAD_USER_INPUT")
            if story_id is not None and check["story_id"] is None:
                return error("No story with that id.", "BAD_USER_INPUT")
            if story_id is not None and project_id is None:
                project_id = check["story_project_id"]
            if len(check["tag_ids"]) != len(tag_keys) or (theme and check["theme_id"] is None):
                # vidgen would create them; the benchmark only sends existing ones.
                return error("Unknown tag or theme.", "BAD_USER_INPUT")
            now = dt.datetime.now(dt.UTC)
            video = await conn.fetchrow(
                INSERT_VIDEO_SQL, owner, prompt, project_id, story_id, check["theme_id"], key, now
            )
            if video is None:  # a repeated idempotency key: the first video is the answer
                video = await conn.fetchrow(
                    "SELECT id, status, created_at FROM videos "
                    "WHERE owner_id = $1 AND idempotency_key = $2",
                    owner,
                    key,
                )
            else:
                await conn.execute(INSERT_EVENT_SQL, video["id"], owner, now, f"user:{owner}")
                if check["tag_ids"]:
                    await conn.executemany(
                        INSERT_TAG_SQL, [(video["id"], tag_id) for tag_id in check["tag_ids"]]
                    )
    node = {
        "id": gid("Video", video["id"]),
        "status": video["status"].upper(),
        "createdAt": video["created_at"].isoformat(),
    }
    return JSONResponse({"data": {"generateVideo": node}})


def json_response(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


async def viewer_id(request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        user = await viewer(conn, request)
    if user is None:
        return error("Sign in first.", "UNAUTHENTICATED")
    return json_response({"data": {"viewer": {"id": gid("User", user["id"])}}})


IDS_SQL = """
SELECT id FROM videos WHERE owner_id = $1 AND deleted_at IS NULL
ORDER BY created_at DESC, id DESC LIMIT $2
"""


async def list_ids(request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    first = int(request.query_params.get("first", "50"))
    async with pool.acquire() as conn:
        user = await viewer(conn, request)
        if user is None:
            return error("Sign in first.", "UNAUTHENTICATED")
        rows = await conn.fetch(IDS_SQL, user["id"], first)
    edges = [{"node": {"id": gid("Video", row["id"])}} for row in rows]
    return json_response({"data": {"videos": {"edges": edges}}})


_PAGES: dict[bytes, documents.BarePage] = {}


async def page(request: Request) -> Response:
    pool: asyncpg.Pool = request.app.state.pool
    body = await request.body()
    built = _PAGES.get(body)
    if built is None:
        built = _PAGES[body] = documents.BarePage(documents.Spec.from_json(body))
    async with pool.acquire() as conn:
        user = await viewer(conn, request)
        if user is None:
            return error("Sign in first.", "UNAUTHENTICATED")
        rows = await conn.fetch(built.sql, user["id"], built.limit)
    return Response(built.render(rows), media_type="application/json")


def create_app(database_url: str, pool_max: int = 20) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_max)
        try:
            yield
        finally:
            await app.state.pool.close()

    routes = [
        Route("/list", list_videos, methods=["GET", "POST"]),
        Route("/enqueue", enqueue, methods=["POST"]),
        Route("/page", page, methods=["POST"]),
        Route("/ids", list_ids, methods=["GET"]),
        Route("/viewer", viewer_id, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def app_from_env() -> Starlette:
    """For ``uvicorn --factory bench.bare_app:app_from_env`` (``BENCH_DATABASE_URL``)."""
    return create_app(os.environ["BENCH_DATABASE_URL"], int(os.environ.get("BENCH_POOL_MAX", "20")))
