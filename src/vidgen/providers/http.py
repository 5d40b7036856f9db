"""What every HTTP adapter shares: its clients, downloads, signatures, a base class.

* :func:`build_client` makes a provider's ``httpx.AsyncClient`` (two per provider per
  process: one for its API, one for downloading outputs), with explicit timeouts and
  connection limits, ``User-Agent: vidgen/<version>`` and the provider's base URL.
  Credentials go in through :class:`HostAuth`, which sends them only to the provider's own
  hosts, never to a CDN that serves an output file.
* :func:`download_to` streams a response into a file, capped at ``max_bytes``; a file host
  that refuses an output URL (403/404/410: a signed URL expired) is a retryable
  ``output_expired``, after which the engine polls again for a fresh URL.
* :func:`verify_standard_webhook` checks Standard Webhooks signatures (Replicate, OpenAI).
* :class:`HttpProvider` holds the parts of the Provider protocol all adapters share.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import functools
import hashlib
import hmac
import io
import logging
import ssl
import urllib.request
from collections.abc import AsyncIterator, Generator, Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from vidgen import __version__
from vidgen.providers import transport
from vidgen.providers.base import (
    Capabilities,
    GenerationRequest,
    InputImage,
    Mode,
    ModelSpec,
    PollResult,
    ProviderError,
    WebhookEvent,
    WebhookRejected,
)
from vidgen.providers.errors import ErrorContext, parse_retry_after
from vidgen.settings import Settings

logger = logging.getLogger(__name__)

USER_AGENT = f"vidgen/{__version__}"
CONNECT_TIMEOUT_CAP = 10.0
KEEPALIVE_SECONDS = 30.0
DOWNLOAD_CHUNK = 64 * 1024
# What a file host (a CDN, signed storage) answers for an output URL that expired or was
# withdrawn. Not an auth or not-found problem of the API: poll again for a fresh URL.
EXPIRED_OUTPUT_STATUSES = frozenset({403, 404, 410})
OUTPUT_EXPIRED = "output_expired"

__all__ = [
    "USER_AGENT",
    "OUTPUT_EXPIRED",
    "HostAuth",
    "HttpProvider",
    "build_client",
    "data_uri",
    "download_to",
    "fit_image",
    "JPEG_OR_PNG",
    "too_large",
    "parse_retry_after",
    "verify_standard_webhook",
    "webhook_timestamp",
]


class HostAuth(httpx.Auth):
    """Adds one credential header, but only to requests for the given hosts.

    Output files often live on another host (a CDN, signed storage URLs); sending the API key
    there would leak it.
    """

    def __init__(self, header: str, value: str, hosts: Iterable[str]) -> None:
        self._header = header
        self._value = value
        self._hosts = frozenset(h.lower() for h in hosts if h)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.host.lower() in self._hosts:
            request.headers[self._header] = self._value
        yield request


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verifying context (certifi's CA bundle), built once per process.

    Building one reads and parses the whole CA bundle (about 20 ms and some MiB); every
    provider client used to build its own at start-up. A context is safe to share.
    """
    return httpx.create_ssl_context()


def build_client(
    settings: Settings,
    provider: str,
    *,
    auth: httpx.Auth | None = None,
    headers: Mapping[str, str] | None = None,
    base_url: str | None = None,
    max_connections: int | None = None,
) -> httpx.AsyncClient:
    """A shared client for ``provider`` in this process.

    Timeouts: ``provider_timeout_seconds`` for reads, writes and pool waits; connecting gets at
    most 10 s. Limits: ``max_connections``, by default ``provider_max_connections``.
    Redirects are not followed (Runway and Replicate document that they never redirect; a
    redirect means a misconfigured base URL).
    """
    seconds = settings.provider_timeout_seconds
    limit = max_connections or settings.provider_max_connections
    pooled = None
    if not _proxies_configured():
        # httpx's own transport costs about three times the CPU per request
        # (vidgen.providers.transport); it stays where a proxy must be honoured.
        pooled = transport.PooledTransport(
            max_connections=limit, keepalive_expiry=KEEPALIVE_SECONDS, ssl_context=tls_context()
        )
    return httpx.AsyncClient(
        transport=pooled,
        base_url=(base_url or settings.provider_base_url(provider) or "").rstrip("/"),
        auth=auth,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_CAP)),
        # Every connection may stay open: httpcore's pool compares its keep-alive limit with
        # ALL its connections, not the idle ones, so with a lower limit and more connections
        # busy than it, each request that ends closed its connection and the next one opened
        # a new one (a TCP connect per request, with hundreds of jobs polling).
        limits=httpx.Limits(
            max_connections=limit,
            max_keepalive_connections=limit,
            keepalive_expiry=KEEPALIVE_SECONDS,
        ),
        follow_redirects=False,
        verify=tls_context(),
    )


