"""End-to-end fixtures: the real app over HTTP, a worker, and every provider's simulator.

Each test gets its own database (``backend`` from the root conftest), settings that point
every HTTP provider at a fresh simulator (one uvicorn per provider for the whole session,
each test plugs a new simulator into it), one :class:`~vidgen.runtime.Runtime` shared by the
app and the test's workers (so webhooks reach the job through the same in-memory bus), and
the app served by ``tests.api.conftest.serve`` with ``public_url`` set to its real address
(signed media URLs and webhook URLs then point at it).

Speed: the adapters' poll floors are fixed in their capabilities (2 s; Runway's comes from
``runway_poll_seconds``), so the ``runtime`` fixture replaces each adapter's capabilities
with a fast floor (:data:`FAST_POLL`), the same way tests/jobs does for the test provider.
The webhook tests raise it again to prove a delivery wakes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from tests.api.conftest import LiveServer, serve
from tests.conftest import BACKENDS
from tests.simulators.common import Simulator, new_whsec
from tests.simulators.server import Switch
from tests.simulators.server import serve as serve_in_thread
from tests.simulators.vendors import CALLBACK_NAMES, NAMES, VENDORS
from vidgen.events.memory import MemoryBus
from vidgen.graphql.types import decode_id
from vidgen.jobs.worker import Worker
from vidgen.models import User, Video, VideoStatus
from vidgen.providers.http import tls_context
from vidgen.runtime import Runtime
from vidgen.services import users
from vidgen.settings import Settings

S = VideoStatus
TERMINAL = (S.COMPLETED, S.FAILED, S.CANCELED)

#: The failure matrix runs on one backend only: SQLite when enabled. Provider behaviour does
#: not depend on the database, the queue's backend-specific SQL is covered on both backends
#: by tests/jobs, and every test here on PostgreSQL costs a CREATE/DROP DATABASE on a server
#: shared with the other suites. Local e2e, every provider's success path and the Replicate
#: webhook run on both.
ONE_BACKEND = "sqlite" if "sqlite" in BACKENDS else BACKENDS[0]
one_backend = pytest.mark.parametrize("backend", [ONE_BACKEND])

HTTP_PROVIDERS = NAMES
WEBHOOK_PROVIDERS = CALLBACK_NAMES
KEYS = {name: vendor.key for name, vendor in VENDORS.items()}
REPLICATE_WHSEC = new_whsec()
OPENAI_WHSEC = new_whsec()
FAL_SIGNING_KEY = Ed25519PrivateKey.generate()

# A request each provider accepts (the defaults of generateVideo are not all valid for all).
REQUESTS: dict[str, dict[str, Any]] = {
    name: {"resolution": vendor.resolution, "durationSeconds": vendor.duration_seconds}
    for name, vendor in VENDORS.items()
}
# The provider endpoint a cancel must reach (None: the provider has no cancel).
CANCEL_ROUTES = {name: vendor.cancel_route for name, vendor in VENDORS.items()}

CLIENT_TIMEOUT = 1.0  # provider_timeout_seconds; a simulated hang outlasts it
HANG_SECONDS = CLIENT_TIMEOUT + 0.6
FAST_POLL = 0.05
THUMBNAIL_WIDTH = 160

GENERATE_VIDEO = """
mutation GenerateVideo($input: GenerateVideoInput!) {
  generateVideo(input: $input) { id status provider resolution outputFormat durationSeconds }
}
"""
VIDEO = """
query Video($id: ID!) {
  video(id: $id) {
    id status progress provider resolution outputFormat durationSeconds frameRate width height
    fileSize videoUrl thumbnailUrl inputImageUrl predictionId errorMessage retryCount version
    statusHistory { status message }
  }
}
"""
CANCEL_VIDEO = "mutation CancelVideo($id: ID!) { cancelVideo(id: $id) { id status } }"


# --- simulators ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sim_servers() -> Iterator[dict[str, tuple[Switch, str]]]:
    """One uvicorn (own thread and loop) per provider for the session; tests plug in sims."""
    with contextlib.ExitStack() as stack:
        running = {}
        for name in HTTP_PROVIDERS:
            switch = Switch()
            running[name] = (switch, stack.enter_context(serve_in_thread(switch)))
        yield running


class Sims:
    """This test's simulators by provider name; :meth:`replace` plugs in a differently
    configured one (e.g. one that accepts another key)."""

    def __init__(self, servers: dict[str, tuple[Switch, str]]) -> None:
        self._servers = servers
        self._sims: dict[str, Simulator] = {}
        for name in HTTP_PROVIDERS:
            self.replace(name)

    def __getitem__(self, name: str) -> Simulator:
        return self._sims[name]

    def base_url(self, name: str) -> str:
        return self._servers[name][1]

    def replace(self, name: str, **kwargs: Any) -> Simulator:
        options: dict[str, Any] = {}
        if name == "replicate":
            options["webhook_secret"] = REPLICATE_WHSEC
        elif name == "openai":
            options["webhook_secret"] = OPENAI_WHSEC
        elif name == "fal":
            options["signing_key"] = FAL_SIGNING_KEY
        options.update(kwargs)
        sim = VENDORS[name].simulator_for(**options)
        # Short and predictable: one "queued" poll, one "running" poll, then the outcome.
        sim.scenario.queued_polls = 1
        sim.scenario.running_polls = 1
        sim.scenario.hang_seconds = HANG_SECONDS
        sim.scenario.retry_after = "1"
        switch, base_url = self._servers[name]
        sim.base_url = base_url
        switch.app = sim.app
        self._sims[name] = sim
        return sim


@pytest.fixture
def sims(sim_servers: dict[str, tuple[Switch, str]]) -> Sims:
    return Sims(sim_servers)


# --- settings, runtime, app ----------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings, sims: Sims) -> Settings:
    """The root settings plus every HTTP provider pointed at its simulator, with its key."""
    for name, vendor in VENDORS.items():
        for setting, value in vendor.settings_for(sims.base_url(name)).items():
            setattr(settings, setting, value)
    settings.replicate_webhook_secret = REPLICATE_WHSEC
    settings.openai_webhook_secret = OPENAI_WHSEC
    settings.provider_timeout_seconds = CLIENT_TIMEOUT
    settings.runway_poll_seconds = FAST_POLL
    settings.thumbnail_width = THUMBNAIL_WIDTH
    settings.local_frame_rate = 12.0
    return settings


def set_poll_floor(provider: Any, seconds: float) -> None:
    """Replace one adapter's polling floor (its capabilities are a frozen dataclass)."""
    provider.capabilities = dataclasses.replace(
        provider.capabilities, min_poll_interval=seconds, max_poll_interval=max(seconds, 0.2)
    )


