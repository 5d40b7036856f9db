"""The ``test`` provider: a real provider whose behaviour is commanded by the prompt.

Enabled with ``VIDGEN_ENABLE_TEST_PROVIDER=true``; ``VIDGEN_TEST_PROVIDER_LOG`` (the
``test_provider_log`` setting) names the submission log. Because the commands travel in the
prompt and the prediction id (which encodes them with the submission time), a prediction
submitted by one process can be polled by another, e.g. after a worker was killed.

Commands (words of the prompt, in any order; other words are ignored)::

    succeed           (default) succeed at the first poll
    sleep:S           run for S seconds (wall clock since submission), then succeed
    progress          report progress while running (with sleep:S)
    fail              the prediction fails: a permanent error
    reject            submit is refused: a permanent error (bad request)
    fail-retryable    submit always fails with a retryable error (not an outage: each
                      failure spends the retry budget)
    fail-times:N      submit fails with such a retryable error the first N times for this video
    outage-times:N    submit fails with a 503 (a provider outage, see vidgen.jobs.retry) the
                      first N times for this video
    retry-after:S     those retryable errors carry Retry-After S (alone: fail-times:1)
    hang              the prediction never finishes (until canceled)
    raise             submit raises an unexpected exception (a bug, not a ProviderError)
    lose-once         the first poll for this video in each process: prediction lost

Every submission is counted per process (:attr:`TestProvider.submissions`, by reference)
and, when a log file is configured, appended to it as one line
``reference<TAB>prediction_id<TAB>pid`` so tests can count submissions across processes.
The output is a tiny real video (a few 64x64 frames, made once with PyAV).

Webhooks are signed with HMAC-SHA256 over ``"{timestamp}." + body`` in
``X-Test-Signature`` (hex) and ``X-Test-Timestamp``; see :meth:`TestProvider.sign_webhook`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import hashlib
import hmac
import json
import math
import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from vidgen.providers.base import (
    Capabilities,
    GenerationRequest,
    PollResult,
    PredictionLost,
    ProviderError,
    State,
    Submission,
    WebhookEvent,
    WebhookRejected,
)

DEFAULT_WEBHOOK_SECRET = "test-webhook-secret"
SIGNATURE_HEADER = "x-test-signature"
TIMESTAMP_HEADER = "x-test-timestamp"
PREFIX = "test1-"
ISSUED_KEPT = 4096  # submissions whose payload a poll reads without decoding the id

_CONTENT_TYPES = {"mp4": "video/mp4", "webm": "video/webm"}
_videos: dict[str, bytes] = {}
_videos_lock = threading.Lock()


@dataclass(frozen=True)
class Commands:
    """The behaviour asked for by a prompt."""

    sleep: float = 0.0
    progress: bool = False
    fail: bool = False
    reject: bool = False
    fail_retryable: bool = False
    fail_times: int = 0
    outage_times: int = 0
    retry_after: float | None = None
    hang: bool = False
    raise_: bool = False
    lose_once: bool = False

    @classmethod
    def parse(cls, prompt: str) -> Commands:
        # Submit and every poll read the same prompt; a benchmark sends thousands alike.
        return _parse_commands(cls, prompt)

    @classmethod
    def _parse(cls, prompt: str) -> Commands:
        values: dict[str, object] = {}
        for word in prompt.replace(",", " ").split():
            name, _, arg = word.strip().lower().partition(":")
            try:
                if name == "sleep":
                    values["sleep"] = float(arg)
                elif name == "fail-times":
                    values["fail_times"] = int(arg)
                elif name == "outage-times":
                    values["outage_times"] = int(arg)
                elif name == "retry-after":
                    values["retry_after"] = float(arg)
                elif name in {"progress", "fail", "reject", "hang", "raise"}:
                    values[name if name != "raise" else "raise_"] = True
                elif name == "fail-retryable":
                    values["fail_retryable"] = True
                elif name == "lose-once":
                    values["lose_once"] = True
            except ValueError:
                continue
        if values.get("retry_after") is not None and not values.get("fail_times"):
            values["fail_times"] = 1
        return cls(**values)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _parse_commands(cls: type[Commands], prompt: str) -> Commands:
    return cls._parse(prompt)  # frozen: one instance can serve every caller


def _encode(payload: dict[str, object]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(prediction_id: str) -> dict[str, object]:
    if not prediction_id.startswith(PREFIX):
        raise PredictionLost(f"not a test prediction: {prediction_id!r}")
    body = prediction_id[len(PREFIX) :]
    try:
        return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError as exc:
        raise PredictionLost(f"unreadable test prediction: {prediction_id!r}") from exc


def tiny_video(fmt: str = "mp4") -> bytes:
    """A small real video (8 frames, 64x64, 8 fps), made once per process per format."""
    with _videos_lock:
        if fmt not in _videos:
            _videos[fmt] = _render_tiny_video(fmt)
        return _videos[fmt]


def _render_tiny_video(fmt: str) -> bytes:
    import av

    codec = "libx264" if fmt == "mp4" else "libvpx-vp9"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"tiny.{fmt}"
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(codec, rate=8)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            stream.time_base = Fraction(1, 8)
            for i in range(8):
                frame = av.VideoFrame(64, 64, "rgb24")
                frame.planes[0].update(bytes([(i * 30) % 256, 90, 200] * 64 * 64))
                frame.pts = i
                for packet in stream.encode(frame.reformat(format="yuv420p")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path.read_bytes()


class TestProvider:
    """The prompt-commanded provider (see the module docstring)."""

    __test__ = False  # not a pytest test class

    name = "test"
    capabilities = Capabilities(
        text_to_video=True,
        image_to_video=True,
        resolutions=("64x64", "256x256", "512x512", "640x360", "1280x720", "1920x1080"),
        output_formats=("mp4", "webm"),
        min_duration_seconds=1.0,
        max_duration_seconds=60.0,
        max_prompt_length=2000,
        webhooks=True,
        min_poll_interval=0.02,
        max_poll_interval=0.5,
    )

    def __init__(
        self,
        *,
        submissions_log: Path | str | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        tolerance_seconds: float = 300.0,
    ) -> None:
        self.submissions_log = Path(submissions_log) if submissions_log else None
        self.webhook_secret = webhook_secret
        self.tolerance_seconds = tolerance_seconds
        self.submissions: Counter[str] = Counter()
        self.polls: Counter[str] = Counter()
        self.cancels: list[str] = []
        self._canceled: set[str] = set()
        self._lost: set[str] = set()
        # The payloads of this instance's latest submissions, so that their polls need not
        # decode the id again (a rescue in another process decodes it: the id says it all).
        self._issued: collections.OrderedDict[str, dict[str, object]] = collections.OrderedDict()

    @property
    def available(self) -> bool:
        return True

    async def submit(self, request: GenerationRequest) -> Submission:
        commands = Commands.parse(request.prompt)
        reference = request.reference or "-"
        self.submissions[reference] += 1
        count = self.submissions[reference]
        payload: dict[str, object] = {
            "p": request.prompt[:120],
            "f": request.output_format,
            "r": reference,
            # Rounded down: rounded to nearest, a poll within half a millisecond of the
            # submission saw a negative age and an instant job still running.
            "t": math.floor(time.time() * 1000) / 1000,
            # Tells apart submissions within one millisecond; no syscall (not a secret).
            "u": f"{random.getrandbits(32):08x}",
        }
        prediction_id = _encode(payload)
        self._issued[prediction_id] = payload
        if len(self._issued) > ISSUED_KEPT:
            self._issued.popitem(last=False)
        if self.submissions_log is not None:
            line = f"{reference}\t{prediction_id}\t{os.getpid()}\n"
            await asyncio.to_thread(_append, self.submissions_log, line)
        if commands.raise_:
            raise RuntimeError("test provider: 'raise' commanded")
        if commands.reject:
            raise ProviderError(
                "test provider: the request was rejected", retryable=False, code="bad_request"
            )
        if count <= commands.outage_times:
            raise ProviderError(
                f"test provider: outage #{count} (503)",
                retryable=True,
                code="server_error",
                status_code=503,
            )
        if commands.fail_retryable or count <= commands.fail_times:
            raise ProviderError(
                f"test provider: temporary failure #{count}",
                retryable=True,
                code="rate_limited" if commands.retry_after else "temporary",
                retry_after=commands.retry_after,
                status_code=429 if commands.retry_after else None,
            )
        instant = not (commands.sleep or commands.hang or commands.fail or commands.lose_once)
        return Submission(
            prediction_id=prediction_id, state=State.SUCCEEDED if instant else State.QUEUED
        )

    async def poll(self, prediction_id: str) -> PollResult:
        payload = self._issued.get(prediction_id) or _decode(prediction_id)
        self.polls[prediction_id] += 1
        commands = Commands.parse(str(payload.get("p", "")))
        if prediction_id in self._canceled:
            return PollResult(state=State.CANCELED)
        reference = str(payload.get("r", "-"))
        if commands.lose_once and reference not in self._lost:
            self._lost.add(reference)
            raise PredictionLost()
        if commands.hang:
            return PollResult(state=State.RUNNING, message="hanging as commanded")
        elapsed = time.time() - float(payload.get("t", 0.0))  # type: ignore[arg-type]
        if elapsed < commands.sleep:
            progress = elapsed / commands.sleep if commands.progress else None
            return PollResult(
                state=State.RUNNING,
                progress=progress,
                poll_after=min(0.1, commands.sleep - elapsed),
            )
        if commands.fail:
            return PollResult(
                state=State.FAILED,
                error=ProviderError(
                    "test provider: generation failed as commanded",
                    retryable=False,
                    code="generation_failed",
                ),
            )
        fmt = str(payload.get("f", "mp4"))
        return PollResult(
            state=State.SUCCEEDED,
            progress=1.0,
            output_url=f"test://{prediction_id}",
            extra={"format": fmt if fmt in _CONTENT_TYPES else "mp4"},
        )

    async def cancel(self, prediction_id: str) -> None:
        self.cancels.append(prediction_id)
        self._canceled.add(prediction_id)

    async def download(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        return await asyncio.to_thread(self.download_blocking, result, dest, max_bytes=max_bytes)

    def download_blocking(self, result: PollResult, dest: Path, *, max_bytes: int) -> str:
        """:meth:`download` without the event loop (the output is in memory): the optional
        ``download_blocking`` described in :mod:`vidgen.providers.base`."""
        fmt = str(result.extra.get("format", "mp4"))
        _write_output(fmt, Path(dest), max_bytes)
        return _CONTENT_TYPES[fmt]

    def sign_webhook(self, body: bytes, *, now: float | None = None) -> dict[str, str]:
        """Headers that make ``body`` a valid webhook delivery (for tests and simulators)."""
        stamp = str(int(now if now is not None else time.time()))
        digest = hmac.new(
            self.webhook_secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        return {"X-Test-Timestamp": stamp, "X-Test-Signature": digest}

    async def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float
    ) -> WebhookEvent:
        lowered = {k.lower(): v for k, v in headers.items()}
        stamp, signature = lowered.get(TIMESTAMP_HEADER), lowered.get(SIGNATURE_HEADER)
        if not stamp or not signature:
            raise WebhookRejected("missing signature headers")
        try:
            sent = float(stamp)
        except ValueError as exc:
            raise WebhookRejected("bad timestamp") from exc
        if abs(now - sent) > self.tolerance_seconds:
            raise WebhookRejected("stale timestamp")
        expected = self.sign_webhook(body, now=sent)["X-Test-Signature"]
        if not hmac.compare_digest(expected, signature):
            raise WebhookRejected("bad signature")
        try:
            data = json.loads(body)
            prediction_id = str(data["prediction_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected("unreadable body") from exc
        state = data.get("state")
        result = None
        if state in State.__members__.values() or state in {s.value for s in State}:
            result = PollResult(state=State(state))
        return WebhookEvent(
            prediction_id=prediction_id, result=result, delivery_id=data.get("delivery_id")
        )

    async def aclose(self) -> None:
        return None


def _write_output(fmt: str, dest: Path, max_bytes: int) -> None:
    data = tiny_video(fmt)
    if len(data) > max_bytes:
        raise ProviderError(
            f"the output is larger than {max_bytes} bytes", retryable=False, code="too_large"
        )
    dest.write_bytes(data)


def _append(path: Path, line: str) -> None:
    # One short write with O_APPEND: atomic between processes.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
