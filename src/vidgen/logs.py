"""Logging set-up: JSON lines when not on a terminal, readable text on one.

Structured fields come from ``extra={...}`` (video_id, user_id, worker_id, request_id,
action). Secrets never reach a log: the filter below scrubs anything that looks like a bearer
token or an API key from messages.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from typing import Any

# Ambient fields added to every record logged while they are set (request, user, job).
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
user_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("user_id", default=None)
video_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("video_id", default=None)
worker_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("worker_id", default=None)
_AMBIENT = (request_id, user_id, video_id, worker_id)


class ContextFilter(logging.Filter):
    """Copies the ambient ContextVars onto each record (explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for var in _AMBIENT:
            value = var.get()
            if value is not None and not hasattr(record, var.name):
                setattr(record, var.name, value)
        return True


_STANDARD = set(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_SECRET_RE = re.compile(
    r"(?i)(bearer\s+|authorization[\"']?\s*[:=]\s*[\"']?(?:bearer\s+|key\s+)?|"
    r"(?:api[_-]?key|token|password|secret)[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]+)"
)


def scrub(text: str) -> str:
    """Replace secret-looking values with ``***``."""
    return _SECRET_RE.sub(lambda m: f"{m.group(1)}***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value if isinstance(value, int | float | bool) else scrub(str(value))
        if record.exc_info:
            payload["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {
            k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        }
        if extras:
            base += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return scrub(base)


def configure(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    """Configure the root logger once (the CLI entry points call this)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    text = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if json_lines else text)
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("tortoise").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
