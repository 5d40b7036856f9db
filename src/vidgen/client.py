"""``vidgen generate`` and ``vidgen render-story``: submit a video (or a story's film) to a
running server and, with ``--wait``, watch it.

The commands talk to the public API only: ``generateVideo`` (or ``renderStory``) over HTTP
(a multipart request when an input image is sent, with ``Apollo-Require-Preflight: true``),
then ``videoUpdated`` over the ``graphql-transport-ws`` WebSocket protocol. The subscription
yields the current state at once, so a dropped socket is simply reopened: nothing is missed.

Exit codes: 0 completed (or submitted, without ``--wait``), 1 failed or canceled, 2 the
request could not be made (configuration, network, authentication, bad input).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import websockets
from websockets.asyncio.client import connect as ws_connect

DEFAULT_URL = "http://127.0.0.1:8000"
PROTOCOL = "graphql-transport-ws"
TERMINAL = {"COMPLETED", "FAILED", "CANCELED"}
#: Close codes after which reconnecting cannot help (auth refused, protocol misuse).
FATAL_CLOSE_CODES = {4400, 4401, 4403, 4406, 4409, 4429, 1008}

VIDEO_FIELDS = "id status progress version errorMessage videoUrl"

GENERATE_MUTATION = f"""
mutation Generate($input: GenerateVideoInput!) {{
  generateVideo(input: $input) {{ {VIDEO_FIELDS} }}
}}
"""

RENDER_STORY_MUTATION = f"""
mutation Render($story: ID!, $input: RenderStoryInput) {{
  renderStory(storyId: $story, input: $input) {{ {VIDEO_FIELDS} }}
}}
"""

VIDEO_UPDATED_SUBSCRIPTION = f"""
subscription Watch($id: ID!) {{
  videoUpdated(id: $id) {{ {VIDEO_FIELDS} }}
}}
"""


class ClientError(Exception):
    """The server refused the request or could not be reached (exit code 2)."""

    def __init__(self, message: str, *, code: str | None = None, retry: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retry = retry  # the server asks the client to reconnect (e.g. it fell behind)


# --- HTTP -----------------------------------------------------------------------------------
def graphql_http_url(base: str) -> str:
    return urljoin(base.rstrip("/") + "/", "graphql")


def graphql_ws_url(base: str) -> str:
    parts = urlsplit(graphql_http_url(base))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def _raise_for_errors(body: Mapping[str, Any]) -> None:
    errors = body.get("errors") or []
    if errors:
        first = errors[0]
        extensions = first.get("extensions") or {}
        code = extensions.get("code")
        message = first.get("message", "request failed")
        raise ClientError(
            f"{message} ({code})" if code else message,
            code=code,
            retry=bool(extensions.get("reconnect")),
        )


def submit(
    *,
    url: str,
    token: str,
    variables: dict[str, Any],
    image: Path | None = None,
    timeout: float = 60.0,
    query: str = GENERATE_MUTATION,
    field: str = "generateVideo",
) -> dict[str, Any]:
    """Run ``generateVideo`` (or another mutation ``query`` returning a Video as ``field``)
    and return the new Video (the fields in ``VIDEO_FIELDS``)."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(timeout=timeout) as http:
            if image is None:
                response = http.post(
                    graphql_http_url(url),
                    json={"query": query, "variables": variables},
                    headers=headers,
                )
            else:
                variables["input"]["inputImage"] = None
                operations = {"query": GENERATE_MUTATION, "variables": variables}
                with image.open("rb") as handle:
                    response = http.post(
                        graphql_http_url(url),
                        data={
                            "operations": json.dumps(operations),
                            "map": json.dumps({"0": ["variables.input.inputImage"]}),
                        },
                        files={"0": (image.name, handle, "application/octet-stream")},
                        headers={**headers, "Apollo-Require-Preflight": "true"},
                    )
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {url}: {exc}") from exc
    try:
        body = response.json()
    except ValueError as exc:
        raise ClientError(f"HTTP {response.status_code} from {url}: {response.text[:200]}") from exc
    _raise_for_errors(body)
    video = (body.get("data") or {}).get(field)
    if not video:
        raise ClientError(f"HTTP {response.status_code}: no video in the response")
    return video


