"""The Starlette application: GraphQL (HTTP + WebSocket), webhooks, media, health, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vidgen import db, logs
from vidgen.jobs import cpu
from vidgen.runtime import Runtime
from vidgen.settings import Settings
from vidgen.web.metrics import count_request, route_template

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    embedded_worker: bool | None = None,
    manage_database: bool = True,
) -> Starlette:
    """Build the ASGI app.

    Args:
        settings: the configuration.
        runtime: shared resources; built from the settings when not given.
        embedded_worker: run a job worker inside this process (default: the settings decide,
            on for SQLite, off otherwise).
        manage_database: open (and, on SQLite, migrate) the database in the lifespan. Tests
            that already opened it pass False.
    """
    settings.check()
    runtime = runtime or Runtime.create(settings)
    run_worker = settings.run_embedded_worker if embedded_worker is None else embedded_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_database:
            await db.init(settings, run_migrations=settings.is_sqlite)
        await runtime.open()
        worker = None
        if run_worker:
            from vidgen.jobs.worker import start_embedded

            worker = await start_embedded(runtime)
        logger.info(
            "vidgen ready",
            extra={"action": "startup", "embedded_worker": run_worker},
        )
        try:
            with serving_gc():
                yield
        finally:
            if worker is not None:
                await worker.stop()
                # Its jobs have ended or been handed back: end the media processes too.
                await asyncio.to_thread(cpu.shutdown)
            await _close_subscriptions(app)
            await runtime.close()
            if manage_database:
                await db.close()

    routes = build_routes(runtime)
    view = _graphql_view(routes)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                RequestMiddleware,
                graphql=view,
                max_body=settings.max_request_bytes,
            )
        ],
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.graphql_view = view
    return app


#: The youngest generation is collected after this many more allocations than
#: deallocations (CPython's default: 700).
GC_YOUNG_THRESHOLD = 7000


@contextlib.contextmanager
def serving_gc() -> Iterator[None]:
    """The garbage collector's set-up while the app serves.

    Once started, the process holds a large, long-lived heap (the schema, graphql-core's
    types, the ORM's models, imported modules) that every full collection would traverse
    again, while one list request allocates thousands of short-lived objects: with
    CPython's defaults the collector took about 1 ms of every list request's CPU time.
    So what exists at start-up is collected once and frozen (``gc.freeze``: left out of
    later collections; it lives as long as the process anyway), and the youngest
    generation is collected every :data:`GC_YOUNG_THRESHOLD` net allocations instead of 700
    (fewer request objects survive into older generations). Collection itself is unchanged
    (cycles are still found and freed). When the last app of the process stops serving
    (tests run several), both settings are restored.
    """
    if not _gc_before:
        _gc_before.append(gc.get_threshold())
        gc.collect()
        gc.freeze()
        young, *older = _gc_before[0]
        gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
    _gc_before.append(None)  # one more app serving
    try:
        yield
    finally:
        _gc_before.pop()
        if len(_gc_before) == 1:
            gc.set_threshold(*_gc_before.pop())
            gc.unfreeze()


# [the thresholds before the first app served, then None per app serving]
_gc_before: list[Any] = []


async def _close_subscriptions(app: Starlette) -> None:
    closer = getattr(app.state, "close_subscriptions", None)
    if closer is not None:
        await closer()


def build_routes(runtime: Runtime) -> list[BaseRoute]:
    from vidgen.graphql.view import graphql_routes
    from vidgen.web.health import health_routes
    from vidgen.web.media import media_routes
    from vidgen.web.metrics import metrics_routes
    from vidgen.web.pages import page_routes
    from vidgen.web.webhooks import webhook_routes

    settings = runtime.settings
    # /graphql first: the router tries the routes in order, and nearly every request is
    # for it (no other route's path overlaps it).
    routes: list[BaseRoute] = []
    routes += graphql_routes(runtime)
    routes += health_routes(runtime)
    routes += webhook_routes(runtime)
    routes += media_routes(
        runtime.storage, settings.resolved_secret_key, redirect=settings.media_redirect
    )
    routes += metrics_routes(runtime)
    routes += page_routes(runtime)
    return routes


def _graphql_view(routes: list[BaseRoute]) -> Any:
    """The view serving ``POST /graphql`` (for :class:`RequestMiddleware`'s lane), or None."""
    for route in routes:
        if isinstance(route, Route) and route.path == GRAPHQL_PATH:
            endpoint = route.endpoint
            if getattr(endpoint, "compiled", None) is not None:
                return endpoint
    return None


GRAPHQL_PATH = "/graphql"


class RequestMiddleware:
    """Around every request, as one pure ASGI layer (one call and one ``send`` wrapper per
    request, not one per concern):

    - an id for the logs (X-Request-ID when the client sent a sane one), echoed in the
      response;
    - the count of HTTP requests by route template, method and status (500 when the app
      raised before answering), for ``/metrics``;
    - the lane of hot GraphQL requests: a ``POST /graphql`` with a JSON body of a declared
      length within ``max_body`` goes straight to the view (``graphql``), which answers it
      from its document's compiled plan (``GraphQLView.answer_json``) without Starlette's
      routing, exception layer, body limit, CSRF guard and response objects in between:
      none of them has anything to do for such a request (the body limit and the guard
      refuse only longer bodies and multipart ones). A request without a plan goes on
      through the whole app as any other, its body handed out again.
    """

    def __init__(self, app: ASGIApp, graphql: Any = None, max_body: int = 0) -> None:
        self.app = app
        self.graphql = graphql
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        incoming = b""
        # The lane's headers (the first of each, as Starlette's Headers.get answers).
        content_type = length = authorization = None
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                incoming = value  # the last one, as a dict of the headers would keep
            elif name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"content-length":
                if length is None:
                    length = value
            elif name == b"authorization" and authorization is None:
                authorization = value
        text = incoming.decode("latin-1")
        rid = text if 0 < len(text) <= 64 and text.isascii() else os.urandom(16).hex()
        header = (b"x-request-id", rid.encode())
        token = logs.request_id.set(rid)
        # Before the app runs: routing may change the scope (a mount's root_path).
        route = route_template(scope) if kind == "http" else ""
        status = 500
        if kind == "websocket":
            # The server's own send, for the live fan-out's writer (graphql/live_fanout.py):
            # its messages skip the wrappers below, which only look at HTTP responses.
            scope["vidgen.ws_send"] = send

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            if (
                route == GRAPHQL_PATH
                and self.graphql is not None
                and scope["method"] == "POST"
                and length is not None
                and content_type is not None
                and _json(content_type)
                and _within(length, self.max_body)
            ):
                answered, receive = await self.graphql.answer_json(
                    scope,
                    receive,
                    send,
                    "" if authorization is None else authorization.decode("latin-1"),
                    header,
                )
                if answered is not None:
                    status = answered
                    return
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)
            if kind == "http":
                count_request(route, scope.get("method", ""), status)


def _json(content_type: bytes) -> bool:
    """Whether a Content-Type value is ``application/json`` (parameters aside, any case)."""
    return content_type.partition(b";")[0].strip().lower() == b"application/json"


def _within(length: bytes, limit: int) -> bool:
    """Whether a Content-Length value is a length of at most ``limit`` bytes."""
    return length.isdigit() and int(length) <= limit


def app_from_env() -> Starlette:
    """An app configured from the environment alone, for ``uvicorn --factory`` (tests, benches,
    process managers): ``uvicorn --factory vidgen.web.app:app_from_env``."""
    settings = Settings()
    logs.configure(settings.log_level, json_lines=settings.log_json)
    return create_app(settings)
