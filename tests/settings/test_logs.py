"""Structured logs: JSON lines with the ambient ids, and no secrets."""

from __future__ import annotations

import json
import logging

from vidgen import logs


def _record(message: str, **extra) -> dict:
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("vidgen.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    logs.ContextFilter().filter(record)
    return json.loads(formatter.format(record))


def test_json_lines_carry_ambient_ids() -> None:
    tokens = [
        logs.request_id.set("req-1"),
        logs.user_id.set(7),
        logs.video_id.set(42),
        logs.worker_id.set("host:1:task"),
    ]
    try:
        line = _record("job done", action="job.done")
    finally:
        for var, token in zip(
            (logs.request_id, logs.user_id, logs.video_id, logs.worker_id), tokens, strict=True
        ):
            var.reset(token)
    assert line["message"] == "job done" and line["action"] == "job.done"
    assert (line["request_id"], line["user_id"], line["video_id"], line["worker_id"]) == (
        "req-1",
        7,
        42,
        "host:1:task",
    )
    assert "request_id" not in _record("outside any request")


def test_secrets_are_scrubbed() -> None:
    line = _record(
        "calling with Authorization: Bearer vg_abcdef123456 and api_key=sk-live-999 "
        "password=hunter2",
        detail="token=r8_secret_value",
    )
    text = json.dumps(line)
    for secret in ("vg_abcdef123456", "sk-live-999", "hunter2", "r8_secret_value"):
        assert secret not in text
