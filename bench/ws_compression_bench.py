"""What permessage-deflate costs per live-status delivery, and what it saves.

Each delivery of ``videoUpdated`` is one small ``next`` message (a few hundred bytes) on one
socket. With permessage-deflate every socket keeps its own zlib stream, so each message is
compressed once per socket, and every socket holds a compressor and a decompressor. This
measures, with the exact extension settings uvicorn uses (``websockets``' permessage-deflate,
12-bit windows, ``memLevel`` 5, context takeover):

- CPU per delivery: framing a message with deflate, against framing it plain (the baseline,
  measured in the same run, interleaved);
- bytes on the wire per delivery, deflated against plain;
- memory per socket of the two zlib streams (RSS of this process before and after making
  ``--sockets`` of them, each having sent and received one message).

Messages are drawn at random from ``--seed`` (printed): realistic ``next`` payloads of the
subscriptions benchmark's document, for ``--videos`` videos in version order, dealt to
sockets round-robin as a fan-out would. The median and the worst of ``--rounds`` rounds are
reported. Ends with one JSON line (``--json`` shape, always printed).

Run: ``.venv/bin/python -m bench.ws_compression_bench`` (a few seconds).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import random
import statistics
import time
from pathlib import Path

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def extension() -> PerMessageDeflate:
    """A server side as uvicorn negotiates it (``websockets_sansio_impl``)."""
    return PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=False,
        remote_max_window_bits=12,
        local_max_window_bits=12,
        compress_settings={"memLevel": 5},
    )


def messages(rng: random.Random, videos: int, count: int) -> list[bytes]:
    """``next`` messages as vidgen sends them, for ``videos`` videos progressing at once."""
    start = dt.datetime(2026, 12, 7, 11, 0, tzinfo=dt.UTC)
    versions = [1] * videos
    out = []
    for n in range(count):
        video = rng.randrange(videos)
        versions[video] += 1
        at = start + dt.timedelta(seconds=n * 0.01 + rng.random() / 100)
        data = {
            "videoUpdated": {
                "id": base64.b64encode(f"Video:{video + 1}".encode()).decode(),
                "status": "PROCESSING",
                "version": versions[video],
                "progress": round(rng.random(), 6),
                "updatedAt": at.isoformat(),
            }
        }
        op = f"{rng.getrandbits(32):08x}"
        message = {"id": op, "type": "next", "payload": {"data": data}}
        out.append(json.dumps(message, separators=(",", ":")).encode())
    return out


def deliver(payloads: list[bytes], sockets: int, deflate: bool) -> tuple[float, int]:
    """Frame every payload for its socket; (seconds, bytes written)."""
    exts = [extension() for _ in range(sockets)] if deflate else []
    written = 0
    began = time.perf_counter()
    for n, payload in enumerate(payloads):
        used = [exts[n % sockets]] if deflate else []
        written += len(Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=used))
    return time.perf_counter() - began, written


def memory_per_socket(sockets: int, sample: bytes) -> float:
    """KiB of RSS per socket for its two zlib streams, each used once."""
    before = rss_kib()
    kept = []
    for _ in range(sockets):
        server, client = extension(), extension()
        frame = server.encode(Frame(Opcode.TEXT, sample))
        client.decode(frame)
        kept.append(server)  # the server keeps its compressor and decompressor
        server.decode(client.encode(Frame(Opcode.TEXT, sample)))
    after = rss_kib()
    del kept
    return (after - before) / sockets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=50_000)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="(the JSON line is always printed)")
    parser.add_argument("--quick", action="store_true", help="10,000 deliveries, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.deliveries, args.rounds = 10_000, 3
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    print(f"seed {seed}; {args.deliveries:,} deliveries over {args.sockets:,} sockets")
    payloads = messages(rng, args.videos, args.deliveries)

    plain_us, deflate_us, ratios = [], [], []
    plain_bytes = deflate_bytes = 0
    for _ in range(args.rounds):  # interleaved, so load on the machine hits both alike
        seconds, plain_bytes = deliver(payloads, args.sockets, deflate=False)
        plain_us.append(seconds / len(payloads) * 1e6)
        seconds, deflate_bytes = deliver(payloads, args.sockets, deflate=True)
        deflate_us.append(seconds / len(payloads) * 1e6)
        ratios.append(deflate_us[-1] / plain_us[-1])
    memory = memory_per_socket(min(args.sockets, 2000), payloads[0])
    result = {
        "name": "ws_compression",
        "seed": seed,
        "deliveries": args.deliveries,
        "sockets": args.sockets,
        "plain_us": statistics.median(plain_us),
        "deflate_us": statistics.median(deflate_us),
        "cpu_ratio": statistics.median(ratios),
        "cpu_ratio_worst": max(ratios),
        "bytes_plain": plain_bytes / len(payloads),
        "bytes_deflate": deflate_bytes / len(payloads),
        "bytes_ratio": deflate_bytes / plain_bytes,
        "kib_per_socket": memory,
    }
    print(
        f"CPU per delivery: plain {result['plain_us']:.2f} us, deflate "
        f"{result['deflate_us']:.2f} us: x{result['cpu_ratio']:.1f} "
        f"(worst round x{result['cpu_ratio_worst']:.1f})"
    )
    print(
        f"bytes per delivery: plain {result['bytes_plain']:.0f}, deflate "
        f"{result['bytes_deflate']:.0f} ({result['bytes_ratio']:.2f} of plain)"
    )
    print(f"zlib streams per socket: {memory:.1f} KiB RSS")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
