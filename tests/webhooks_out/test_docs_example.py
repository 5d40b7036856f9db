"""The receiver that docs/webhooks.md and the README show, run as it is written against
vidgen's deliveries: it accepts them, and refuses a request whose signature does not match."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import free_port
from tests.webhooks_out.conftest import generate, secret_of
from tests.webhooks_out.running import delivering, settled

ROOT = Path(__file__).resolve().parents[2]
# (document, the heading its example follows)
DOCS = {
    "docs": ("docs/webhooks.md", "## A receiver in Python"),
    "readme": ("README.md", "**Webhooks.**"),
}


def receiver_source(which: str) -> str:
    path, heading = DOCS[which]
    section = (ROOT / path).read_text(encoding="utf-8").split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"{path} lost its receiver example"
    return match.group(1)


def start_receiver(script: Path, source: str, secret: str, port: int) -> subprocess.Popen[str]:
    script.write_text(source)
    env = {**os.environ, "VIDGEN_WEBHOOK_SECRET": secret, "PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.parametrize("which", sorted(DOCS))
async def test_the_documented_receiver_verifies_deliveries(server, alice, tmp_path, which) -> None:
    port = free_port()
    source = receiver_source(which)
    proc = start_receiver(tmp_path / "receiver.py", source, await secret_of(server, alice), port)
    url = f"http://127.0.0.1:{port}/hooks"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):  # until it listens
                try:
                    forged = await client.post(
                        url,
                        content=b"{}",
                        headers={
                            "webhook-id": "msg_forged",
                            "webhook-timestamp": "1",
                            "webhook-signature": "v1,AAAA",
                        },
                    )
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            assert forged.status_code == 401
        video = await generate(server, alice, prompt="succeed", webhookUrl=url)
        async with delivering(server.runtime):
            await settled()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    [line] = out.splitlines()
    msg_id, video_id, status = line.split()
    assert msg_id.startswith("msg_") and video_id == video["id"] and status == "QUEUED"
