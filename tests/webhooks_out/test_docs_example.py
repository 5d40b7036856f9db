"""The receiver that docs/webhooks.md shows, run as it is written against vidgen's
deliveries: it accepts them, and refuses a request whose signature does not match."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.faults.conftest import free_port
from tests.webhooks_out.conftest import generate, secret_of
from tests.webhooks_out.running import delivering, settled

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def receiver_source() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## A receiver in Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/webhooks.md lost its receiver example"
    return match.group(1)


def start_receiver(script: Path, secret: str, port: int) -> subprocess.Popen[str]:
    script.write_text(receiver_source())
    env = {**os.environ, "VIDGEN_WEBHOOK_SECRET": secret, "PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def test_the_documented_receiver_verifies_deliveries(server, alice, tmp_path) -> None:
    port = free_port()
    proc = start_receiver(tmp_path / "receiver.py", await secret_of(server, alice), port)
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
