"""The gallery at ``GET /`` in Chromium: sign in, generate, watch live, play, act on cards."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from tests.api.conftest import LiveServer
from tests.browser.conftest import (
    PASSWORD,
    WATCH_STATUSES,
    Browser,
    card,
    card_status,
    generate,
    make_user,
    sign_in,
    sqlite_backend,
    wait_status,
)

pytestmark = sqlite_backend


async def test_sign_in_generate_watch_live_and_play(
    server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    email = await make_user("ada@example.com")
    page = await browser.new_page()

    # A wrong password: the GraphQL error's message and code, not a blank page.
    await page.goto(f"{server.url}/")
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', "not the password")
    await page.get_by_role("button", name="Sign in").click()
    alert = page.locator("#alert")
    await alert.wait_for(state="visible")
    assert (
        await page.locator("#alert-text").inner_text()
        == "Wrong email or password. (UNAUTHENTICATED)"
    )
    assert await page.evaluate("sessionStorage.getItem('vidgen.token')") is None

    # Signing in from the keyboard: Enter in the password field submits "Sign in".
    await page.fill('input[name="password"]', PASSWORD)
    await page.press('input[name="password"]', "Enter")
    await page.wait_for_selector('#live-state[data-live="live"]')
    token = await page.evaluate("sessionStorage.getItem('vidgen.token')")
    assert token and token not in page.url
    await browser.screenshot(page, "gallery-empty")
    page_id = await page.evaluate(WATCH_STATUSES)

    media_statuses: list[int] = []
    page.on("response", lambda r: "/media/" in r.url and media_statuses.append(r.status))

    video_id = await generate(page, "a red fox running through fresh snow at dawn")
    await page.wait_for_selector(f'{card(video_id)}[data-status="COMPLETED"] video')

    # The card appeared queued (the mutation's answer) and changed live until COMPLETED.
    # (On a loaded machine the worker may claim the job before the answer reaches the
    # page; the card then starts at the live PROCESSING, which is newer.)
    statuses = await page.evaluate("id => window.__statuses[id]", video_id)
    assert statuses[0] in ("QUEUED", "PROCESSING") and statuses[-1] == "COMPLETED", statuses
    assert len(statuses) >= 2 and set(statuses) <= {"QUEUED", "PROCESSING", "COMPLETED"}
    assert await page.evaluate("window.__pageId") == page_id  # live: never reloaded

    # The card's <video> plays the video's URL (range requests: 206).
    body = await server.gql(
        "query($id: ID!) { video(id: $id) { videoUrl fileSize status } }",
        {"id": video_id},
        token=token,
    )
    video = body["data"]["video"]
    card_video = page.locator(f"{card(video_id)} video")
    src = await card_video.get_attribute("src")
    assert src.split("?")[0] == video["videoUrl"].split("?")[0]
    await card_video.evaluate("v => { v.muted = true; return v.play(); }")
    await page.wait_for_function(
        "v => v.currentTime > 0 && v.readyState >= 2", arg=await card_video.element_handle()
    )
    assert 206 in media_statuses, media_statuses

    # Open it in the player, then download it.
    await page.locator(card(video_id)).get_by_role("button", name="Open").click()
    player = page.locator("#player")
    await player.wait_for(state="visible")
    await page.wait_for_function("() => document.getElementById('player-video').readyState >= 2")
    await browser.screenshot(page, "gallery-player", full_page=False)
    async with page.expect_download() as download_info:
        await page.locator("#player-download").click()
    download = await download_info.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    data = saved.read_bytes()
    assert len(data) == video["fileSize"] and data[4:8] == b"ftyp"
    assert download.suggested_filename.endswith(".mp4")
    await page.keyboard.press("Escape")
    await player.wait_for(state="hidden")

    await page.evaluate("window.scrollTo(0, 0)")
    await browser.screenshot(page, "gallery")
    await page.set_viewport_size({"width": 390, "height": 844})
    await browser.screenshot(page, "gallery-phone")
    await browser.assert_clean()


def _png(path: Path) -> Path:
    image = Image.new("RGB", (320, 200))
    image.putdata([(x * 255 // 320, y * 255 // 200, 140) for y in range(200) for x in range(320)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    path.write_bytes(out.getvalue())
    return path


async def test_image_to_video_upload(server: LiveServer, browser: Browser, tmp_path: Path) -> None:
    email = await make_user("ida@example.com")
    page = await browser.new_page()
    await sign_in(page, server.url, email)

    image = _png(tmp_path / "input.png")
    await page.set_input_files('input[name="inputImage"]', str(image))
    await page.wait_for_selector("#gen-image-preview:not([hidden])")  # a blob: preview
    video_id = await generate(page, "the gradient starts to swirl", image=image)
    await wait_status(page, video_id, "COMPLETED")

    token = await page.evaluate("sessionStorage.getItem('vidgen.token')")
    body = await server.gql(
        "query($id: ID!) { video(id: $id) { inputImageUrl status } }", {"id": video_id}, token=token
    )
    assert body["data"]["video"]["inputImageUrl"], body

    # A request the provider cannot take: the API's message and code, and the field marked.
    await page.fill('textarea[name="prompt"]', "far too long for the local renderer")
    await page.fill('input[name="durationSeconds"]', "99")
    await page.get_by_role("button", name="Generate").click()
    await page.wait_for_selector('input[name="durationSeconds"][aria-invalid="true"]')
    assert (await page.inner_text("#alert-text")).endswith("(BAD_USER_INPUT)")
    await browser.assert_clean()


async def test_a_second_user_never_sees_the_first_users_cards(
    server: LiveServer, browser: Browser
) -> None:
    first = await browser.new_page()
    second = await browser.new_page()
    await sign_in(first, server.url, await make_user("first@example.com"))
    # The second one signs up through the form.
    await second.goto(f"{server.url}/")
    await second.fill('input[name="email"]', "second@example.com")
    await second.fill('input[name="password"]', PASSWORD)
    await second.get_by_role("button", name="Create account").click()
    await second.wait_for_selector('#live-state[data-live="live"]')
    assert await second.inner_text("#viewer-email") == "second@example.com"

    theirs = await generate(first, "only the first user may see this")
    await wait_status(first, theirs, "COMPLETED")
    mine = await generate(second, "the second user's own video")
    await wait_status(second, mine, "COMPLETED")

    # The second page has seen every live event of the first user's video go by (or not):
    # either way it shows its own card only, and so does the first page.
    assert await second.eval_on_selector_all(
        "[data-video-id]", "els => els.map(e => e.dataset.videoId)"
    ) == [mine]
    assert await first.eval_on_selector_all(
        "[data-video-id]", "els => els.map(e => e.dataset.videoId)"
    ) == [theirs]
    await second.reload()
    await second.wait_for_selector(card(mine))
    assert await second.locator(card(theirs)).count() == 0

    # Signing out forgets the token and shows the sign-in form again.
    await second.get_by_role("button", name="Sign out").click()
    await second.wait_for_selector('body[data-state="signed-out"] input[name="email"]')
    assert await second.evaluate("sessionStorage.getItem('vidgen.token')") is None
    assert await second.locator("[data-video-id]").count() == 0
    await browser.assert_clean()


async def test_cancel_retry_delete_restore_and_filters(
    server: LiveServer, browser: Browser
) -> None:
    page = await browser.new_page()
    await sign_in(page, server.url, await make_user("carl@example.com"))

    done = await generate(page, "a lighthouse in a storm", tags="sea, night")
    await wait_status(page, done, "COMPLETED")
    stuck = await generate(page, "hang · a slow pan over the city at night", provider="test")
    await wait_status(page, stuck, "PROCESSING")
    await page.locator("#generate-panel summary").click()  # fold the form away
    await browser.screenshot(page, "gallery-cards")
    await page.locator("#generate-panel summary").click()
    stuck_card = page.locator(card(stuck))

    await stuck_card.get_by_role("button", name="Cancel").click()
    await wait_status(page, stuck, "CANCELED")
    await stuck_card.get_by_role("button", name="Retry").click()
    await page.wait_for_function(
        "s => ['QUEUED', 'PROCESSING'].includes(document.querySelector(s).dataset.status)",
        arg=card(stuck),
    )
    await stuck_card.get_by_role("button", name="Cancel").click()
    await wait_status(page, stuck, "CANCELED")

    # Filters: by status, and a text search.
    async def shown() -> list[str]:
        await page.wait_for_selector("#count:not(:empty)")  # the list has loaded
        return await page.eval_on_selector_all(
            "[data-video-id]", "els => els.map(e => e.dataset.videoId)"
        )

    await page.select_option('select[name="status"]', "COMPLETED")
    assert await shown() == [done]
    await page.select_option('select[name="status"]', "")
    assert await shown() == [stuck, done]
    await page.fill('input[name="search"]', "lighthouse")
    await page.wait_for_selector(card(stuck), state="detached")
    assert await shown() == [done]
    await page.fill('input[name="search"]', "")
    await page.wait_for_selector(card(stuck))

    # Delete hides the card; "Show deleted" brings it back, with Restore.
    await stuck_card.get_by_role("button", name="Delete").click()
    await page.wait_for_selector(card(stuck), state="detached")
    await page.get_by_label("Show deleted").check()
    await stuck_card.get_by_role("button", name="Restore").wait_for()
    await stuck_card.get_by_role("button", name="Restore").click()
    await stuck_card.get_by_role("button", name="Delete").wait_for()
    await page.get_by_label("Show deleted").uncheck()
    await page.wait_for_selector(card(stuck))
    assert await card_status(page, stuck) == "CANCELED"
    await browser.assert_clean()


# The eventCursor of each video the page shows, read over the API with the page's token.
_CURSORS = """
async () => {
  const ids = [...document.querySelectorAll("[data-video-id]")].map((e) => e.dataset.videoId);
  const query = "query($id: ID!) { video(id: $id) { eventCursor } }";
  const token = sessionStorage.getItem("vidgen.token");
  const out = [];
  for (const id of ids) {
    const r = await fetch("/graphql", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables: { id } }),
    });
    out.push((await r.json()).data.video.eventCursor);
  }
  return out;
}
"""


async def test_scrolling_loads_the_next_page(server: LiveServer, browser: Browser) -> None:
    """More videos than a page: the rest load as the list scrolls (cursor pagination)."""
    from tests.live.conftest import make_video
    from vidgen.models import User, VideoStatus

    email = await make_user("sam@example.com")
    owner = await User.get(email=email)
    for n in range(15):  # canceled: the embedded worker leaves them alone
        await make_video(owner, f"archive clip {n:02}", status=VideoStatus.CANCELED)
    page = await browser.new_page(width=390, height=844)  # a phone: one column
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
    await sign_in(page, server.url, email)
    await page.wait_for_selector("[data-video-id]")
    first_page = await page.locator("[data-video-id]").count()
    assert first_page == 12  # one page
    # The live feed resumes from the newest change the first page showed: nothing that
    # changed between the page's query and the subscription is missed.
    subscribe = next(json.loads(f) for f in sent if '"subscribe"' in f)
    assert subscribe["payload"]["variables"]["after"] == str(
        max(int(c) for c in await page.evaluate(_CURSORS))
    )

    await page.locator("#more").scroll_into_view_if_needed()
    await page.wait_for_function("() => document.querySelectorAll('[data-video-id]').length == 15")
    prompts = await page.eval_on_selector_all(".card .prompt", "els => els.map(e => e.textContent)")
    assert prompts == [f"archive clip {n:02}" for n in reversed(range(15))]  # newest first
    assert await page.locator("#more").is_hidden()
    await browser.assert_clean()
