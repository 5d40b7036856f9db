"""The client's address, as the throttles count it.

Behind a reverse proxy every request comes from the proxy, which names the client in
``X-Forwarded-For`` (each proxy appends the address it got the request from). Anyone can
send that header, so it is believed only as far as trusted proxies wrote it: when the peer
is one of ``VIDGEN_TRUSTED_PROXIES`` (addresses or CIDR networks), the entries are read from
the right, skipping trusted proxies, and the first other address is the client. Otherwise
the peer itself is the client, whatever the header says.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def _parse(text: str) -> Address | None:
    """An address from a header entry or a peer: ``1.2.3.4``, ``::1``, ``[::1]:443``,
    ``1.2.3.4:80``; IPv4-mapped IPv6 as IPv4. None when it is none of those."""
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def client_address(connection: HTTPConnection | None, trusted_proxies: Sequence[str]) -> str | None:
    """The client's address for an HTTP request or a WebSocket (None when unknown, e.g. a
    test calling the schema directly)."""
    if connection is None or connection.client is None:
        return None
    peer = _parse(connection.client.host)
    if peer is None:
        return connection.client.host or None
    networks = _networks(tuple(trusted_proxies))
    if not networks or not _trusted(peer, networks):
        return str(peer)
    hops = [
        hop
        for value in connection.headers.getlist("x-forwarded-for")
        for hop in value.split(",")
        if hop.strip()
    ]
    client = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break  # not written by a proxy we trust: the last trusted hop is all we know
        client = address
        if not _trusted(address, networks):
            break
    return str(client)
