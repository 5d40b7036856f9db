"""The client's address: X-Forwarded-For believed only as far as trusted proxies wrote it."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from vidgen.services.throttle import address_key
from vidgen.web.client_address import client_address


def request(peer: str | None, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    client = (peer, 5000) if peer is not None else None
    return Request({"type": "http", "client": client, "headers": headers})


PROXIES = ["10.0.0.0/8", "192.168.1.1"]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("203.0.113.9", ["1.2.3.4"], PROXIES, "203.0.113.9"),  # not from a proxy: ignored
        ("203.0.113.9", ["1.2.3.4"], [], "203.0.113.9"),
        ("10.1.2.3", [], PROXIES, "10.1.2.3"),  # a proxy that names nobody
        ("10.1.2.3", ["1.2.3.4"], PROXIES, "1.2.3.4"),
        ("10.1.2.3", ["6.6.6.6, 1.2.3.4"], PROXIES, "1.2.3.4"),  # the client's own entry
        ("10.1.2.3", ["6.6.6.6, 1.2.3.4, 192.168.1.1"], PROXIES, "1.2.3.4"),  # two proxies
        ("10.1.2.3", ["6.6.6.6", "1.2.3.4"], PROXIES, "1.2.3.4"),  # several headers
        ("10.1.2.3", ["garbage, 10.9.9.9"], PROXIES, "10.9.9.9"),
        ("10.1.2.3", ["1.2.3.4:5555"], PROXIES, "1.2.3.4"),
        ("10.1.2.3", ["[2001:db8::1]:443"], PROXIES, "2001:db8::1"),
        ("::ffff:10.1.2.3", ["1.2.3.4"], PROXIES, "1.2.3.4"),  # IPv4-mapped peer
        ("10.1.2.3", ["10.4.4.4"], PROXIES, "10.4.4.4"),  # nothing but proxies
        ("testclient", ["1.2.3.4"], PROXIES, "testclient"),
    ],
)
def test_forwarded_for_from_trusted_proxies_only(
    peer: str, forwarded: list[str], trusted: list[str], client: str
) -> None:
    assert client_address(request(peer, *forwarded), trusted) == client


def test_no_peer_no_address() -> None:
    assert client_address(request(None, "1.2.3.4"), PROXIES) is None
    assert client_address(None, PROXIES) is None


def test_ipv6_clients_count_by_their_64_network() -> None:
    assert address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_key("::ffff:1.2.3.4") == "1.2.3.4"
    assert address_key("1.2.3.4") == "1.2.3.4"
