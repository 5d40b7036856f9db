"""The provider clients' transport (vidgen.providers.transport): the same answers and errors
as httpx's own transport, over fewer, reused connections."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.providers.conftest import provider_settings
from tests.simulators.server import aserve
from vidgen import eventloop
from vidgen.providers.http import build_client
from vidgen.providers.transport import PooledTransport

BIG = bytes(range(256)) * 12_000  # 3 MB: more than the read buffer's high-water mark


def pooled(max_connections: int = 4, **kwargs: Any) -> PooledTransport:
    return PooledTransport(max_connections=max_connections, keepalive_expiry=30.0, **kwargs)


def app(peers: list[Any] | None = None) -> Starlette:
    async def echo(request: Request) -> Response:
        if peers is not None:
            peers.append(request.client)
        body = await request.body()
        return JSONResponse(
            {"method": request.method, "length": len(body), "query": str(request.query_params)},
            headers={"x-twice": "a"},
        )

    async def big(request: Request) -> Response:
        return Response(BIG, media_type="application/octet-stream")

    async def chunked(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(50):
                yield f"part {i};".encode()

        return StreamingResponse(parts(), media_type="text/plain")

    async def missing(request: Request) -> Response:
        return JSONResponse({"error": "nope"}, status_code=404)

    async def slow(request: Request) -> Response:
        if peers is not None:
            peers.append(request.client)
        await asyncio.sleep(float(request.query_params.get("s", "0.1")))
        return Response(b"done")

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["GET", "POST", "HEAD"]),
            Route("/big", big),
            Route("/chunked", chunked),
            Route("/missing", missing),
            Route("/slow", slow),
        ]
    )


async def exchanges(client: httpx.AsyncClient) -> list[Any]:
    """The same requests through either transport: what came back."""
    out: list[Any] = []
    for method, path, body in (
        ("GET", "/echo?a=1&b=%C3%A9", None),
        ("POST", "/echo", b"x" * 1_500_000),
        ("HEAD", "/echo", None),
        ("GET", "/missing", None),
        ("GET", "/chunked", None),
        ("GET", "/big", None),
    ):
        response = await client.request(method, path, content=body)
        headers = {k: v for k, v in response.headers.items() if k not in {"date", "server"}}
        out.append((response.status_code, response.http_version, headers, response.content))
    async with client.stream("GET", "/big") as response:
        streamed = b"".join([chunk async for chunk in response.aiter_bytes(64 * 1024)])
    out.append(streamed)
    return out


async def test_same_answers_as_httpx_own_transport() -> None:
    async with aserve(app()) as url:
        async with httpx.AsyncClient(base_url=url) as reference:
            expected = await exchanges(reference)
        async with httpx.AsyncClient(base_url=url, transport=pooled()) as client:
            got = await exchanges(client)
    assert got == expected
    assert got[-1] == BIG


async def test_connections_are_kept_and_reused() -> None:
    peers: list[Any] = []
    transport = pooled(max_connections=4)
    async with aserve(app(peers)) as url, httpx.AsyncClient(base_url=url, transport=transport) as c:
        for _ in range(5):
            assert (await c.get("/echo")).status_code == 200
        assert transport.connections == 1
    assert len({(p.host, p.port) for p in peers}) == 1


async def test_at_most_max_connections_at_once() -> None:
    peers: list[Any] = []
    transport = pooled(max_connections=2)
    async with aserve(app(peers)) as url, httpx.AsyncClient(base_url=url, transport=transport) as c:
        responses = await asyncio.gather(*(c.get("/slow?s=0.05") for _ in range(8)))
        assert [r.content for r in responses] == [b"done"] * 8
        assert transport.connections <= 2
    assert len({(p.host, p.port) for p in peers}) == 2


async def test_a_full_pool_times_out_as_httpx_does() -> None:
    transport = pooled(max_connections=1)
    async with aserve(app()) as url, httpx.AsyncClient(base_url=url, transport=transport) as c:
        hanging = asyncio.create_task(c.get("/slow?s=5"))
        await asyncio.sleep(0.2)
        with pytest.raises(httpx.PoolTimeout):
            await c.get("/echo", timeout=httpx.Timeout(5.0, pool=0.2))
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        # The canceled request's connection is closed (mid-response), its place free.
        assert transport.connections == 0
        assert (await c.get("/echo")).status_code == 200


async def test_read_and_connect_errors_are_httpx_errors(unused_tcp_port: int) -> None:
    async with aserve(app()) as url, httpx.AsyncClient(base_url=url, transport=pooled()) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get("/slow?s=5", timeout=0.2)
        assert (await c.get("/echo")).status_code == 200  # a fresh connection
    async with httpx.AsyncClient(transport=pooled()) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{unused_tcp_port}/")
        with pytest.raises(httpx.UnsupportedProtocol):
            await c.get("ftp://127.0.0.1/")


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    """A server closes idle keep-alive connections whenever it likes (its own timeout), or
    says ``Connection: close``: the next request takes a new connection, no error."""
    await check_server_closes()


async def check_server_closes() -> None:
    accepted = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await read_request(reader)
        if accepted == 1:  # keep-alive by the headers, then closed while idle
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntwo")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = pooled()
    try:
        async with httpx.AsyncClient(transport=transport) as c:
            assert (await c.get(f"http://127.0.0.1:{port}/")).text == "one"
            await asyncio.sleep(0.2)  # the server has closed it by now
            assert (await c.get(f"http://127.0.0.1:{port}/")).text == "two"
            assert transport.connections == 0  # "Connection: close" honoured
            assert (await c.get(f"http://127.0.0.1:{port}/")).text == "two"
    finally:
        server.close()
        await server.wait_closed()
    assert accepted == 3


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vidgen test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_tls(tmp_path: Path) -> None:
    await check_tls(tmp_path)


async def check_tls(tmp_path: Path) -> None:
    server_ctx, client_ctx = self_signed(tmp_path)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                body = BIG[:300_000]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    transport = pooled(ssl_context=client_ctx)
    try:
        async with httpx.AsyncClient(transport=transport) as c:
            for _ in range(3):
                response = await c.get(url)
                assert response.content == BIG[:300_000]
                assert response.extensions["network_stream"].get_extra_info("ssl_object")
            assert transport.connections == 1
        # A certificate nobody vouches for is refused, as by httpx's own transport.
        async with httpx.AsyncClient(
            transport=pooled(ssl_context=ssl.create_default_context())
        ) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(url)
    finally:
        server.close()
        await server.wait_closed()


async def test_build_client_keeps_httpx_transport_behind_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = provider_settings("runway", "http://127.0.0.1:1")
    client = build_client(settings, "runway")
    assert isinstance(client._transport, PooledTransport)  # type: ignore[attr-defined]
    await client.aclose()
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    client = build_client(settings, "runway")
    assert not isinstance(client._transport, PooledTransport)  # type: ignore[attr-defined]
    await client.aclose()


def test_on_uvloop(tmp_path: Path) -> None:
    """The worker's loop (uvloop) gives the same answers, TLS included."""

    async def checks() -> None:
        async with aserve(app()) as url:
            async with httpx.AsyncClient(base_url=url) as reference:
                expected = await exchanges(reference)
            async with httpx.AsyncClient(base_url=url, transport=pooled()) as client:
                assert await exchanges(client) == expected
        await check_server_closes()
        await check_tls(tmp_path)

    eventloop.run(checks(), "uvloop")
