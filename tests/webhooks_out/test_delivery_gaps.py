"""Outgoing webhooks, the cases the other delivery tests leave open: a receiver that is not
up yet (connection refused), a host name that stops resolving, and a name that resolved to a
public address when the video was made but to a private one when the event is sent.

Names are resolved through a stand-in for ``socket.getaddrinfo`` (what the event loop's
resolver calls, see ``vidgen.webhooks_out.addresses.resolve``) that answers for the names
below and hands every other lookup to the real one; connections are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn

from tests.api.conftest import _Server
from tests.webhooks_out.conftest import SHORT_TIMEOUT, deliveries, generate, secret_of
from tests.webhooks_out.receiver import Receiver, receiving
from tests.webhooks_out.running import delivering, settled
from tests.webhooks_out.standard_webhooks import verify

NAME = "hooks.vidgen-gaps.example"


class FakeDns:
    """``socket.getaddrinfo`` answering for :data:`NAME` from ``addresses`` (None: the name
    does not resolve); every lookup of the name is counted."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.addresses: list[str] | None = None
        self.lookups = 0
        self.stall = threading.Event()  # set: lookups of the name wait for ``unstall``
        self.unstall = threading.Event()
        self.answered = 0

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (NAME, NAME.encode()):
            return self.real(host, port, *args, **kwargs)
        self.lookups += 1
        if self.stall.is_set():
            self.unstall.wait(30)
        self.answered += 1
        if self.addresses is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (ip, int(port or 0)),
            )
            for ip in self.addresses
        ]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    fake = FakeDns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    try:
        yield fake
    finally:
        fake.unstall.set()  # no resolver thread left waiting