# --- WebSocket --------------------------------------------------------------------------------
async def subscribe(
    url: str,
    token: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    open_timeout: float = 10.0,
) -> AsyncIterator[dict[str, Any]]:
    """One ``graphql-transport-ws`` subscription: yields each ``data`` payload.

    Raises:
        ClientError: on a GraphQL ``error`` message, or when the server closes the socket.
    """
    payload = {"Authorization": f"Bearer {token}"} if token else {}
    async with ws_connect(
        graphql_ws_url(url),
        subprotocols=[PROTOCOL],
        open_timeout=open_timeout,  # type: ignore[list-item]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        while True:
            async with asyncio.timeout(open_timeout):
                message = json.loads(await ws.recv())
            if message.get("type") == "connection_ack":
                break
            if message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
        op_id = uuid.uuid4().hex
        await ws.send(
            json.dumps(
                {
                    "id": op_id,
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables or {}},
                }
            )
        )
        async for raw in ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif kind == "next" and message.get("id") == op_id:
                result = message.get("payload") or {}
                _raise_for_errors(result)
                yield result.get("data") or {}
            elif kind == "error" and message.get("id") == op_id:
                _raise_for_errors({"errors": message.get("payload") or [{}]})
            elif kind == "complete" and message.get("id") == op_id:
                return


# --- progress ---------------------------------------------------------------------------------
class ProgressBar:
    """A one-line text bar on a terminal; one line per status change otherwise."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self._last: tuple[str, int] | None = None

    def update(self, status: str, progress: float | None) -> None:
        fraction = max(0.0, min(1.0, float(progress or 0.0)))
        percent = int(fraction * 100)
        if self._last == (status, percent):
            return
        self._last = (status, percent)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {percent:3d}% {status.lower()}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width + 20))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()


async def watch(
    *,
    url: str,
    token: str,
    video_id: str,
    bar: ProgressBar | None = None,
    reconnect_for: float = 60.0,
) -> dict[str, Any]:
    """Follow ``videoUpdated`` until a terminal status; reconnect when the socket drops.

    Returns:
        The last Video seen (terminal).
    """
    last: dict[str, Any] | None = None
    delay = 0.2
    down_since: float | None = None
    while True:
        try:
            async for data in subscribe(url, token, VIDEO_UPDATED_SUBSCRIPTION, {"id": video_id}):
                video = data.get("videoUpdated") or {}
                if last is None or video.get("version", 0) >= last.get("version", 0):
                    last = video
                down_since, delay = None, 0.2
                if bar is not None:
                    bar.update(video.get("status", "?"), video.get("progress"))
                if video.get("status") in TERMINAL:
                    return video
            if last is not None and last.get("status") in TERMINAL:
                return last
            # The server completed the stream without a terminal state: resubscribe.
        except websockets.exceptions.ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code in FATAL_CLOSE_CODES:
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                raise ClientError(f"the server closed the connection: {code} {reason}") from exc
        except websockets.exceptions.InvalidStatus as exc:
            status = exc.response.status_code
            if status in {401, 403, 404}:
                raise ClientError(f"WebSocket refused by the server: HTTP {status}") from exc
        except ClientError as exc:
            # A dropped slow subscriber is told to reconnect; anything else is final.
            if not exc.retry:
                raise
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
            pass
        now = time.monotonic()
        down_since = down_since or now
        if now - down_since > reconnect_for:
            raise ClientError(f"lost the connection to {url} for more than {reconnect_for:.0f}s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


# --- the command ------------------------------------------------------------------------------
def build_input(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {"prompt": args.prompt}
    optional = {
        "provider": getattr(args, "provider", None),
        "model": getattr(args, "model", None),
        "resolution": getattr(args, "resolution", None),
        "durationSeconds": getattr(args, "duration", None),
        "projectId": getattr(args, "project", None),
    }
    output_format = getattr(args, "output_format", None)
    if output_format:
        optional["outputFormat"] = output_format.upper()
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def _absolute(url: str, media: str | None) -> str | None:
    if not media:
        return media
    return urljoin(url.rstrip("/") + "/", media)


def _server(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str | None]:
    """The API's base URL and the token, from the command line or the environment."""
    url = (getattr(args, "url", None) or env.get("VIDGEN_URL") or DEFAULT_URL).rstrip("/")
    return url, getattr(args, "token", None) or env.get("VIDGEN_TOKEN")


