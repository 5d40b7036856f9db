"""The browser pages: the gallery at ``GET /``, GraphiQL at ``GET /graphql`` and their files.

Everything a page loads comes from this server: the gallery's own HTML, CSS and JavaScript
modules (``static/gallery/``, no build step) and GraphiQL with React and the explorer
plugin, vendored at pinned versions (``static/vendor/``, rebuilt by
``scripts/vendor_assets.py``; see ``docs/web.md``). Both pages are clients of the public
GraphQL API only.

Each HTML page carries a Content-Security-Policy that allows the server's own origin and
nothing else, except where a line below says why:

- ``default-src 'none'``: whatever is not listed is refused (objects, frames, workers...).
- ``script-src 'self'``: no inline script, no ``eval``: GraphiQL 4's UMD build, React's and
  the gallery's modules run without either (the pages' bootstraps are files too).
- ``style-src 'self'``: no inline styles either. The one thing this blocks is the style
  element Radix UI injects to lock the page's scrolling while one of GraphiQL's dialogs
  (settings, shortcuts) is open; the dialogs work without it (GraphiQL fills the window
  and does not scroll), so GraphiQL gets no ``'unsafe-inline'``.
- ``font-src 'self'``: GraphiQL's fonts ship inside its stylesheet as ``data:`` URLs; the
  rebuild script writes them out as files, so no ``data:`` is needed.
- ``img-src`` / ``media-src`` (gallery): the server itself and the origin of its signed
  media URLs (``VIDGEN_PUBLIC_URL``, which may differ from the address the page was opened
  at); ``blob:`` for images only, for the preview of an image the user picked (it never
  leaves the tab).
- ``connect-src 'self'``: HTTP and the WebSocket (``'self'`` covers ``ws:``/``wss:`` to the
  same host in current browsers).
- ``base-uri 'none'``, ``form-action 'none'`` (the forms are handled by script, never
  submitted natively), ``frame-ancestors 'none'`` (no framing: clickjacking).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from vidgen.runtime import Runtime
from vidgen.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"
STATIC_URL = "/static"
VENDOR_URL = f"{STATIC_URL}/vendor"

_COMMON_POLICY = (
    "default-src 'none'",
    "script-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
)
GRAPHIQL_POLICY = "; ".join(
    (
        *_COMMON_POLICY,
        "style-src 'self'",
        "font-src 'self'",
        "img-src 'self'",
    )
)

_HTML_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def gallery_policy(settings: Settings) -> str:
    """The gallery's policy: also images and videos from the origin of the signed media
    URLs, which is the public URL's (the page may have been opened at another address)."""
    media = ["'self'"]
    parts = urlsplit(settings.resolved_public_url)
    if parts.scheme in ("http", "https") and parts.netloc:
        media.append(f"{parts.scheme}://{parts.netloc}")
    sources = " ".join(media)
    return "; ".join(
        (
            *_COMMON_POLICY,
            "style-src 'self'",
            f"img-src {sources} blob:",
            f"media-src {sources}",
        )
    )


@cache
def _vendor_prefixes() -> dict[str, str]:
    """``{graphiql}``-style placeholders -> the URL folder of that pinned package."""
    manifest = json.loads((STATIC / "vendor" / "vendor.json").read_text())
    prefixes = {}
    for package in manifest["packages"]:
        name, version = package["name"], package["version"]
        folder = f"{name.lstrip('@').replace('/', '-')}-{version}"
        key = name.lstrip("@").replace("/", "_").replace("-", "_")
        prefixes[key] = f"{VENDOR_URL}/{folder}"
    return prefixes


@cache
def _graphiql_html() -> str:
    html = (STATIC / "graphiql.html").read_text()
    for key, prefix in _vendor_prefixes().items():
        html = html.replace("{" + key + "}", prefix)
    return html


def graphiql_response() -> Response:
    """The GraphiQL page (``GET /graphql`` from a browser)."""
    return HTMLResponse(
        _graphiql_html(),
        headers={**_HTML_HEADERS, "Content-Security-Policy": GRAPHIQL_POLICY},
    )


@cache
def _gallery_template() -> str:
    return (STATIC / "gallery" / "index.html").read_text()


def gallery_response(settings: Settings) -> Response:
    """The gallery page; whether sign-up is offered is the one server-side fact it needs."""
    html = _gallery_template().replace(
        "{signup_enabled}", "true" if settings.signup_enabled else "false"
    )
    return HTMLResponse(
        html, headers={**_HTML_HEADERS, "Content-Security-Policy": gallery_policy(settings)}
    )


class StaticAssets(StaticFiles):
    """The pages' files. Vendored ones live under a versioned folder, so they are cached
    for good; the gallery's own are revalidated (ETag) on each load."""

    def file_response(self, full_path, stat_result, scope: Scope, status_code: int = 200):  # type: ignore[override]
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["X-Content-Type-Options"] = "nosniff"
        vendored = Path(full_path).is_relative_to(STATIC / "vendor")
        response.headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if vendored else "no-cache"
        )
        return response


def page_routes(runtime: Runtime) -> list[BaseRoute]:
    """``GET /`` (the gallery) and ``/static/...`` (the pages' files)."""
    settings = runtime.settings

    async def gallery(request: Request) -> Response:
        return gallery_response(settings)

    return [
        Route("/", gallery, methods=["GET", "HEAD"]),
        Mount(STATIC_URL, app=StaticAssets(directory=STATIC), name="static"),
    ]
