"""``webhookUrl`` at input: refused with BAD_USER_INPUT naming it, and nothing written."""

from __future__ import annotations

import pytest

from tests.api.conftest import row_counts
from tests.webhooks_out.conftest import GENERATE, generate

REFUSED_ALWAYS = [
    ("https://169.254.169.254/latest/meta-data", "cloud metadata address"),
    ("https://[fd00:ec2::254]/", "cloud metadata address"),
    ("ftp://127.0.0.1/hook", "must be an https URL"),
    ("https://", "must name a host"),
    ("https://no-such-host.invalid/hook", "does not resolve"),
]
REFUSED_WITHOUT_THE_SETTING = [
    ("http://8.8.8.8/hook", "must be an https URL"),
    ("https://127.0.0.1/hook", "127.0.0.1 is a loopback, private, link-local or reserved"),
    ("https://localhost:8443/hook", "localhost resolves to"),
    ("https://[::1]/hook", "::1 is a loopback"),
    ("https://10.0.0.7/hook", "10.0.0.7 is a loopback"),
    ("https://[::ffff:192.168.0.1]/hook", "192.168.0.1 is a loopback"),
]


async def refused(server, account, url: str) -> dict:
    before = await row_counts()
    variables = {"input": {"prompt": "p", "provider": "test", "webhookUrl": url}}
    body = await server.gql(GENERATE, variables, token=account.token)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "webhookUrl"
    assert await row_counts() == before
    return error


@pytest.mark.parametrize(("url", "says"), REFUSED_WITHOUT_THE_SETTING)
async def test_a_private_or_plain_receiver_needs_the_setting(server, alice, url, says) -> None:
    server.settings.webhook_allow_private = False
    error = await refused(server, alice, url)
    assert says in error["message"]


@pytest.mark.parametrize(("url", "says"), REFUSED_ALWAYS)
async def test_some_receivers_are_refused_whatever_the_setting(server, alice, url, says) -> None:
    error = await refused(server, alice, url)
    assert says in error["message"]


async def test_with_the_setting_a_local_receiver_is_taken(server, alice) -> None:
    video = await generate(server, alice, prompt="p", webhookUrl=" http://127.0.0.1:9/hook ")
    plain = await generate(server, alice, prompt="p", webhookUrl="")
    query = "query($id: ID!) { video(id: $id) { webhookDeliveries { status } } }"
    seen = await server.gql(query, {"id": video["id"]}, token=alice.token)
    assert seen["data"]["video"]["webhookDeliveries"] == [{"status": "PENDING"}]
    seen = await server.gql(query, {"id": plain["id"]}, token=alice.token)
    assert seen["data"]["video"]["webhookDeliveries"] == []