def _proxies_configured() -> bool:
    """True when the environment names an HTTP proxy (``HTTPS_PROXY``, ``ALL_PROXY``, ...):
    httpx's own transport routes through it (``trust_env``), vidgen's pool does not."""
    return any(scheme != "no" for scheme in urllib.request.getproxies())


class Gate:
    """At most ``size`` requests to a provider at once; the rest wait their turn in order,
    submissions ahead of the others.

    A submission starts the provider's clock: a second it waits here is a second later
    that its video is done. A poll or a download that waits a second costs that second at
    most once, at the job's end. So when hundreds of jobs are submitted while earlier ones
    poll (a batch queued at once), the submissions go first.
    """

    def __init__(self, size: int) -> None:
        self._free = max(1, size)
        # The waiting requests: submissions, then the others; each a future set when its
        # turn comes (the slot is handed over, never freed in between).
        self._waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),
            collections.deque(),
        )

    @contextlib.asynccontextmanager
    async def turn(self, *, first: bool = False) -> AsyncIterator[None]:
        """Hold one of the slots for the block; ``first``: a submission."""
        await self._acquire(first)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, first: bool) -> None:
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting[0 if first else 1]
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # handed the slot as it was canceled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(turn)
            raise

    def _release(self) -> None:
        for queue in self._waiting:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._free += 1


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


async def download_to(
    client: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    errors: ErrorContext,
    headers: Mapping[str, str] | None = None,
    follow_redirects: bool = True,
    lost_on_404: bool = True,
    api_hosts: Iterable[str] = (),
) -> str:
    """Stream ``url`` into ``dest`` and return the content type.

    More than ``max_bytes`` (by Content-Length or by counting) is a permanent ProviderError;
    any failure removes the partial file. Output URLs may redirect to storage, so redirects are
    followed here.

    Where the answer came from decides what a refusal means. From a file host (any host not
    in ``api_hosts``, judged after redirects), 403, 404 and 410 mean the (signed) output URL
    expired or was withdrawn: a retryable ``output_expired`` error, so the engine polls the
    prediction again for a fresh URL, instead of calling the API key bad or paying for a new
    prediction. From the provider's API itself the usual classification applies, and a 404
    means the output is gone: :class:`PredictionLost` by default.
    """
    api = frozenset(h.lower() for h in api_hosts if h)
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with errors.translating("download", lost_on_404=lost_on_404):
            async with client.stream(
                "GET", url, headers=dict(headers or {}), follow_redirects=follow_redirects
            ) as response:
                if not response.is_success:
                    await response.aread()
                    host = response.url.host.lower()
                    if response.status_code in EXPIRED_OUTPUT_STATUSES and host not in api:
                        raise _expired(errors, response.status_code)
                    response.raise_for_status()
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise too_large(errors.provider, max_bytes)
                with dest.open("wb") as out:
                    async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise too_large(errors.provider, max_bytes)
                        out.write(chunk)
                content_type = response.headers.get("content-type", "application/octet-stream")
    except BaseException:
        dest.unlink(missing_ok=True)  # noqa: ASYNC240 - must run even when cancelled
        raise
    if written == 0:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
        raise ProviderError(
            f"{errors.provider} returned an empty file.", retryable=True, code="empty_output"
        )
    logger.info(
        "provider output downloaded",
        extra={"action": "provider.download", "provider": errors.provider, "bytes": written},
    )
    return content_type.split(";")[0].strip()


def _expired(errors: ErrorContext, status: int) -> ProviderError:
    # Never the URL itself in the message: a signed URL is a credential.
    return ProviderError(
        f"{errors.provider}'s output file is no longer available at its URL ({status} from"
        " the file host; signed output URLs expire). The prediction is polled again for a"
        " fresh URL.",
        retryable=True,
        code=OUTPUT_EXPIRED,
        status_code=status,
    )


def too_large(provider: str, max_bytes: int) -> ProviderError:
    """The permanent error for an output over ``max_bytes``."""
    return ProviderError(
        f"{provider}'s output is larger than the {max_bytes} byte limit (VIDGEN_MAX_OUTPUT_BYTES).",
        retryable=False,
        code="too_large",
    )


def data_uri(image: InputImage) -> str:
    """The image as a ``data:`` URI (Runway, Replicate and fal accept these)."""
    return f"data:{image.content_type};base64,{base64.b64encode(image.data).decode('ascii')}"


# The image types every vendor that takes an uploaded image accepts (OpenAI also takes WebP).
JPEG_OR_PNG = ("image/jpeg", "image/png")


