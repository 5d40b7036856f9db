"""One delivery attempt over HTTP, bounded in time and in bytes read.

The receiver's name is resolved here and every address is checked
(:func:`~vidgen.webhooks_out.addresses.resolve_allowed`) before the connection is made TO
THAT CHECKED ADDRESS: the URL's host is replaced by the address, and the name goes in the
``Host`` header and in TLS (SNI and the certificate check), so no second lookup could
answer differently (DNS rebinding). Connections are never reused: a kept-alive connection
to an address would otherwise serve another name that shares it, with a certificate checked
for the first. Redirects are not followed and the environment's proxies are not used.

The whole attempt, from resolving to the status line, is cut at ``timeout`` seconds,
however slowly a receiver trickles its answer; at most :data:`ERROR_BYTES` of a refusal's
body are read, for the delivery's ``lastError``.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass

import httpx

from vidgen.webhooks_out import addresses

ERROR_BYTES = 1024
#: How much of a refusal's body ``lastError`` keeps.
ERROR_TEXT = 200
#: Addresses of one name tried in turn when connecting fails.
MAX_ADDRESSES = 3
USER_AGENT = "vidgen-webhooks/1"


@dataclass(frozen=True, slots=True)
class Result:
    """How an attempt went: ``delivered``, or an ``error`` that is worth another attempt
    (``retry``) or not; ``retry_after``: the wait the receiver asked for, in seconds."""

    delivered: bool
    error: str | None = None
    retry: bool = False
    retry_after: float | None = None


def client(*, concurrency: int, timeout: float) -> httpx.AsyncClient:
    """The HTTP client of one process's deliveries (see the module docstring)."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=0),
    )


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _printable(data: bytes) -> str:
    """A refusal's body as one short line (no NULs, controls or runs of spaces)."""
    text = data.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:ERROR_TEXT]


async def _answer(response: httpx.Response) -> Result:
    status = response.status_code
    if 200 <= status < 300:
        return Result(delivered=True)
    read = b""
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= ERROR_BYTES:
            break
    error = f"HTTP {status}"
    if read and "content-encoding" not in response.headers:
        error += f": {_printable(read[:ERROR_BYTES])}"
    retry = status == 429 or status >= 500
    after = _retry_after(response.headers.get("retry-after")) if retry else None
    if 300 <= status < 400:
        error += " (redirects are not followed)"
    return Result(delivered=False, error=error, retry=retry, retry_after=after)


async def _post(
    http: httpx.AsyncClient,
    url: httpx.URL,
    ips: list[addresses.IPAddress],
    body: bytes,
    headers: dict[str, str],
) -> Result:
    failure: httpx.ConnectError | None = None
    for ip in ips[:MAX_ADDRESSES]:
        request = http.build_request(
            "POST",
            url.copy_with(host=str(ip)),
            content=body,
            headers={
                **headers,
                "host": url.netloc.decode("ascii"),
                "content-type": "application/json",
                "accept-encoding": "identity",
                "user-agent": USER_AGENT,
            },
            extensions={"sni_hostname": url.raw_host.decode("ascii")},
        )
        try:
            response = await http.send(request, stream=True)
        except httpx.ConnectError as exc:
            failure = exc
            continue
        try:
            return await _answer(response)
        finally:
            await response.aclose()
    assert failure is not None
    return Result(delivered=False, error=f"could not connect: {failure}", retry=True)


async def send(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    seconds: float,
) -> Result:
    """POST ``body`` with ``headers`` to the receiver at ``url`` (see the module docstring).

    A 2xx is delivered. Worth another attempt: a timeout, a name that does not resolve, a
    connection that fails, 429 and 5xx. Not: any other status (3xx and 4xx), and a receiver
    that is not allowed (any more): a URL of a form or an address the settings refuse.
    ``seconds`` bounds the whole attempt.
    """
    try:
        parts = addresses.parse(url, allow_private=allow_private)
    except ValueError as exc:
        return Result(delivered=False, error=f"refused: the URL {exc}")
    target = httpx.URL(url)
    try:
        async with asyncio.timeout(seconds):
            ips = await addresses.resolve_allowed(
                target.raw_host.decode("ascii"),
                addresses.default_port(parts),
                allow_private=allow_private,
            )
            return await _post(http, target, ips, body, headers)
    except addresses.Refused as exc:
        return Result(delivered=False, error=f"refused: {exc}")
    except TimeoutError:
        return Result(delivered=False, error=f"no answer within {seconds:g} s", retry=True)
    except OSError as exc:  # the resolver
        return Result(delivered=False, error=f"could not resolve the host: {exc}", retry=True)
    except httpx.HTTPError as exc:
        return Result(delivered=False, error=f"{type(exc).__name__}: {exc}", retry=True)
