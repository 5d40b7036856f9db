"""GraphQL over HTTP and WebSocket at ``/graphql``.

One :class:`GraphQLView` (a ``strawberry.asgi.GraphQL``) serves both. Around its HTTP side:

- a CSRF guard: multipart bodies (file uploads) are CORS-"simple" requests that any web
  page could send, so a multipart POST must carry ``Apollo-Require-Preflight`` (or another
  header a browser only sends after a CORS preflight: ``X-Apollo-Operation-Name``),
  else 400;
- a body limit: Starlette's ``max_body_size`` refuses bodies over ``max_request_bytes``
  with 413, from ``Content-Length`` up front or while counting streamed bytes, before the
  body is read whole.

WebSockets speak ``graphql-transport-ws`` only (legacy ``graphql-ws`` when the setting
allows it) and authenticate ``connection_init``'s payload; each operation re-checks the
token when the last check is older than ``ws_reauth_seconds``; see :mod:`.context`.

When the database cannot check a request's token (an outage), nothing runs: HTTP answers
503 with ``Retry-After`` and a GraphQL body (one error, code ``INTERNAL``, with an
``errorId``), and a WebSocket's ``connection_init`` closes the socket with 1013 "Try Again
Later" (graphql-ws clients reconnect with backoff on it; 4500 would make them give up). The
failure is logged in full under the same error id. A request whose token check succeeds
pays nothing for this: it all lives in exception handlers.

On every transport, a document with several operations and no ``operationName``, or an
``operationName`` that names none of them, runs nothing and answers BAD_USER_INPUT (field
``operationName``), as the GraphQL spec asks: Strawberry would run the first operation,
even a mutation, or (HTTP) answer an unknown name with a plain-text 400. What Strawberry does
with malformed bodies and messages, and why it is answered here: docs/library-notes.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from contextlib import nullcontext
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError, OperationDefinitionNode, parse
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketDisconnected as StarletteDisconnected
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from vidgen import db
from vidgen.graphql import live_fanout, subscriptions
from vidgen.graphql.compiled import plans_for
from vidgen.graphql.compiled.mutation import MutationPlan
from vidgen.graphql.context import Context
from vidgen.graphql.event_results import results_for
from vidgen.graphql.schema import build_schema
from vidgen.jobs import transient
from vidgen.runtime import Runtime
from vidgen.web import pages

logger = logging.getLogger(__name__)

PREFLIGHT_HEADERS = ("apollo-require-preflight", "x-apollo-operation-name")

# The answers to a request whose token the database could not check (see the docstring).
UNAVAILABLE_MESSAGE = (
    "The service is temporarily unavailable: its database did not answer. Try again shortly."
)
RETRY_AFTER_SECONDS = 5
WS_INTERNAL_ERROR = 1011  # RFC 6455 "Internal Error"
WS_TRY_AGAIN_LATER = 1013  # RFC 6455 "Try Again Later": clients reconnect, with backoff
WS_UNAVAILABLE_REASON = "database unavailable; try again later"

# Strawberry's encoding (compact separators), minus the circular-reference bookkeeping of
# every dict and list: a result is a tree (some subtrees shared, none cyclic).
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)


class CsrfGuard:
    """Refuse multipart POSTs that a browser could send without a CORS preflight."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and _multipart(scope):
            headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
            if not any(headers.get(name, b"").strip() for name in PREFLIGHT_HEADERS):
                body = {
                    "errors": [
                        {
                            "message": "Multipart requests must carry the header "
                            "'Apollo-Require-Preflight: true' (CSRF protection).",
                            "extensions": {"code": "BAD_USER_INPUT"},
                        }
                    ]
                }
                response = Response(
                    json.dumps(body), status_code=400, media_type="application/json"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _multipart(scope: Scope) -> bool:
    """Whether the request's (last) Content-Type is ``multipart/…``, any case."""
    content_type = b""
    for name, value in scope.get("headers", ()):
        if len(name) == 12 and name.lower() == b"content-type":
            content_type = value
    return content_type[:10].lower() == b"multipart/"


class _TokenCheckFailed(Exception):
    """The database could not check a request's token: the request runs nothing.

    ``transient``: the database was unreachable (an outage: 503, try again); otherwise an
    unexpected error (a bug: 500, the same INTERNAL body, no promise that a retry helps).
    """

    def __init__(self, error_id: str, *, transient: bool = True) -> None:
        super().__init__(error_id)
        self.error_id = error_id
        self.transient = transient


def _token_check_failed(transport: str) -> _TokenCheckFailed:
    """Log the exception being handled (an outage, usually) in full under a new error id,
    and return the exception that answers the request."""
    error_id = uuid.uuid4().hex[:12]
    exc = sys.exc_info()[1]
    logger.error(
        "token check failed (database unavailable?); the %s request ran nothing [%s]",
        transport,
        error_id,
        exc_info=True,
        extra={"action": "graphql.auth_unavailable", "error_id": error_id},
    )
    return _TokenCheckFailed(error_id, transient=exc is None or transient.is_transient(exc))


def _ws_close(failure: _TokenCheckFailed) -> tuple[int, str]:
    """The close code and reason: an outage says try again later (clients reconnect), a bug
    is an internal error (RFC 6455 1011)."""
    if failure.transient:
        return WS_TRY_AGAIN_LATER, WS_UNAVAILABLE_REASON
    return WS_INTERNAL_ERROR, f"internal error [{failure.error_id}]"


def _unavailable_response(failure: _TokenCheckFailed) -> Response:
    message = UNAVAILABLE_MESSAGE if failure.transient else "Internal server error."
    body = {
        "errors": [
            {"message": message, "extensions": {"code": "INTERNAL", "errorId": failure.error_id}}
        ]
    }
    headers = {"Cache-Control": "no-store"}
    if failure.transient:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return Response(
        _JSON.encode(body),
        status_code=503 if failure.transient else 500,
        media_type="application/json",
        headers=headers,
    )


def _message_problem(message: Any) -> str | None:
    """Why a graphql-transport-ws message is malformed, or None. Strawberry indexes
    messages as it expects them to be; other shapes failed inside it (the socket dropped
    without a close code, or an operation silently went unanswered)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "A message must be a JSON object with a string 'type'."
    kind = message["type"]
    if kind in ("subscribe", "complete") and not isinstance(message.get("id"), str):
        return f"A {kind} message needs a string 'id'."
    if kind == "subscribe":
        payload = message.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return "A subscribe message needs a payload object with a string 'query'."
        for key, kinds in (
            ("variables", dict),
            ("extensions", dict),
            ("operationName", str),
        ):
            if not isinstance(payload.get(key), kinds | type(None)):
                return f"A subscribe payload's '{key}' must be a {kinds.__name__} or null."
    return None


def _client_gone(error: BaseException) -> bool:
    """A send failed because the client already went away: not an error of ours. (Strawberry
    turns Starlette's ``WebSocketDisconnect`` into its ``WebSocketDisconnected``; Starlette
    raises its own ``WebSocketDisconnected`` for a send after the socket was closed, and
    uvicorn an ``OSError`` subclass when the peer is gone.)"""
    return isinstance(
        error, WebSocketDisconnected | WebSocketDisconnect | StarletteDisconnected | OSError
    )


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with every message's shape checked first: a malformed one
    closes the socket with 4400 and the reason, as the protocol asks. Every operation
    starts as the viewer the socket's token names now (:meth:`Context.refresh_viewer`).

    A client that goes away while its operations still send is not an error: no traceback,
    one DEBUG line per socket (however many operations it had); uvicorn's "connection
    closed" is the socket's one INFO line. Ten thousand sockets closing at once used to log
    thousands of "Exception in worker task" tracebacks.
    """

    _gone_logged = False
    # ``videoUpdated`` subscriptions served by the process's fan-out (graphql/live_fanout.py)
    # instead of an operation task each: their records by id, and the socket's writer.
    _fast: dict[str, Any] | None = None
    _conn: Any = None

    async def handle_task_exception(self, error: Exception) -> None:
        if not _client_gone(error):
            await super().handle_task_exception(error)
            return
        self._log_gone(error)

    def note_send_failure(self, error: Exception) -> None:
        """The fan-out's writer could not write to this socket."""
        if _client_gone(error):
            self._log_gone(error)
        else:
            logger.error("websocket send failed", exc_info=error, extra={"action": "ws_send"})

    def _log_gone(self, error: Exception) -> None:
        if not self._gone_logged:
            self._gone_logged = True
            logger.debug(
                "websocket closed by the client while sending (%s)",
                type(error).__name__,
                extra={"action": "ws_client_gone", "operations": len(self.operations)},
            )

    async def handle_message(self, message: Any) -> None:
        problem = _message_problem(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except _TokenCheckFailed as exc:
            await self.websocket.close(*_ws_close(exc))

    async def handle_subscribe(self, message: Any) -> None:
        op_id = message["id"]
        if not self.connection_acknowledged or op_id in self.operations:
            await super().handle_subscribe(message)  # 4401, 4409
            return
        if self._fast and op_id in self._fast:
            await self.websocket.close(code=4409, reason=f"Subscriber for {op_id} already exists")
            return
        limit = self.max_subscriptions_per_connection
        if limit is not None and len(self.operations) + len(self._fast or ()) >= limit:
            error = GraphQLError("Subscription limit reached")  # as the base handler answers
            await self.send_message({"id": op_id, "type": "error", "payload": [error.formatted]})
            return
        if not self._fan_out(message):
            await super().handle_subscribe(message)

    def _fan_out(self, message: Any) -> bool:
        """Serve this subscribe from the process's fan-out when it can (see
        graphql/live_fanout.py); False: it runs as a Strawberry operation."""
        view = self.view
        plans = getattr(view, "compiled", None)
        if plans is None:
            return False
        payload = message["payload"]
        query = payload["query"]
        if "videoUpdated" not in query:  # cheap check first
            return False
        name = payload.get("operationName")
        variables = payload.get("variables")
        plan = plans.event_plan(query, name)
        if plan is None:
            return False
        video_id = live_fanout.video_id_of(plan, variables)
        if video_id is None:
            return False
        fanout = view.fanout(self.context)
        if self._conn is None:
            self._conn = fanout.connection(self)
            self._fast = {}
        op_id = message["id"]
        record = live_fanout.Record(self._conn, op_id, plan, video_id, query, name, variables)
        assert self._fast is not None
        self._fast[record.id] = record
        fanout.join(record)
        return True

    def fast_ended(self, op_id: str) -> None:
        if self._fast is not None:
            self._fast.pop(op_id, None)

    def start_operation(
        self, op_id: str, query: str, variables: Any, operation_name: str | None
    ) -> None:
        """Run a subscription the fan-out handed back as a Strawberry operation (as the
        base handler starts one)."""
        operation = Operation(self, op_id, query, variables, operation_name)
        operation.task = asyncio.create_task(self.run_operation(operation))
        operation.task.add_done_callback(self._task_done)
        self.operations[op_id] = operation

    async def handle_complete(self, message: Any) -> None:
        record = self._fast.get(message["id"]) if self._fast else None
        if record is not None:
            record.conn.fanout.cancel(record)
            return
        await super().handle_complete(message)

    async def shutdown(self) -> None:
        if self._conn is not None:
            self._conn.close()
        await super().shutdown()

    async def run_operation(self, operation: Any) -> None:
        # Runs in the operation's own task: a due token re-check holds up this operation
        # only, never the socket's message loop. The operation also gets its own loaders
        # (bound to this task): the connection's would serve rows cached by any earlier
        # operation on the socket, however old (a subscription renews them per event).
        self.context.fresh_loaders()
        problem = _unnamed_choice(operation.query, operation.operation_name, self.view)
        if problem is not None:
            await operation.send_initial_errors([_operation_name_error(problem)])
            return
        try:
            await self.context.refresh_viewer()
        except Exception:  # noqa: BLE001 - a database blip: the next operation retries
            logger.warning(
                "token re-check failed; running the operation as the last known viewer",
                exc_info=True,
                extra={"action": "ws_reauth_failed"},
            )
        await super().run_operation(operation)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """Legacy graphql-ws (opt-in): a start whose document leaves the operation to pick
    answers an error message and runs nothing, as on the other transports."""

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except _TokenCheckFailed as exc:
            payload = {
                "message": UNAVAILABLE_MESSAGE if exc.transient else "Internal server error.",
                "code": "INTERNAL",
                "errorId": exc.error_id,
            }
            await self.send_message({"type": "connection_error", "payload": payload})
            await self.websocket.close(*_ws_close(exc))

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        problem = _unnamed_choice(query, operation_name, self.view)
        if problem is None:
            await super().handle_async_results(operation_id, query, operation_name, variables)
            return
        try:
            error = _operation_name_error(problem)
            await self.send_message(
                {"type": "error", "id": operation_id, "payload": error.formatted}
            )
        finally:
            self.tasks.pop(operation_id, None)  # as the handler does when an operation ends


class GraphQLView(GraphQL):
    """The Strawberry ASGI view with vidgen's context and WebSocket authentication."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, schema: BaseSchema, runtime: Runtime, *, compiled: bool = True) -> None:
        settings = runtime.settings
        protocols = [GRAPHQL_TRANSPORT_WS_PROTOCOL]
        if settings.legacy_graphql_ws:
            protocols.append(GRAPHQL_WS_PROTOCOL)
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            subscription_protocols=protocols,
            multipart_uploads_enabled=True,
            allowed_origins=list(settings.ws_allowed_origins),
        )
        self.runtime = runtime
        # Hot documents answered from compiled plans (vidgen.graphql.compiled), the rest by
        # Strawberry; None: every request through Strawberry.
        self.compiled = plans_for(schema, settings) if compiled else None
        self._event_results = results_for(schema._schema)  # type: ignore[attr-defined]
        self._fanout: live_fanout.FanOut | None = None

    def fanout(self, context: Context) -> live_fanout.FanOut:
        """The process's fan-out of ``videoUpdated`` subscriptions (graphql/live_fanout.py)."""
        shared = subscriptions.shared_of(context)
        if self._fanout is None or self._fanout.shared is not shared:
            self._fanout = live_fanout.fanout_for(
                self.runtime.bus, shared, self.runtime.settings, self.schema
            )
        return self._fanout

    def encode_json(self, data: object) -> str:
        # A subscription's ``next`` whose data is a shared event result (graphql/
        # event_results.py): that data is encoded once for all its subscribers and only
        # the subscription id differs, spliced in here. Anything else is encoded as usual.
        if type(data) is dict and data.get("type") == "next":
            payload = data.get("payload")
            if type(payload) is dict and len(payload) == 1 and payload.get("data") is not None:
                text = self._event_results.encoded(payload["data"], _JSON.encode)
                if text is not None:
                    op_id = _JSON.encode(data["id"])
                    return f'{{"id":{op_id},"type":"next","payload":{{"data":{text}}}}}'
        return _JSON.encode(data)

    async def render_graphql_ide(self, request: Request) -> Response:  # type: ignore[override]
        # vidgen's own GraphiQL page: every asset from this server, under a strict CSP.
        return pages.graphiql_response()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # Strawberry's HTTP branch (no extra await per request), plus the outage answer; a
        # JSON POST whose document has a plan is answered from it (see _run_compiled).
        request = Request(scope=scope, receive=receive)
        try:
            response = None
            if (
                self.compiled is not None
                and scope.get("method") == "POST"
                and "vidgen.planless" not in scope
            ):
                response, request = await self._run_compiled(request)
            if response is None:
                response = await self.run(request)
        except HTTPException as exc:
            response = PlainTextResponse(exc.reason, status_code=exc.status_code)
        except _TokenCheckFailed as exc:  # from get_context, before anything ran
            response = _unavailable_response(exc)
        await response(scope, receive, send)

    async def _run_compiled(self, request: Request) -> tuple[Response | None, Request]:
        """The response from the document's compiled plan, or None: Strawberry answers
        (then with the body already read and the viewer already checked, see get_context),
        through the returned request. Only JSON bodies of the expected shape; anything else
        is Strawberry's to answer."""
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return None, request
        raw = await _read_body(request.receive)
        found = self._planned(raw)
        if found is None:
            return None, _replaying(request, raw)
        answer = await self._answer(request, found, request.headers.get("authorization"))
        if answer is None:
            return None, _replaying(request, raw)
        return Response(answer, media_type="application/json"), request

    async def answer_json(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        authorization: str | None,
        extra_header: tuple[bytes, bytes],
    ) -> tuple[int | None, Receive]:
        """Answer a JSON POST to ``/graphql`` from its document's plan, straight to the
        server: the lane of :class:`vidgen.web.app.RequestMiddleware`, taken only when the
        request says ``Content-Type: application/json`` and a ``Content-Length`` within
        ``max_request_bytes`` (so neither the CSRF guard nor the body limit has anything to
        refuse). Returns the status sent, or None and a ``receive`` that hands out the body
        already read: the whole app then answers (Strawberry, with the viewer already
        checked when a plan was found, as after :meth:`_run_compiled`).

        ``extra_header`` is added to the response's headers (the request id)."""
        if self.compiled is None:  # plans turned off (tests compare with Strawberry)
            return None, receive
        raw = await _read_body(receive)
        replay = _replayer(receive, raw)
        found = self._planned(raw)
        if found is None:
            scope["vidgen.planless"] = True  # the view need not look again
            return None, replay
        request = Request(scope, replay)
        try:
            answer = await self._answer(request, found, authorization)
        except _TokenCheckFailed as exc:
            response = _unavailable_response(exc)
            response.raw_headers.append(extra_header)
            await response(scope, replay, send)
            return response.status_code, replay
        if answer is None:
            scope["vidgen.planless"] = True
            return None, replay
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(answer)).encode()),
                    (b"content-type", b"application/json"),
                    extra_header,
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})
        return 200, replay

    def _planned(self, raw: bytes) -> tuple[Any, str, str | None, dict[str, Any] | None] | None:
        """(plan, query, operationName, variables) of a JSON body whose document has a
        plan, else None."""
        assert self.compiled is not None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict):
            return None
        query = body.get("query")
        operation_name = body.get("operationName")
        variables = body.get("variables")
        if (
            not isinstance(query, str)
            or not isinstance(operation_name, str | None)
            or not isinstance(variables, dict | None)
        ):
            return None
        plan = self.compiled.plan(query, operation_name)
        if plan is None:
            return None
        return plan, query, operation_name, variables

    async def _answer(
        self,
        request: Request,
        found: tuple[Any, str, str | None, dict[str, Any] | None],
        authorization: str | None,
    ) -> bytes | None:
        """The response body from a found plan, or None (the request's context, viewer
        checked, is then in its scope for Strawberry)."""
        assert self.compiled is not None
        plan, query, operation_name, variables = found
        # A compiled generateVideo's statements (the token check, the lookup, the insert)
        # share one pool connection, given back before the response is sent.
        scope = db.one_connection() if isinstance(plan, MutationPlan) else nullcontext()
        async with scope:
            context = await self._context(request, None, authorization)
            answer = await self.compiled.response(
                query, operation_name, variables, context.viewer, context
            )
        if answer is None:
            # For get_context. Only then: the context holds the request, whose scope would
            # hold the context, a cycle that only the garbage collector frees (it collected
            # a few thousand such objects a second at full load).
            request.scope["vidgen.context"] = context
        return answer

    def decode_json(self, data: str | bytes) -> object:
        try:
            return json.loads(data)
        except RecursionError as exc:
            # Nested deeper than the parser goes: not a request. As a decode error, HTTP
            # answers 400 and a WebSocket closes with 4400, like any other bad JSON.
            raise json.JSONDecodeError("nested too deeply", "", 0) from exc
        except UnicodeDecodeError as exc:
            # Bytes that are not UTF-8 (or -16/-32): not JSON either (was a 500).
            raise json.JSONDecodeError("not UTF-8", "", exc.start) from exc

    async def parse_http_body(self, request: Any) -> Any:
        # Strawberry assumes the JSON body, multipart ``operations`` and ``map`` have the
        # right shapes; anything else (``null``, ``[1]``, ``{"0": [1]}``) failed inside it
        # as a 500. Those are the client's mistakes: 400, as for unparsable JSON.
        try:
            return await super().parse_http_body(request)
        except (AttributeError, TypeError, IndexError, ValueError) as exc:
            # ValueError: a map path indexing a list with a non-number ("variables.a.x").
            raise HTTPException(
                400,
                "The body must be a GraphQL request: a JSON object with a string 'query', "
                "or a multipart request whose 'operations' is such an object and whose "
                "'map' maps file fields to lists of variable paths.",
            ) from exc

    async def execute_single(self, *args: Any, **kwargs: Any) -> Any:
        data = kwargs.get("request_data")
        query = getattr(data, "query", None)
        operation_name = getattr(data, "operation_name", None)
        if isinstance(query, str) and "subscription" in query:  # cheap check first
            if _operation_type(query, operation_name) == "subscription":
                raise HTTPException(
                    400,
                    "Subscriptions are served over WebSocket at /graphql "
                    "(graphql-transport-ws), not over HTTP.",
                )
        problem = _unnamed_choice(query, operation_name, self)
        if problem is not None:
            return ExecutionResult(data=None, errors=[_operation_name_error(problem)])
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as exc:
            cause = exc.__cause__
            if isinstance(cause, CannotGetOperationTypeError) and cause.operation_name is not None:
                # An operationName that names no operation: the client's mistake, answered
                # as a GraphQL error like on the WebSocket (not as a plain-text 400)
                return ExecutionResult(
                    data=None, errors=[_operation_name_error(cause.as_http_error_reason())]
                )
            raise

    async def get_context(  # type: ignore[override]
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        checked = request.scope.get("vidgen.context")
        if checked is not None:  # made (and the token checked) by _run_compiled
            checked.response = response if isinstance(response, Response) else None
            return checked  # type: ignore[no-any-return]
        return await self._context(request, response)

    async def _context(
        self,
        request: Request | WebSocket,
        response: Response | WebSocket | None,
        authorization: str | None = None,
    ) -> Context:
        context = Context(
            runtime=self.runtime,
            request=request,
            response=response if isinstance(response, Response) else None,
        )
        if isinstance(request, Request):
            try:
                if authorization is None:
                    authorization = request.headers.get("authorization")
                await context.authenticate(authorization)
            except Exception as exc:  # noqa: BLE001 - answered 503 by __call__, logged here
                raise _token_check_failed("HTTP") from exc
        else:  # one check per token at a time in the process, shared with subscriptions
            context.token_checks = subscriptions.shared_for(self.runtime.bus).tokens
        return context

    async def on_ws_connect(self, context: Context) -> Any:  # type: ignore[override]
        params = context.connection_params
        value = None
        if isinstance(params, dict):
            value = params.get("Authorization") or params.get("authorization")
        if not isinstance(value, str) or not value.strip():
            raise ConnectionRejectionError(
                {
                    "message": "Send {'Authorization': 'Bearer <token>'} in connection_init.",
                    "code": "UNAUTHENTICATED",
                }
            )
        try:
            viewer = await context.authenticate(value)
        except Exception as exc:  # noqa: BLE001 - the handlers close the socket (1013)
            raise _token_check_failed("WebSocket") from exc
        if viewer is None:
            raise ConnectionRejectionError(
                {"message": context.auth_error or "Invalid token.", "code": "UNAUTHENTICATED"}
            )
        return UNSET


async def _read_body(receive: Receive) -> bytes:
    """The whole request body, read from ``receive`` (not through ``Request.body()``: an
    async generator per request, registered with the event loop; a GraphQL request's body
    is usually one message)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replaying(request: Request, body: bytes) -> Request:
    """A request like ``request`` whose ``receive`` hands out ``body`` (already read) once,
    as one message, then passes on to the server's (a disconnect): for Strawberry, when it
    answers after all."""
    return Request(request.scope, _replayer(request.receive, body))


def _replayer(receive: Receive, body: bytes) -> Receive:
    """A ``receive`` that hands out ``body`` (already read) once, then passes on to
    ``receive``."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _operation_type(query: str, operation_name: str | None) -> str | None:
    """The type of the operation a request would run, or None when that is not clear (the
    schema's own checks then answer)."""
    try:
        document = parse(query)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return None
    return operations[0].operation.value


# A document with two operations or more has at least two of these words: each operation
# beside another one is named (validation refuses an anonymous one there), so it starts
# with its type's keyword.
_OPERATION_KEYWORDS = ("query", "mutation", "subscription")


def _unnamed_choice(query: Any, operation_name: Any, view: Any) -> str | None:
    """Why the request leaves the operation to run unsaid (several operations and no
    ``operationName``), or None. Parses the document only when its text has two
    operation keywords or more (the usual one-operation request costs three scans)."""
    if operation_name is not None or not isinstance(query, str):
        return None
    if sum(query.count(word) for word in _OPERATION_KEYWORDS) < 2:
        return None
    max_tokens = view.runtime.settings.max_query_tokens
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError:
        return None  # the schema's own parse answers it
    names = [
        d.name.value if d.name else "(anonymous)"
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]
    if len(names) < 2:
        return None
    return (
        f"The document has {len(names)} operations ({', '.join(names)}); "
        "name the one to run in operationName."
    )


def _operation_name_error(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT", "field": "operationName"})


def graphql_routes(runtime: Runtime, schema: BaseSchema | None = None) -> list[BaseRoute]:
    """The ``/graphql`` routes: HTTP (guarded and size-limited) and WebSocket."""
    view = GraphQLView(schema or build_schema(runtime.settings), runtime)
    return [
        Route(
            "/graphql",
            view,
            middleware=[Middleware(CsrfGuard)],
            max_body_size=runtime.settings.max_request_bytes,
        ),
        WebSocketRoute("/graphql", view),
    ]
