"""GraphiQL at ``GET /graphql`` in Chromium, with no network beyond the server."""

from __future__ import annotations

import json

from playwright.async_api import Page, WebSocket

from tests.api.conftest import LiveServer
from tests.browser.conftest import Browser, sqlite_backend
from vidgen.services import users

pytestmark = sqlite_backend

# The editors are CodeMirror 5 instances; each one's element carries its editor object.
_SET_EDITOR = "([selector, text]) => document.querySelector(selector).CodeMirror.setValue(text)"
_HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
_RESPONSE = "() => document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"


async def _run(page: Page, query: str, operation: str) -> None:
    """Put a query in the editor and run it, once GraphiQL has parsed it (the tab takes the
    operation's name; before that, it would send the previous operationName)."""
    await page.evaluate(_SET_EDITOR, [".graphiql-query-editor .CodeMirror", query])
    await page.wait_for_selector(f'.graphiql-tab-button:text-is("{operation}")')
    await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()


async def _response_contains(page: Page, text: str) -> dict:
    await page.wait_for_function(f"() => ({_RESPONSE})().includes({json.dumps(text)})")
    return json.loads(await page.evaluate(_RESPONSE))


async def test_graphiql_loads_queries_and_subscribes_with_the_headers_token(
    server: LiveServer, browser: Browser
) -> None:
    user = await users.create_user(email="gia@example.com", password="correct horse battery")
    token, _ = await users.issue_token(user=user, name="graphiql")
    page = await browser.new_page()
    sent: list[str] = []

    def watch(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: sent.append(str(payload)))

    page.on("websocket", watch)
    response = await page.goto(f"{server.url}/graphql")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    await page.wait_for_selector(".graphiql-query-editor .CodeMirror")

    # A query, with no token: the viewer is null.
    await _run(page, "query Anonymous { viewer { email } }", "Anonymous")
    assert (await _response_contains(page, "viewer")) == {"data": {"viewer": None}}

    # The token set in the Headers pane: HTTP queries carry it...
    await page.get_by_role("button", name="Headers").click()
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    await page.evaluate(_SET_EDITOR, [_HEADERS_EDITOR, headers])
    await _run(page, "query Me { viewer { email } }", "Me")
    assert (await _response_contains(page, "gia@example.com"))["data"]["viewer"] == {
        "email": "gia@example.com"
    }

    # ...and so does the WebSocket's connection_init: a subscription runs until the video
    # completes.
    body = await server.gql(
        "mutation($input: GenerateVideoInput!) { generateVideo(input: $input) { id } }",
        {"input": {"prompt": "a paper boat", "resolution": "512x512", "durationSeconds": 1}},
        token=token,
    )
    video_id = body["data"]["generateVideo"]["id"]
    await _run(
        page,
        f'subscription Watch {{ videoUpdated(id: "{video_id}") {{ id status progress }} }}',
        "Watch",
    )
    final = await _response_contains(page, "COMPLETED")
    assert final["data"]["videoUpdated"]["status"] == "COMPLETED"
    inits = [json.loads(f) for f in sent if '"connection_init"' in f]
    assert inits and inits[0]["payload"]["Authorization"] == f"Bearer {token}"

    # The explorer plugin opens, with the schema's fields.
    await page.get_by_role("button", name="Show GraphiQL Explorer").click()
    await page.wait_for_selector(".graphiql-explorer-root :text('videos')")

    await browser.screenshot(page, "graphiql", full_page=False)
    await browser.assert_clean()


async def test_graphiql_takes_the_galleries_token_from_the_tab(
    server: LiveServer, browser: Browser
) -> None:
    """Signed in to the gallery in this tab, GraphiQL starts with the token in its Headers
    pane (from sessionStorage: never a URL, never localStorage)."""
    page = await browser.new_page()
    await page.goto(f"{server.url}/")
    await page.evaluate("sessionStorage.setItem('vidgen.token', 'tok-123')")
    await page.goto(f"{server.url}/graphql")
    await page.get_by_role("button", name="Headers").click()
    await page.wait_for_selector(_HEADERS_EDITOR)
    headers = await page.evaluate(
        "s => document.querySelector(s).CodeMirror.getValue()", _HEADERS_EDITOR
    )
    assert json.loads(headers) == {"Authorization": "Bearer tok-123"}
    assert "tok-123" not in json.dumps(await page.evaluate("({...localStorage})"))
    await browser.assert_clean()
