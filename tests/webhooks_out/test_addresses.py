"""Which receivers are allowed: the URL's form, and the addresses it resolves to."""

from __future__ import annotations

import ipaddress

import pytest

from vidgen import errors
from vidgen.webhooks_out import addresses

PUBLIC = ["8.8.8.8", "2606:4700:4700::1111"]
PRIVATE = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.1.1",  # link-local
    "100.64.0.1",  # shared address space (carrier NAT)
    "0.0.0.0",
    "::1",
    "fe80::1",
    "fc00::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
]
METADATA = ["169.254.169.254", "fd00:ec2::254", "100.100.100.200"]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert addresses.refusal(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize("address", PRIVATE)
def test_private_addresses_only_with_the_setting(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert addresses.refusal(ip, allow_private=False) is not None
    assert addresses.refusal(ip, allow_private=True) is None


@pytest.mark.parametrize("address", [*METADATA, "224.0.0.1", "ff02::1"])
def test_metadata_and_multicast_addresses_never(address: str) -> None:
    assert addresses.refusal(ipaddress.ip_address(address), allow_private=True) is not None


@pytest.mark.parametrize(
    ("url", "allow_private", "says"),
    [
        ("http://8.8.8.8/hook", False, "must be an https URL"),
        ("ftp://8.8.8.8/hook", True, "must be an https URL"),
        ("https:///hook", False, "must name a host"),
        ("https://8.8.8.8:99999/", False, "is not a valid URL"),
        ("https://8.8.8.8/a b", False, "spaces or control"),
        ("https://8.8.8.8/" + "a" * 2048, False, "at most 2048"),
    ],
)
def test_malformed_urls_are_refused(url: str, allow_private: bool, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        addresses.parse(url, allow_private=allow_private)


async def test_check_url_names_the_field_and_the_reason() -> None:
    assert await addresses.check_url(" https://8.8.8.8/hook ", allow_private=False) == (
        "https://8.8.8.8/hook"
    )
    with pytest.raises(errors.BadUserInput) as caught:
        await addresses.check_url("https://127.0.0.1/hook", allow_private=False)
    assert caught.value.field == "webhookUrl"
    assert "127.0.0.1 is a loopback" in caught.value.message
    # A name is judged by every address it resolves to ("localhost": loopback).
    with pytest.raises(errors.BadUserInput, match="localhost resolves to"):
        await addresses.check_url("https://localhost/hook", allow_private=False)
    assert await addresses.check_url("http://localhost:9/hook", allow_private=True)
    with pytest.raises(errors.BadUserInput, match="does not resolve"):
        await addresses.check_url("https://no-such-host.invalid/hook", allow_private=True)
