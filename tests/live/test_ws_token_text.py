"""A connection_init token that is not text a token can be (a lone UTF-16 surrogate, which
JSON can carry) is refused like any bad token: close 4403 with a reason, not a dropped
socket (close 1006) after a UnicodeEncodeError while hashing it."""

from __future__ import annotations

import pytest

from tests.live.test_ws_auth import bearer, refused_code
from vidgen.services import users


@pytest.mark.sqlite_only  # refused before any bus work; the token lookup is the same on both
@pytest.mark.parametrize("bus_kind", ["memory"])
async def test_a_token_with_a_lone_surrogate_is_refused_like_a_bad_one(live, accounts):
    alice = await accounts("alice@example.com")
    for payload in (
        bearer("vg_\ud800"),
        {"authorization": "Bearer vg_\udfff"},
        bearer(alice.token + "\ud800"),
    ):
        assert await refused_code(live.ws_url, payload) == 4403, payload


def test_hashing_never_fails_on_text_it_cannot_encode() -> None:
    assert users.hash_token("vg_\ud800") != users.hash_token("vg_\udfff")