def generate_command(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``vidgen generate`` (see the module docstring for the exit codes)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    url, token = _server(args, os.environ if environ is None else environ)
    if not token:
        print("error: no API token: pass --token or set VIDGEN_TOKEN", file=err)
        return 2
    image: Path | None = getattr(args, "image", None)
    if image is not None and not Path(image).is_file():
        print(f"error: no such image file: {image}", file=err)
        return 2
    try:
        video = submit(
            url=url,
            token=token,
            variables={"input": build_input(args)},
            image=Path(image) if image else None,
        )
    except ClientError as exc:
        print(f"error: {exc}", file=err)
        return 2
    return _follow(url, token, video, wait=bool(getattr(args, "wait", False)), out=out, err=err)


def _follow(
    url: str, token: str, video: dict[str, Any], *, wait: bool, out: TextIO, err: TextIO
) -> int:
    """Print the new video's id, or with ``wait`` follow it and print its URL."""
    if not wait:
        print(video["id"], file=out)
        return 0
    print(f"submitted {video['id']}", file=err)
    bar = ProgressBar(err)
    try:
        final = asyncio.run(watch(url=url, token=token, video_id=video["id"], bar=bar))
    except ClientError as exc:
        bar.finish()
        print(f"error: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        bar.finish()
        print(f"stopped watching; the video {video['id']} keeps going on the server", file=err)
        return 130
    bar.finish()
    status = final.get("status")
    if status == "COMPLETED":
        print(_absolute(url, final.get("videoUrl")) or final["id"], file=out)
        return 0
    state = str(status or "unknown").lower()
    print(f"{state}: {final.get('errorMessage') or 'no error message'}", file=err)
    return 1


def render_story_input(args: argparse.Namespace) -> dict[str, Any]:
    """``RenderStoryInput`` from ``vidgen render-story``'s options."""
    fields: dict[str, Any] = {
        "provider": getattr(args, "provider", None),
        "resolution": getattr(args, "resolution", None),
        "durationSecondsPerParagraph": getattr(args, "duration", None),
        "webhookUrl": getattr(args, "webhook_url", None),
    }
    output_format = getattr(args, "output_format", None)
    if output_format:
        fields["outputFormat"] = output_format.upper()
    if getattr(args, "captions", False):
        fields["captions"] = True
    if getattr(args, "crossfade", False):
        fields["transition"] = "CROSSFADE"
    return {k: v for k, v in fields.items() if v is not None}


def story_id(value: str) -> str:
    """A story's global id; a bare number is taken as the story's database id."""
    if value.isdigit():
        import base64

        return base64.b64encode(f"Story:{value}".encode()).decode()
    return value


def render_story_command(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``vidgen render-story`` (exit codes as ``vidgen generate``'s)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    url, token = _server(args, os.environ if environ is None else environ)
    if not token:
        print("error: no API token: pass --token or set VIDGEN_TOKEN", file=err)
        return 2
    try:
        film = submit(
            url=url,
            token=token,
            variables={"story": story_id(args.story_id), "input": render_story_input(args)},
            query=RENDER_STORY_MUTATION,
            field="renderStory",
        )
    except ClientError as exc:
        print(f"error: {exc}", file=err)
        return 2
    return _follow(url, token, film, wait=bool(getattr(args, "wait", False)), out=out, err=err)
