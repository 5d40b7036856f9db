"""The gallery's choices in Chromium, beyond test_gallery.py: the project and tag filters
narrow the cards (also for videos arriving live), the generate form sends the project and
story chosen (stories follow the project), and it offers only what the chosen provider (and
model) can do, as the ``providers`` query describes it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from tests.api.conftest import LiveServer, serve
from tests.browser.conftest import (
    PASSWORD,
    Browser,
    browser_settings,
    card,
    generate,
    make_user,
    sign_in,
    sqlite_backend,
    wait_status,
)
from vidgen.events.memory import MemoryBus
from vidgen.providers.http import tls_context
from vidgen.runtime import Runtime
from vidgen.settings import Settings

pytestmark = sqlite_backend

LOGIN = "mutation($i: LoginInput!) { login(input: $i) { token } }"
PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id } }"
STORY = (
    "mutation($t: String!, $p: ID) {"
    ' createStory(input: {title: $t, projectId: $p, paragraphs: ["one"]}) { id } }'
)
GENERATE = "mutation($i: GenerateVideoInput!) { generateVideo(input: $i) { id } }"
CAPTION = "mutation($id: ID!, $c: String) { updateVideo(id: $id, input: {caption: $c}) { id } }"
PROVIDERS = """
{ providers { name available imageToVideo resolutions outputFormats minDurationSeconds
  maxDurationSeconds defaultModel
  models { name resolutions minDurationSeconds maxDurationSeconds } } }