def fit_image(
    image: InputImage, width: int, height: int, *, keep_types: tuple[str, ...] = JPEG_OR_PNG
) -> InputImage:
    """Scale and centre-crop ``image`` to exactly ``width``x``height``.

    Stability and OpenAI demand that the input image has the output's exact size. An image
    already that size is sent as it is when its type is one of ``keep_types``, otherwise
    re-encoded as PNG (Stability takes JPEG and PNG only, not WebP). CPU work: call through
    ``asyncio.to_thread``.
    """
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(image.data)) as source:
        if source.size == (width, height) and image.content_type in keep_types:
            return image
        fitted = ImageOps.fit(source.convert("RGB"), (width, height))
    out = io.BytesIO()
    fitted.save(out, format="PNG")
    return InputImage(data=out.getvalue(), content_type="image/png")


def verify_standard_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str | None,
    now: float,
    tolerance: float,
    provider: str,
) -> str:
    """Verify a Standard Webhooks signature and return the ``webhook-id``.

    Signed bytes are ``{webhook-id}.{webhook-timestamp}.{body}``, HMAC-SHA256 keyed with the
    base64-decoded part of the ``whsec_`` secret; ``webhook-signature`` lists ``v1,<base64>``
    entries separated by spaces. Timestamps more than ``tolerance`` seconds away are stale.

    Raises:
        WebhookRejected: missing secret or headers, stale timestamp, or no matching signature.
    """
    if not secret:
        raise WebhookRejected(f"No webhook secret is configured for {provider}.")
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise WebhookRejected("Missing webhook-id, webhook-timestamp or webhook-signature.")
    sent_at = webhook_timestamp(stamp, header="webhook-timestamp")
    if abs(now - sent_at) > tolerance:
        raise WebhookRejected("webhook-timestamp is outside the tolerance (stale or replayed).")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected(f"The {provider} webhook secret is not valid base64.") from exc
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        # Bytes, not str: compare_digest refuses non-ASCII str (a TypeError, not a "no").
        if version == "v1" and hmac.compare_digest(value.encode("utf-8", "replace"), expected):
            return msg_id
    raise WebhookRejected("No webhook signature matches.")


# Unix seconds fit in 11 digits until the year 5138; more is garbage (and would overflow
# the float arithmetic of the tolerance check).
MAX_TIMESTAMP_DIGITS = 11


def webhook_timestamp(stamp: str, *, header: str) -> int:
    """A webhook's unix-seconds header as an int, or WebhookRejected.

    Only ASCII digits: ``int()`` would also take ``"1_700"``, Arabic-Indic digits or a
    5000-digit number.
    """
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_TIMESTAMP_DIGITS):
        raise WebhookRejected(f"{header} is not a unix timestamp.")
    return int(stamp)


