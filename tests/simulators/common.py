"""What every provider simulator shares: scripted scenarios, jobs, faults, auth, signing.

A test scripts behaviour on ``sim.scenario``::

    sim.scenario.outcome = "fail"            # "succeed" | "fail" | "policy"
    sim.scenario.queued_polls = 1            # polls answered "queued" before "running"
    sim.scenario.running_polls = 2           # polls answered "running" (progress rises)
    sim.scenario.fail_next("submit", "429")  # one-off faults per route, in order:
                                             # "429" "500" "hang" "malformed" "401" "403"
                                             # "deep" (200, JSON nested too deep to parse)
                                             # "expired" (403 from a file host: S3-style
                                             # "Request has expired"), "gone" (410)
    sim.scenario.fail_first_n("poll", 2, "500")
    sim.scenario.tick_seconds = 0.5          # also advance jobs by wall-clock time
    sim.scenario.retry_after = None          # a 429 without Retry-After (no provider
                                             # promises one; the default "7" is ours)
    sim.scenario.rate_limit_detail = "... resets in ~30s."   # a 429 body (Replicate's style)
    sim.file_host = "localhost"              # serve output files from another host name
                                             # (a CDN), as real providers do

Routes: ``submit``, ``poll``, ``result`` (fal), ``download``, ``cancel``.

Magic prompt words (for use across processes, where a test cannot reach ``scenario``):
``sim:fail`` and ``sim:policy`` set the job's outcome; ``sim:slow`` triples its running
polls; ``sim:429``, ``sim:500``, ``sim:hang`` and ``sim:malformed`` make the FIRST
submission of that prompt fail that way (a retry of the same prompt then succeeds).

``sim.submissions`` counts accepted submissions (no double submit); ``sim.requests`` logs
``(method, path)`` of every request; ``sim.received`` keeps each accepted submission's body
and ``sim.dropped`` the input fields each one carried that the model's schema does not list
(vendors that ignore such fields silently, as Replicate and fal do, still take the request:
a test asserts nothing was dropped). ``sim.deliveries`` keeps every webhook sent, and
:meth:`Simulator.replay_webhook` sends one again byte for byte (same id, timestamp and
signature), as a retrying provider or an attacker would. ``sim.webhook_target`` sends the
clock-driven webhooks there instead of to the URL given at submit (a TLS-terminating proxy
in front of a plain-http receiver).

Every simulator refuses what its vendor documents as invalid (unknown models and versions,
enums, image types and sizes): a request a simulator takes is a valid request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.simulators.media import sample_mp4

FAULTS = ("429", "500", "503", "hang", "malformed", "401", "403", "deep", "expired", "gone")
DEEP_JSON = b"[" * 100_000  # deeper than any JSON parser's recursion limit
MAGIC_FAULTS = {
    "sim:429": "429",
    "sim:500": "500",
    "sim:hang": "hang",
    "sim:malformed": "malformed",
}


@dataclass
class Scenario:
    """Per-test script of a simulator's behaviour (see the module docstring)."""

    outcome: str = "succeed"
    queued_polls: int = 1
    running_polls: int = 2
    tick_seconds: float | None = None
    hang_seconds: float = 2.0
    retry_after: str | None = "7"
    retry_after_ms: str | None = None
    rate_limit_detail: str = "Request was throttled."
    faults: dict[str, deque[str]] = field(default_factory=dict)

    def fail_next(self, route: str, kind: str, times: int = 1) -> None:
        assert kind in FAULTS, kind
        self.faults.setdefault(route, deque()).extend([kind] * times)

    def fail_first_n(self, route: str, n: int, kind: str = "500") -> None:
        self.fail_next(route, kind, n)

    def take_fault(self, route: str) -> str | None:
        queue = self.faults.get(route)
        return queue.popleft() if queue else None


@dataclass
class Job:
    id: str
    prompt: str
    outcome: str
    running_polls: int
    created: float = field(default_factory=time.monotonic)
    polls: int = 0
    canceled: bool = False
    webhook_url: str | None = None
    body: dict[str, Any] = field(default_factory=dict)

    def phase(self, scenario: Scenario) -> tuple[str, float]:
        """("queued"|"running"|"succeeded"|"failed"|"policy"|"canceled", progress 0..1)."""
        if self.canceled:
            return "canceled", 0.0
        step = self.polls
        if scenario.tick_seconds:
            step = max(step, int((time.monotonic() - self.created) / scenario.tick_seconds))
        if step <= scenario.queued_polls:
            return "queued", 0.0
        running_step = step - scenario.queued_polls
        if running_step <= self.running_polls:
            return "running", running_step / (self.running_polls + 1)
        return {"succeed": "succeeded", "fail": "failed", "policy": "policy"}[self.outcome], 1.0


