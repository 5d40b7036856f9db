"""The pages' HTTP side: headers, the files they load, and the vendored assets' pins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.api.conftest import start_live_server
from tests.browser.conftest import sqlite_backend
from vidgen.settings import Settings
from vidgen.web import pages

ROOT = Path(__file__).resolve().parents[2]


def test_the_vendored_assets_match_their_pins() -> None:
    """What is committed under web/static/vendor is what vendor.json pins (no network)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "vendor_assets.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


@sqlite_backend
async def test_pages_carry_a_strict_policy_and_load_only_their_own_files(
    db: Settings,
) -> None:
    async with start_live_server(db, public_url="https://videos.example") as server:
        gallery = await server.client.get("/")
        graphiql = await server.client.get("/graphql", headers={"Accept": "text/html"})
        for response in (gallery, graphiql):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["x-content-type-options"] == "nosniff"
            policy = response.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "script-src 'self';" in policy
            assert "unsafe" not in policy
            # Every file a page names is served, from this server.
            for path in re.findall(r'(?:src|href)="([^"]+)"', response.text):
                assert path.startswith(("/", "#")), path
                if path.startswith("/static/"):
                    asset = await server.client.get(path)
                    assert asset.status_code == 200, path
                    assert asset.headers["x-content-type-options"] == "nosniff"
        assert graphiql.headers["content-security-policy"] == pages.GRAPHIQL_POLICY
        # Signed media URLs point at the public URL: the gallery may show them.
        policy = gallery.headers["content-security-policy"]
        assert "media-src 'self' https://videos.example" in policy.split("; ")
        assert 'data-signup-enabled="true"' in gallery.text

        vendored = await server.client.get(
            re.search(r'src="(/static/vendor/[^"]+\.js)"', graphiql.text).group(1)
        )
        assert "immutable" in vendored.headers["cache-control"]
        assert vendored.headers["content-type"].startswith("text/javascript")
        own = await server.client.get("/static/gallery/app.js")
        assert own.headers["cache-control"] == "no-cache"
        assert (await server.client.get("/static/nope.js")).status_code == 404

    async with start_live_server(db, signup_enabled=False) as server:
        assert 'data-signup-enabled="false"' in (await server.client.get("/")).text
