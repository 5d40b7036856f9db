"""A webhook receiver over real HTTP on 127.0.0.1 (a bare ASGI app under uvicorn): records
every request, answers each from a script (a status, or hanging, or an endless body)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tests.api.conftest import serve

#: Script entries besides a status code.
HANG = "hang"  # read the request, never answer (until the test ends)
ENDLESS_500 = "endless-500"  # a 500 whose body never ends


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answer: int | str

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """``script``: answers in order, then ``default``; ``extra_headers``: sent with each."""

    script: deque[int | str | tuple[int, dict[str, str]]] = field(default_factory=deque)
    default: int = 204
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self, *answers: int | str | tuple[int, dict[str, str]]) -> None:
        self.script.extend(answers)

    async def wait_for(self, count: int, seconds: float = 30.0) -> list[Received]:
        """Until ``count`` requests arrived (the test fails after ``seconds``)."""
        async with asyncio.timeout(seconds):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self._release.set()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        answer: int | str | tuple[int, dict[str, str]] = (
            self.script.popleft() if self.script else self.default
        )
        extra: dict[str, str] = {}
        if isinstance(answer, tuple):
            answer, extra = answer
        self.requests.append(Received(headers, body, answer))
        self._arrived.set()
        if answer == HANG:
            await self._release.wait()
            return
        if answer == ENDLESS_500:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            while not self._release.is_set():
                chunk = b"error " * 1000
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await asyncio.sleep(0.01)
            return
        raw = [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": int(answer), "headers": raw})
        await send({"type": "http.response.body", "body": b"no" if int(answer) >= 300 else b""})


@contextlib.asynccontextmanager
async def receiving(path: str = "/hooks/vidgen") -> AsyncIterator[Receiver]:
    """A :class:`Receiver` served on a free 127.0.0.1 port; ``receiver.url`` is its URL."""
    receiver = Receiver()
    async with serve(receiver) as base:
        receiver.url = base + path
        try:
            yield receiver
        finally:
            receiver._release.set()