class Simulator:
    """Base for one provider's simulator: subclasses add ``routes()`` and response shapes.

    Args:
        api_key: The only key accepted; anything else gets 401 (echoing the token, so tests
            can prove the adapter scrubs it).
        auth_scheme: "Bearer" or "Key" (fal).
    """

    auth_scheme = "Bearer"

    def __init__(self, *, api_key: str = "sim-key", scenario: Scenario | None = None) -> None:
        self.api_key = api_key
        self.scenario = scenario or Scenario()
        self.jobs: dict[str, Job] = {}
        self.submissions = 0
        self.requests: list[tuple[str, str]] = []
        self.received: list[dict[str, Any]] = []  # submit bodies as the simulator saw them
        self.dropped: list[tuple[str, ...]] = []  # per submission: fields the model ignored
        self.webhook_target: str | None = None
        self.base_url = ""  # set by the test after the server starts (used in output URLs)
        # Output files served under another host name (e.g. "localhost" for a server on
        # 127.0.0.1): what a real CDN looks like to the adapter. None: the API's own host.
        self.file_host: str | None = None
        self.deliveries: list[tuple[str, dict[str, str], bytes]] = []
        self._magic_served: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = Starlette(routes=[*self.routes(), Route("/files/{id}.mp4", self.file)])
        self.app.add_middleware(_Recorder, sim=self)  # type: ignore[arg-type]

    # --- for subclasses -----------------------------------------------------------------
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    # --- helpers --------------------------------------------------------------------------
    def url_for(self, request: Request, path: str) -> str:
        return f"{self.base_url or str(request.base_url).rstrip('/')}{path}"

    def file_url(self, path: str, request: Request | None = None) -> str:
        """The URL of an output file: on ``file_host`` when set, else on the API's host."""
        base = self.base_url or (str(request.base_url).rstrip("/") if request else "")
        if self.file_host:
            split = httpx.URL(base)
            base = str(split.copy_with(host=self.file_host)).rstrip("/")
        return f"{base}{path}"

    def authorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if header == f"{self.auth_scheme} {self.api_key}":
            return None
        token = header.partition(" ")[2]
        return self.error(401, f"Invalid credentials: {token!s} is not a valid key")

    async def fault(self, route: str, prompt: str | None = None) -> Response | None:
        kind = self.scenario.take_fault(route)
        if kind is None and prompt and route == "submit":
            for word, magic_kind in MAGIC_FAULTS.items():
                if word in prompt and (prompt, word) not in self._magic_served:
                    self._magic_served.add((prompt, word))
                    kind = magic_kind
                    break
        if kind is None:
            return None
        if kind == "429":
            headers = {}
            if self.scenario.retry_after is not None:
                headers["Retry-After"] = self.scenario.retry_after
            if self.scenario.retry_after_ms is not None:
                headers["retry-after-ms"] = self.scenario.retry_after_ms
            response = self.error(429, self.scenario.rate_limit_detail)
            response.headers.update(headers)
            return response
        if kind == "deep":
            return Response(DEEP_JSON, media_type="application/json")
        if kind == "expired":
            xml = (
                "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                "<Message>Request has expired</Message></Error>"
            )
            return Response(xml, status_code=403, media_type="application/xml")
        if kind == "gone":
            return Response(b"Gone", status_code=410, media_type="text/plain")
        if kind == "500":
            return self.error(500, "Internal server error")
        if kind == "503":
            return self.error(503, "Service unavailable: load shedding")
        if kind == "401":
            return self.error(401, "Unauthorized")
        if kind == "403":
            return self.error(403, "Forbidden: flagged by content moderation")
        if kind == "hang":
            await asyncio.sleep(self.scenario.hang_seconds)
            return self.error(504, "hung")
        return Response(b'{"id": "trunc', media_type="application/json")  # malformed

    def new_job(self, prompt: str, *, job_id: str | None = None, **kwargs: Any) -> Job:
        outcome = self.scenario.outcome
        if "sim:policy" in prompt:
            outcome = "policy"
        elif "sim:fail" in prompt:
            outcome = "fail"
        running = self.scenario.running_polls * (3 if "sim:slow" in prompt else 1)
        job = Job(
            id=job_id or str(uuid.uuid4()),
            prompt=prompt,
            outcome=outcome,
            running_polls=running,
            **kwargs,
        )
        self.jobs[job.id] = job
        self.submissions += 1
        if job.webhook_url and self.scenario.tick_seconds:
            task = asyncio.get_running_loop().create_task(self._auto_webhook(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return job

    def polled(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is not None:
            job.polls += 1
        return job

    def schema_check(
        self, values: dict[str, Any], schema: dict[str, Any]
    ) -> tuple[list[str], tuple[str, ...]]:
        """Check ``values`` against ``schema`` (field -> a tuple of allowed values, or a type
        or tuple of types; a bool is not taken for a number): the problems, and the fields
        the schema does not list."""
        problems = []
        for name, value in values.items():
            if name not in schema:
                continue
            allowed = schema[name]
            types = allowed if isinstance(allowed, tuple) else (allowed,)
            if all(isinstance(t, type) for t in types):
                if not isinstance(value, types) or isinstance(value, bool) is not (bool in types):
                    problems.append(f"{name}: must be a {' or '.join(t.__name__ for t in types)}")
            elif value not in allowed:
                problems.append(f"{name}: must be one of {', '.join(map(str, allowed))}")
        return problems, tuple(sorted(set(values) - set(schema)))

    async def file(self, request: Request) -> Response:
        denied = await self.fault("download")
        if denied is not None:
            return denied
        if request.path_params["id"] not in self.jobs:
            return self.error(404, "No such file")
        return Response(sample_mp4(), media_type="video/mp4")

    # --- webhooks -------------------------------------------------------------------------
    def webhook_payload(self, job: Job) -> tuple[dict[str, str], bytes]:
        """Signed headers and body announcing ``job``'s current state (subclasses)."""
        raise NotImplementedError

    async def deliver_webhook(
        self, job_id: str, url: str | None = None, *, client: httpx.AsyncClient | None = None
    ) -> httpx.Response:
        """POST the signed webhook for ``job_id`` to ``url`` (default: the job's own), with
        ``client`` when given (e.g. one on an ``httpx.ASGITransport`` of the receiving app)."""
        job = self.jobs[job_id]
        headers, body = self.webhook_payload(job)
        target = url or job.webhook_url
        assert target, "no webhook URL"
        self.deliveries.append((target, headers, body))
        return await _post(target, headers, body, client)

    async def replay_webhook(
        self, index: int = -1, *, times: int = 1, client: httpx.AsyncClient | None = None
    ) -> list[httpx.Response]:
        """Send delivery ``index`` again, byte for byte, ``times`` times."""
        target, headers, body = self.deliveries[index]
        return [await _post(target, headers, body, client) for _ in range(times)]

    async def _auto_webhook(self, job: Job) -> None:
        """With ``tick_seconds`` set, jobs finish by themselves: announce the end."""
        while job.phase(self.scenario)[0] in ("queued", "running"):  # noqa: ASYNC110 - clock-driven
            await asyncio.sleep(self.scenario.tick_seconds or 0.1)
        try:
            await self.deliver_webhook(job.id, self.webhook_target)
        except httpx.HTTPError:
            pass  # the receiver is gone; real providers would retry, tests do not care


async def _post(
    target: str, headers: dict[str, str], body: bytes, client: httpx.AsyncClient | None
) -> httpx.Response:
    headers = {**headers, "content-type": "application/json"}
    if client is not None:
        return await client.post(target, content=body, headers=headers)
    async with httpx.AsyncClient() as own:
        return await own.post(target, content=body, headers=headers)


class _Recorder:
    """ASGI middleware: logs each request's method and path on the simulator."""

    def __init__(self, app: Any, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.sim.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


# --- signing ----------------------------------------------------------------------------
def new_whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def standard_webhook_headers(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers signing ``body`` with a ``whsec_`` secret."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{base64.b64encode(digest).decode()}",
    }


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


Handler = Callable[[Request], Any]