class HttpProvider:
    """The parts of :class:`~vidgen.providers.base.Provider` every HTTP adapter shares.

    Subclasses set ``name`` and ``capabilities`` and implement submit, poll and cancel.

    Args:
        settings: The process settings (key, base URL, timeouts).
        client: A ready client (tests, or a caller sharing one); by default one is built.
    """

    name: str
    capabilities: Capabilities
    auth_header = "Authorization"
    # The word before the key ("Bearer", fal's "Key"); empty: the header holds the key alone
    # (Google's x-goog-api-key).
    auth_scheme = "Bearer"
    extra_headers: Mapping[str, str] = {}
    # Further hosts that need the key (besides the API host), e.g. a provider's file host.
    auth_hosts: tuple[str, ...] = ()

    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.api_key = settings.provider_api_key(self.name)
        self.base_url = (settings.provider_base_url(self.name) or "").rstrip("/")
        self.errors = ErrorContext(
            provider=self.name,
            key_setting=f"VIDGEN_{self.name.upper()}_API_KEY",
            secrets=tuple(s for s in self._secrets() if s),
            forbidden_is_policy=self.forbidden_is_policy,
            rate_limit_seconds=self.rate_limit_seconds,
        )
        auth = None
        if self.api_key:
            auth = HostAuth(
                self.auth_header,
                f"{self.auth_scheme} {self.api_key}".strip(),
                (host_of(self.base_url), *self.auth_hosts),
            )
        # Requests in flight at once, at most the client's connections: the rest wait here,
        # in order. httpx's own pool queue rescans every waiting request at each change,
        # which with a thousand jobs in flight took most of the worker's CPU.
        # Submissions go ahead of the waiting polls (see Gate).
        self._gate = Gate(settings.provider_max_connections)
        self.client = client or build_client(
            settings, self.name, auth=auth, headers=self.extra_headers
        )
        # Outputs come from a file host (a CDN, signed storage URLs), whose limits are not the
        # API's: downloads have their own client and connections, so that when many jobs end
        # together their final polls never wait behind the downloads of the ones before. A
        # given client (tests, a caller sharing one) serves both.
        downloads = settings.provider_download_connections
        self._download_gate = Gate(downloads)
        self.download_client = client or build_client(
            settings, self.name, auth=auth, headers=self.extra_headers, max_connections=downloads
        )

    forbidden_is_policy = False
    # The provider's documented lock-out after a 429, when it documents one (the wait used
    # when a 429 states none); None leaves it to the engine's VIDGEN_RATE_LIMIT_RETRY_SECONDS.
    rate_limit_seconds: float | None = None

    @property
    def api_hosts(self) -> tuple[str, ...]:
        """The API's host: its answers are the API's. Every other host, ``auth_hosts``
        included (a file host that wants the key), serves files."""
        return (host_of(self.base_url),)

    def _secrets(self) -> Iterable[str | None]:
        return (self.api_key,)

    @property
    def available(self) -> bool:
        """True when the provider is usable: see :attr:`unavailable_reason`."""
        return self.unavailable_reason is None

    @property
    def unavailable_reason(self) -> str | None:
        """Why jobs are refused (shown by the ``providers`` query), None when usable.

        The base answers for the API key; adapters add their own reasons (a base URL that
        must be set, a model catalog that must be configured, an API the vendor withdrew).
        """
        if not self.api_key:
            return f"{self.errors.key_setting} is not set."
        return None

    def _require_available(self) -> None:
        reason = self.unavailable_reason
        if reason is not None:
            raise ProviderError(
                f"{self.name} is unavailable: {reason}",
                retryable=False,
                code="auth" if not self.api_key else "unavailable",
            )

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def offered_spec(self, request: GenerationRequest) -> ModelSpec:
        """The catalog entry of the request's model, once the request is within it.

        Requests are validated against the capabilities at enqueue; this refuses (permanent
        ``bad_request``) what slipped past, because several vendors cannot even express a
        choice their model does not offer (a size for a model without one) and would
        silently make something else.
        """
        self._require_available()
        caps = self.capabilities
        mode = Mode.IMAGE if request.input_image is not None else Mode.TEXT
        spec = caps.spec(request.model)
        problem = None
        if spec is None:
            problem = f"model {request.model or caps.default_model!r} is not offered"
        elif not spec.offers(mode):
            problem = f"{spec.name} does not do {mode.label}"
        elif request.resolution not in spec.resolutions_for(mode):
            problem = f"{spec.name} does not make {request.resolution} in {mode.label}"
        elif not spec.accepts_duration(request.duration_seconds, request.resolution):
            problem = f"{spec.name} does not make {request.duration_seconds:g} s videos"
            if request.resolution in spec.long_resolutions:
                problem += f" at {request.resolution}"
        if problem is not None:
            raise ProviderError(f"{self.name}: {problem}.", retryable=False, code="bad_request")
        assert spec is not None
        return spec

    async def download(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        """Stream ``result.output_url`` into ``dest`` (at most ``max_bytes``)."""
        if not result.output_url:
            raise ProviderError(
                f"{self.name} reported success without an output.",
                retryable=False,
                code="prediction_failed",
            )
        headers = result.extra.get("download_headers") or {}
        async with self._download_gate.turn():
            return await download_to(
                self.download_client,
                result.output_url,
                dest,
                max_bytes=max_bytes,
                errors=self.errors,
                headers=headers,  # type: ignore[arg-type]
                api_hosts=self.api_hosts,
            )

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> WebhookEvent:
        """Providers without webhooks reject every callback."""
        raise WebhookRejected(f"{self.name} does not send webhooks.")

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.download_client is not self.client:
            await self.download_client.aclose()

    async def _send(
        self, method: str, url: str, action: str, *, lost_on_404: bool = False, **kwargs: object
    ) -> httpx.Response:
        """One request, classified: returns only a 2xx response (body read)."""
        self._require_available()
        with self.errors.translating(action, lost_on_404=lost_on_404):
            async with self._gate.turn(first=action == "submit"):
                response = await self.client.request(method, url, **kwargs)  # type: ignore[arg-type]
            response.raise_for_status()
        return response

    @contextlib.asynccontextmanager
    async def _stream(
        self, method: str, url: str, action: str, **kwargs: object
    ) -> AsyncIterator[httpx.Response]:
        self._require_available()
        with self.errors.translating(action, lost_on_404=action == "poll"):
            async with (
                self._gate.turn(first=action == "submit"),
                self.client.stream(method, url, **kwargs) as response,  # type: ignore[arg-type]
            ):
                if not response.is_success:
                    await response.aread()
                    response.raise_for_status()
                yield response