@pytest_asyncio.fixture
async def runtime(db: Settings) -> Runtime:
    """The runtime the app and the workers share; the app's lifespan opens and closes it."""
    rt = Runtime.create(db, bus=MemoryBus())
    for name in HTTP_PROVIDERS:
        set_poll_floor(rt.providers[name], FAST_POLL)
    return rt


@pytest_asyncio.fixture
async def server(runtime: Runtime) -> AsyncIterator[LiveServer]:
    """The real app (no embedded worker) on a free port, with ``public_url`` pointing at it."""
    from vidgen.web.app import create_app

    settings = runtime.settings
    app = create_app(settings, runtime=runtime, manage_database=False, embedded_worker=False)
    async with serve(app) as url:
        settings.public_url = url
        async with httpx.AsyncClient(base_url=url, timeout=30, verify=tls_context()) as client:
            yield LiveServer(url=url, app=app, runtime=runtime, settings=settings, client=client)


@pytest_asyncio.fixture
async def token(db: Settings) -> str:
    # Straight to the model: argon2 hashing (the service's) costs time and is not under test.
    user = await User.create(email="e2e@example.com", password_hash="not-a-login")
    value, _ = await users.issue_token(user=user, name="e2e")
    return value


# --- helpers -------------------------------------------------------------------------------


def png_bytes(width: int = 320, height: int = 200) -> bytes:
    """A PNG with some structure (a gradient and a square), so pans and zooms show."""
    image = Image.new("RGB", (width, height))
    image.putdata(
        [(x * 255 // width, y * 255 // height, 120) for y in range(height) for x in range(width)]
    )
    image.paste((250, 250, 250), (width // 3, height // 3, width // 2, height // 2))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def db_id(global_id: str) -> int:
    found = decode_id(global_id, "Video")
    assert found is not None, global_id
    return found


async def generate(
    server: LiveServer, token: str, *, image: bytes | None = None, **values: Any
) -> dict[str, Any]:
    """``generateVideo`` over HTTP (multipart when an image is given); the new video."""
    if image is None:
        body = await server.gql(GENERATE_VIDEO, {"input": values}, token=token)
    else:
        response = await server.upload(
            GENERATE_VIDEO,
            {"input": {**values, "inputImage": None}},
            {"variables.input.inputImage": ("input.png", image, "image/png")},
            token=token,
        )
        assert response.status_code == 200, response.text
        body = response.json()
    assert "errors" not in body, body
    video = body["data"]["generateVideo"]
    assert video["status"] == "QUEUED"
    return video


async def generate_for(
    server: LiveServer, token: str, provider: str, prompt: str = "a red fox in snow", **more: Any
) -> tuple[int, str]:
    """Queue a video on ``provider`` with a request it accepts: (database id, global id)."""
    values: dict[str, Any] = {"prompt": prompt, "provider": provider, **REQUESTS[provider]}
    values.update(more)
    image = png_bytes() if not VENDORS[provider].text_to_video else None
    video = await generate(server, token, image=image, **values)
    return db_id(video["id"]), video["id"]


async def fetch_video(server: LiveServer, token: str, global_id: str) -> dict[str, Any]:
    body = await server.gql(VIDEO, {"id": global_id}, token=token)
    assert "errors" not in body, body
    return body["data"]["video"]


async def wait_until(
    predicate: Callable[[], Awaitable[object]], *, seconds: float = 10.0, step: float = 0.02
) -> Any:
    """Poll an async predicate until it is truthy; return its value (fail after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds}s")
        await asyncio.sleep(step)


async def wait_for_status(
    video_id: int, statuses: tuple[VideoStatus, ...] = TERMINAL, *, seconds: float = 15.0
) -> Video:
    async def reached() -> Video | None:
        video = await Video.get(id=video_id)
        return video if S(video.status) in statuses else None

    return await wait_until(reached, seconds=seconds)


async def wait_for_prediction(video_id: int, *, seconds: float = 10.0) -> Video:
    """The video once it is processing with a stored prediction id."""

    async def stored() -> Video | None:
        video = await Video.get(id=video_id)
        return video if video.prediction_id and S(video.status) is S.PROCESSING else None

    return await wait_until(stored, seconds=seconds)


@contextlib.asynccontextmanager
async def running_worker(runtime: Runtime, *, concurrency: int = 2) -> AsyncIterator[Worker]:
    """A worker running in the background (claim loop, heartbeat, sweeper) for the block."""
    worker = Worker(runtime, concurrency=concurrency)
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace_seconds=0)