def _reserved_port() -> socket.socket:
    """A socket bound to a 127.0.0.1 port and not listening: connecting to it is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def _listening(app: Receiver, sock: socket.socket) -> AsyncIterator[None]:
    """Serve ``app`` on the already bound ``sock`` (uvicorn makes it listen)."""
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        yield
    finally:
        app._release.set()
        server.stop()
        await asyncio.wait_for(task, timeout=10)


async def _until_failed(server, account, video_id: str, attempts: int) -> dict[str, Any]:
    """The video's only delivery once it has been tried ``attempts`` times and its last
    failure recorded (30 s at most). ``attempts`` counts claims, the one in flight too."""
    async with asyncio.timeout(30):
        while True:
            [seen] = (await deliveries(server, account, video_id))["webhookDeliveries"]
            failed = seen["lastError"] is not None and seen["nextAttemptAt"] is not None
            if failed and seen["attempts"] >= attempts:
                return seen
            await asyncio.sleep(0.05)


async def test_a_receiver_not_up_yet_is_retried_until_it_is(server, alice) -> None:
    sock = _reserved_port()
    port = sock.getsockname()[1]
    video = await generate(
        server, alice, prompt="succeed", webhookUrl=f"http://127.0.0.1:{port}/hooks"
    )
    receiver = Receiver()
    try:
        async with delivering(server.runtime):
            failing = await _until_failed(server, alice, video["id"], attempts=3)
            assert failing["status"] == "PENDING" and failing["deliveredAt"] is None
            assert failing["lastError"].startswith("could not connect"), failing
            async with _listening(receiver, sock):
                [got] = await receiver.wait_for(1)
                await settled()
    finally:
        sock.close()
    [seen] = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
    assert seen["status"] == "DELIVERED" and seen["deliveredAt"] is not None
    assert seen["attempts"] >= 3  # two refused at least, then the one that arrived
    assert seen["eventId"] == got.webhook_id
    event = verify(await secret_of(server, alice), got.headers, got.body)
    assert event["data"]["status"] == "QUEUED" and event["data"]["id"] == video["id"]


async def test_a_name_that_stops_resolving_is_retried_never_delivered(
    server, receiver, alice, dns: FakeDns
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    dns.addresses = ["127.0.0.1"]  # resolves when the client gives the URL
    url = f"http://{NAME}:{port}/hooks/vidgen"
    video = await generate(server, alice, prompt="succeed", webhookUrl=url)
    assert dns.lookups == 1
    dns.addresses = None  # then the name goes away
    async with delivering(server.runtime):
        failing = await _until_failed(server, alice, video["id"], attempts=3)
        assert receiver.requests == []
        assert failing["status"] == "PENDING" and failing["deliveredAt"] is None
        assert failing["lastError"].startswith("could not resolve the host"), failing
        assert dns.lookups >= 1 + 2  # looked up again at every attempt
        # It comes back: the next attempt goes to the address it resolves to, by name.
        dns.addresses = ["127.0.0.1"]
        [got] = await receiver.wait_for(1)
        await settled()
    assert got.headers["host"] == f"{NAME}:{port}"
    [seen] = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
    assert (seen["status"], seen["eventId"]) == ("DELIVERED", got.webhook_id)
    assert seen["attempts"] >= 3


@pytest.mark.parametrize(
    ("at_send", "says"),
    [
        (["10.0.0.7"], "10.0.0.7 is a loopback, private, link-local or reserved address"),
        (["127.0.0.1"], "127.0.0.1 is a loopback, private, link-local or reserved address"),
        # One public address beside a private one is no way around the rule.
        (["1.1.1.1", "192.168.4.2"], "192.168.4.2 is a loopback, private"),
        (["169.254.169.254"], "169.254.169.254 is a cloud metadata address"),
        # A private IPv4 address inside an IPv6 one is still that private address.
        (["::ffff:10.0.0.7"], "10.0.0.7 is a loopback, private"),
        (["64:ff9b::a9fe:a9fe"], "169.254.169.254 is a cloud metadata address"),
    ],
)
async def test_a_name_turned_private_is_refused_at_send_time(
    server, alice, dns: FakeDns, at_send: list[str], says: str
) -> None:
    server.settings.webhook_allow_private = False
    dns.addresses = ["1.1.1.1"]  # public when the client gives the URL: taken
    video = await generate(
        server, alice, prompt="succeed", webhookUrl=f"https://{NAME}/hooks/vidgen"
    )
    dns.addresses = at_send  # and private when the event is sent (DNS rebinding)
    async with delivering(server.runtime):
        await settled()
    [seen] = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
    assert (seen["status"], seen["attempts"]) == ("FAILED", 1)  # refused, not retried
    assert seen["deliveredAt"] is None and seen["nextAttemptAt"] is None
    assert seen["lastError"].startswith(f"refused: {NAME} resolves to {says}"), seen


async def test_a_redirect_is_not_followed_and_ends_the_event(server, alice) -> None:
    """A receiver answering 3xx: the event is given up (not retried), and the place it
    points to never gets a request (it could be anywhere, a private address included)."""
    async with receiving() as target, receiving() as receiver:
        receiver.answer((307, {"location": target.url}), (302, {"location": target.url}))
        first = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
        second = await generate(server, alice, prompt="succeed", webhookUrl=receiver.url)
        async with delivering(server.runtime):
            await receiver.wait_for(2)
            await settled()
        assert target.requests == []
    errors = []
    for video in (first, second):  # either may have been sent first
        [seen] = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
        assert (seen["status"], seen["attempts"]) == ("FAILED", 1)
        errors.append(seen["lastError"])
    assert sorted(errors) == [
        "HTTP 302: no (redirects are not followed)",
        "HTTP 307: no (redirects are not followed)",
    ]


async def test_a_resolver_that_hangs_cannot_hold_the_attempt(
    server, receiver, alice, dns: FakeDns
) -> None:
    """The attempt's timeout covers resolving the name too: while the resolver is stuck,
    the attempt ends at the timeout and is retried; once it answers, the event goes."""
    server.settings.webhook_timeout_seconds = SHORT_TIMEOUT
    port = receiver.url.split(":")[2].split("/")[0]
    dns.addresses = ["127.0.0.1"]
    video = await generate(
        server, alice, prompt="succeed", webhookUrl=f"http://{NAME}:{port}/hooks/vidgen"
    )
    answered_at_input = dns.answered
    dns.stall.set()
    async with delivering(server.runtime):
        failing = await _until_failed(server, alice, video["id"], attempts=1)
        # Recorded while the resolver had not answered any of the attempt's lookups.
        assert dns.answered == answered_at_input and dns.lookups > answered_at_input
        timeout = server.settings.webhook_timeout_seconds
        assert failing["lastError"] == f"no answer within {timeout:g} s"
        assert failing["status"] == "PENDING" and receiver.requests == []
        dns.stall.clear()
        dns.unstall.set()
        [got] = await receiver.wait_for(1)
        await settled()
    [seen] = (await deliveries(server, alice, video["id"]))["webhookDeliveries"]
    assert (seen["status"], seen["eventId"]) == ("DELIVERED", got.webhook_id)