"""


@pytest_asyncio.fixture
async def server(db: Settings) -> AsyncIterator[LiveServer]:
    """The browser tests' server, with Replicate and Google configured too (keys that are
    never used: nothing is generated with them), for providers with several models that
    differ in resolutions and durations."""
    from vidgen.web.app import create_app

    settings = browser_settings(db)
    settings.replicate_api_key = "key-never-sent"
    settings.google_api_key = "key-never-sent"
    runtime = Runtime.create(settings, bus=MemoryBus())
    app = create_app(settings, runtime=runtime, manage_database=False, embedded_worker=True)
    async with serve(app) as url:
        settings.public_url = url
        async with httpx.AsyncClient(base_url=url, timeout=30, verify=tls_context()) as client:
            yield LiveServer(url=url, app=app, runtime=runtime, settings=settings, client=client)


class Api:
    def __init__(self, server: LiveServer, token: str) -> None:
        self.server, self.token = server, token

    async def __call__(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = await self.server.gql(query, variables or {}, token=self.token)
        assert "errors" not in body, body
        return body["data"]

    async def video(self, prompt: str, **fields: Any) -> str:
        data = await self(GENERATE, {"i": {"prompt": prompt, "provider": "test", **fields}})
        return data["generateVideo"]["id"]


async def _api(server: LiveServer, email: str) -> Api:
    body = await server.gql(LOGIN, {"i": {"email": email, "password": PASSWORD}})
    return Api(server, body["data"]["login"]["token"])


async def _shown(page) -> list[str]:  # noqa: ANN001
    return await page.eval_on_selector_all(
        "[data-video-id]", "els => els.map(e => e.dataset.videoId)"
    )


async def _until_shown(page, expected: list[str]) -> None:  # noqa: ANN001
    """Until the cards are exactly ``expected`` (newest first); fails after the page wait."""
    await page.wait_for_function(
        """exp => JSON.stringify([...document.querySelectorAll("[data-video-id]")]
              .map(e => e.dataset.videoId)) === JSON.stringify(exp)""",
        arg=expected,
    )
    assert await _shown(page) == expected


async def test_the_project_and_tag_filters_narrow_the_cards(
    server: LiveServer, browser: Browser
) -> None:
    email = await make_user("fay@example.com")
    api = await _api(server, email)
    seaside = (await api(PROJECT, {"n": "Seaside"}))["createProject"]["id"]
    city = (await api(PROJECT, {"n": "City"}))["createProject"]["id"]
    waves = await api.video("waves", projectId=seaside, tags=["sea"])
    harbour = await api.video("harbour lights", projectId=seaside, tags=["night"])
    streets = await api.video("streets", projectId=city, tags=["Night"])
    loose = await api.video("no project, no tag")
    everything = [loose, streets, harbour, waves]

    page = await browser.new_page()
    await sign_in(page, server.url, email)
    await _until_shown(page, everything)
    names = await page.eval_on_selector_all(
        "#filter-project option", "os => os.map(o => o.textContent)"
    )
    assert names[0] == "All" and sorted(names[1:]) == ["City", "Seaside"]

    await page.select_option("#filter-project", seaside)
    await _until_shown(page, [harbour, waves])
    await page.select_option("#filter-tag", "night")
    await _until_shown(page, [harbour])
    await page.select_option("#filter-project", "")
    await _until_shown(page, [streets, harbour])  # tags match whatever their case
    await page.select_option("#filter-tag", "sea")
    await _until_shown(page, [waves])
    await page.select_option("#filter-tag", "")
    await _until_shown(page, everything)

    # Videos made elsewhere arrive live, and only those the filter matches are shown: the
    # City one comes first, so once the Seaside one shows, the City one was passed over.
    await page.select_option("#filter-project", seaside)
    await _until_shown(page, [harbour, waves])
    passed_over = await api.video("a tram at night", projectId=city)
    arrived = await api.video("a gull over the pier", projectId=seaside)
    await page.wait_for_selector(card(arrived))
    await _until_shown(page, [arrived, harbour, waves])
    await page.select_option("#filter-project", "")
    await _until_shown(page, [arrived, passed_over, *everything])
    await browser.assert_clean()


async def test_a_change_arriving_while_the_list_loads_keeps_newest_first(
    server: LiveServer, browser: Browser
) -> None:
    """Changing a filter reloads the list; a video whose change arrives live before the
    list's answer gets its card first, and the list's videos go around it in their order,
    not after it (the oldest video here would otherwise be shown first)."""
    email = await make_user("gil@example.com")
    api = await _api(server, email)
    oldest, middle, newest = [await api.video(f"clip {n}") for n in range(3)]
    page = await browser.new_page()
    await sign_in(page, server.url, email)
    for video in (oldest, middle, newest):
        await wait_status(page, video, "COMPLETED")
    await _until_shown(page, [newest, middle, oldest])

    asked, answer = asyncio.Event(), asyncio.Event()

    async def hold_the_list(route) -> None:  # noqa: ANN001
        if "query Videos" in (route.request.post_data or ""):
            asked.set()
            await answer.wait()
        await route.continue_()

    await page.route("**/graphql", hold_the_list)
    await page.check("#filter-deleted")  # a filter changed: the list is read again
    await asyncio.wait_for(asked.wait(), 30)
    await api(CAPTION, {"id": oldest, "c": "changed while the list loads"})
    await page.wait_for_selector(card(oldest))  # its card came from the live change
    answer.set()
    await _until_shown(page, [newest, middle, oldest])
    await page.unroute("**/graphql", hold_the_list)
    await browser.assert_clean()


async def test_the_form_sends_the_project_and_story_chosen(
    server: LiveServer, browser: Browser
) -> None:
    email = await make_user("gus@example.com")
    api = await _api(server, email)
    seaside = (await api(PROJECT, {"n": "Seaside"}))["createProject"]["id"]
    city = (await api(PROJECT, {"n": "City"}))["createProject"]["id"]
    tides = (await api(STORY, {"t": "Tides", "p": seaside}))["createStory"]["id"]
    gulls = (await api(STORY, {"t": "Gulls", "p": seaside}))["createStory"]["id"]
    trams = (await api(STORY, {"t": "Trams", "p": city}))["createStory"]["id"]
    (await api(STORY, {"t": "Loose", "p": None}))["createStory"]["id"]

    page = await browser.new_page()
    await sign_in(page, server.url, email)

    async def stories() -> list[str]:
        return await page.eval_on_selector_all(
            "#gen-story option", "os => os.map(o => o.textContent)"
        )

    assert sorted(await stories()) == sorted(["None", "Tides", "Gulls", "Trams", "Loose"])
    await page.select_option("#gen-project", city)
    assert await stories() == ["None", "Trams"]  # only the chosen project's stories
    await page.select_option("#gen-project", seaside)
    assert sorted(await stories()) == ["Gulls", "None", "Tides"]
    await page.select_option("#gen-story", gulls)

    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            r.url.endswith("/graphql")
            and r.post_data
            and "generateVideo" in r.post_data
            and sent.append(json.loads(r.post_data))
        ),
    )
    video_id = await generate(page, "gulls over the pier", provider="test")
    [request] = sent
    assert request["variables"]["input"]["projectId"] == seaside
    assert request["variables"]["input"]["storyId"] == gulls
    got = await api(
        "query($id: ID!) { video(id: $id) { project { id } story { id } } }", {"id": video_id}
    )
    assert got["video"] == {"project": {"id": seaside}, "story": {"id": gulls}}

    # None chosen: neither is sent, and the video has neither.
    await page.select_option("#gen-project", "")
    assert await page.input_value("#gen-story") == ""
    plain = await generate(page, "no project at all", provider="test")
    assert "projectId" not in sent[-1]["variables"]["input"]
    assert "storyId" not in sent[-1]["variables"]["input"]
    got = await api(
        "query($id: ID!) { video(id: $id) { project { id } story { id } } }", {"id": plain}
    )
    assert got["video"] == {"project": None, "story": None}
    assert tides and trams  # made so that the lists above had something to leave out
    await browser.assert_clean()


async def test_the_form_offers_only_the_chosen_providers_choices(
    server: LiveServer, browser: Browser
) -> None:
    email = await make_user("hal@example.com")
    api = await _api(server, email)
    catalog = {p["name"]: p for p in (await api(PROVIDERS))["providers"]}
    page = await browser.new_page()
    await sign_in(page, server.url, email)

    async def values(select: str) -> list[str]:
        return await page.eval_on_selector_all(f"{select} option", "os => os.map(o => o.value)")

    # Every provider is listed; only the available ones can be chosen.
    enabled = await page.eval_on_selector_all(
        "#gen-provider option", "os => os.filter(o => !o.disabled).map(o => o.value)"
    )
    assert sorted(await values("#gen-provider")) == sorted(catalog)
    assert sorted(enabled) == sorted(n for n, p in catalog.items() if p["available"])
    assert {"local", "test", "replicate", "google"} <= set(enabled)

    checked = 0
    for name in enabled:
        provider = catalog[name]
        await page.select_option("#gen-provider", name)
        assert await values("#gen-format") == provider["outputFormats"]
        assert await page.is_visible("#gen-image-field") == provider["imageToVideo"]
        models = [m["name"] for m in provider["models"]]
        assert await page.is_visible("#gen-model-field") == (len(models) > 1)
        assert await values("#gen-model") == models
        for model in provider["models"] or [None]:
            if len(models) > 1:  # else the one model is the only choice, and hidden
                await page.select_option("#gen-model", model["name"])
            limits = model or provider
            offered = (model and model["resolutions"]) or provider["resolutions"]
            assert await values("#gen-resolution") == offered, (name, model)
            duration = page.locator("#gen-duration")
            low, high = limits["minDurationSeconds"], limits["maxDurationSeconds"]
            assert float(await duration.get_attribute("min")) == low, (name, model)
            assert float(await duration.get_attribute("max")) == high, (name, model)
            assert low <= float(await duration.input_value()) <= high
            checked += 1
    assert checked >= 2 + 2 + 5  # local, test, replicate's two models, google's five

    # Replicate's two models differ in resolutions and durations: the form followed them.
    replicate = {m["name"]: m for m in catalog["replicate"]["models"]}
    assert replicate["minimax/video-01"]["resolutions"] != replicate["google/veo-2"]["resolutions"]
    await browser.assert_clean()
