"""A private ``redis-server`` subprocess that tests may kill and restart at will.

The shared Redis on 6379 belongs to everybody's tests; anything that restarts Redis, or
counts its connections, runs against one of these instead.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_pid(port: int) -> int | None:
    """The process id of the Redis answering on ``port`` (None: not answering yet)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"INFO server\r\n")
        reply = b""
        while b"\r\n" not in reply or len(reply) < _bulk_size(reply):
            chunk = sock.recv(65536)
            if not chunk:
                return None
            reply += chunk
    for line in reply.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.partition(":")[2])
    return None


def _bulk_size(reply: bytes) -> int:
    """The whole length of a RESP bulk string reply whose header ``reply`` holds."""
    header, _, _ = reply.partition(b"\r\n")
    if not header.startswith(b"$"):
        return len(reply)  # an error or a status line: complete as it is
    return len(header) + 2 + int(header[1:]) + 2


class RedisServer:
    """``redis-server --port N`` in the foreground, owned by the test."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        # The port may move to another free one until the server first came up on it (see
        # start()); a port given by the caller, or one a server already used, stays.
        self._port_may_move = port is None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers (restarts keep the port).

        free_port() only found a port free a moment ago: another process (the other test
        worker's servers, say) may bind it before this server does. The server then exits,
        or the port answers with another process's Redis; on a first start this retries on
        another free port instead of failing the test, or worse, using someone else's
        server.
        """
        for _ in range(5):
            if self._start_once():
                self._port_may_move = False
                return
            if not self._port_may_move:
                raise RuntimeError(f"port {self.port} is taken: redis-server cannot use it")
            self.port = free_port()
        raise RuntimeError("redis-server found every port it tried taken")

    def _start_once(self) -> bool:
        """True once this server answers on the port; False when the port is someone else's."""
        binary = shutil.which("redis-server") or "redis-server"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                if self._port_may_move:
                    return False  # most likely the port was taken: try another
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            try:
                pid = _server_pid(self.port)
            except OSError:
                pid = None
            if pid == self.process.pid:
                return True
            if pid is not None:  # another process's Redis holds the port
                self.stop()
                return False
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None
