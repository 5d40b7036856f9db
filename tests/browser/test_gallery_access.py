"""Issue 21's "keyboard use and labels for every control; it reads well on a phone-sized
screen", in Chromium: every control the gallery shows has an accessible name, a video is
generated with the keyboard alone, and a phone-wide page never scrolls sideways."""

from __future__ import annotations

from tests.api.conftest import LiveServer
from tests.browser.conftest import (
    Browser,
    card,
    make_user,
    sign_in,
    sqlite_backend,
    wait_status,
)

pytestmark = sqlite_backend

# The visible controls that have no accessible name: no <label> (for= or around), no
# aria-label, no aria-labelledby naming text, and (buttons) no text of their own.
UNNAMED = """
() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((el) => el.type !== "hidden" && el.getClientRects().length > 0)
  .filter((el) => {
    const text = (s) => (s || "").trim();
    if (text(el.getAttribute("aria-label"))) return false;
    const by = el.getAttribute("aria-labelledby");
    if (by && by.split(/\\s+/).some((id) => text((document.getElementById(id) || {}).textContent)))
      return false;
    if (el.labels && [...el.labels].some((l) => text(l.textContent))) return false;
    if (el.tagName === "BUTTON" && (text(el.textContent) || text(el.title))) return false;
    return true;
  })
  .map((el) => el.outerHTML.slice(0, 120))
"""
SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"


async def test_every_control_is_named_signed_out_and_in(
    server: LiveServer, browser: Browser
) -> None:
    email = await make_user("lee@example.com")
    page = await browser.new_page()
    await page.goto(f"{server.url}/")
    await page.wait_for_selector('input[name="email"]')
    assert await page.evaluate(UNNAMED) == []
    await sign_in(page, server.url, email)
    await page.wait_for_selector('select[name="provider"] option', state="attached")
    assert await page.evaluate(UNNAMED) == []
    await browser.assert_clean()


async def test_a_video_is_generated_with_the_keyboard_alone(
    server: LiveServer, browser: Browser
) -> None:
    email = await make_user("kim@example.com")
    page = await browser.new_page()
    await sign_in(page, server.url, email)
    await page.wait_for_selector('select[name="provider"] option[value="local"]', state="attached")

    await page.focus('textarea[name="prompt"]')
    await page.keyboard.type("a paper boat on a puddle")
    # Tab along the form to the Generate button (a bounded walk), then press Enter on it.
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "generate":
            break
    else:
        raise AssertionError("Tab never reached the Generate button")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("[data-video-id]")
    video_id = await page.get_attribute("[data-video-id]", "data-video-id")
    await wait_status(page, video_id, "COMPLETED")
    assert "a paper boat on a puddle" in await page.inner_text(card(video_id))
    await browser.assert_clean()


async def test_a_phone_wide_page_never_scrolls_sideways(
    server: LiveServer, browser: Browser
) -> None:
    email = await make_user("pat@example.com")
    page = await browser.new_page(width=360, height=740)
    await page.goto(f"{server.url}/")
    await page.wait_for_selector('input[name="email"]')
    assert await page.evaluate(SIDEWAYS) <= 0
    await sign_in(page, server.url, email)
    await page.fill('textarea[name="prompt"]', "x" * 300)  # a long prompt wraps
    await page.select_option('select[name="resolution"]', "512x512")
    await page.fill('input[name="durationSeconds"]', "1")
    await page.get_by_role("button", name="Generate").click()
    await page.wait_for_selector('[data-video-id][data-status="COMPLETED"]')
    assert await page.evaluate(SIDEWAYS) <= 0
    await browser.screenshot(page, "gallery-360")
    await browser.assert_clean()
