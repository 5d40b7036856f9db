"""Where a webhook may go: the URL's form, and the addresses its host resolves to.

A receiver must be ``https`` on a public address. ``webhook_allow_private`` also allows
``http`` and loopback, private and link-local addresses (development, tests); cloud metadata
addresses stay refused whatever the setting. The URL is checked when a client gives it
(:func:`check_url`) and again before every delivery, on the very addresses the connection
then uses (:func:`resolve_allowed`): a name that resolved to a public address when the video
was created may point elsewhere an hour later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from vidgen import errors

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
#: How long :func:`check_url` waits for the resolver.
RESOLVE_SECONDS = 5.0

# Instance metadata services (AWS and GCP and Azure, AWS ECS tasks, AWS over IPv6, Alibaba,
# Oracle): they hand out cloud credentials to whoever asks from inside, so they are never a
# receiver, even where private receivers are allowed.
METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.0.0.192",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """A receiver address that may not be used; the message says why."""


def _embedded(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), or ``ip`` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``ip`` may not receive webhooks, or None when it may."""
    ip = _embedded(ip)
    if ip in METADATA:
        return f"{ip} is a cloud metadata address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_global or allow_private:
        return None
    return f"{ip} is a loopback, private, link-local or reserved address"


def parse(url: str, *, allow_private: bool) -> SplitResult:
    """The parts of a receiver URL, checked for form only (no resolving).

    Raises:
        ValueError: the reason, for a client.
    """
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError("is not a valid URL") from exc
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise ValueError("must be an https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    return parts


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to for TCP, in the resolver's order, each once.

    Raises:
        OSError: the name does not resolve (``socket.gaierror``).
    """
    literal = _literal(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if ip not in found:
            found.append(ip)
    if not found:
        raise socket.gaierror(f"{host} has no address")
    return found


async def resolve_allowed(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """:func:`resolve`, refusing the host when ANY of its addresses is not allowed (a name
    with one public and one private address could be made to use the private one).

    Raises:
        OSError: the name does not resolve.
        Refused: one of its addresses may not receive webhooks.
    """
    found = await resolve(host, port)
    for ip in found:
        reason = refusal(ip, allow_private=allow_private)
        if reason is not None:
            raise Refused(f"{host} resolves to {reason}" if _literal(host) is None else reason)
    return found


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


async def check_url(url: str, *, allow_private: bool, field: str = "webhookUrl") -> str:
    """A receiver URL a client gave, checked in form and by the addresses it resolves to
    now; returns it without surrounding spaces.

    Raises:
        BadUserInput: naming ``field``, saying what is wrong.
    """
    text = url.strip()
    try:
        parts = parse(text, allow_private=allow_private)
        assert parts.hostname is not None
        async with asyncio.timeout(RESOLVE_SECONDS):
            await resolve_allowed(parts.hostname, default_port(parts), allow_private=allow_private)
    except ValueError as exc:
        raise errors.BadUserInput(f"{field} {exc}.", field=field) from exc
    except Refused as exc:
        raise errors.BadUserInput(
            f"{field} must reach a public address: {exc}.", field=field
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise errors.BadUserInput(f"{field}: its host name does not resolve.", field=field) from exc
    return text
