"""A client that goes away while its subscriptions still send is not an error of the server:
the handler logs no traceback (at most one DEBUG line per socket); a real bug still logs."""

from __future__ import annotations

import logging

import pytest
from starlette.websockets import WebSocketDisconnect
from starlette.websockets import WebSocketDisconnected as StarletteDisconnected
from strawberry.http.exceptions import WebSocketDisconnected

from vidgen.graphql.view import TransportWSHandler


def handler() -> TransportWSHandler:
    # Only what handle_task_exception reads: no socket is needed to decide how to log.
    made = object.__new__(TransportWSHandler)
    made.operations = {}
    made.task_logger = logging.getLogger("strawberry.execution")
    return made


GONE = [
    WebSocketDisconnected(),  # Strawberry's, from Starlette's WebSocketDisconnect
    WebSocketDisconnect(1006),
    StarletteDisconnected('Cannot call "send" once a close message has been sent.'),
    ConnectionResetError("peer gone"),  # uvicorn's ClientDisconnected is an OSError
]


@pytest.mark.parametrize("error", GONE, ids=lambda e: type(e).__name__)
async def test_a_client_gone_is_no_error_and_logged_once_per_socket(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    socket = handler()
    for _ in range(10):  # ten operations of one socket failing to send
        await socket.handle_task_exception(error)
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    assert [r.message for r in caplog.records if r.levelno == logging.DEBUG] == [
        f"websocket closed by the client while sending ({type(error).__name__})"
    ]


async def test_any_other_failure_still_logs_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    await handler().handle_task_exception(ValueError("a bug"))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
