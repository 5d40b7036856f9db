"""The process's CPU pool: where CPU-bound work of the jobs runs, sized to the machine.

A worker keeps hundreds of remote generations in flight (``VIDGEN_WORKER_MAX_IN_FLIGHT``),
and waiting at a provider costs no CPU. What does cost CPU (probing an output, making its
thumbnail, the ``local`` renderer's frames) runs on a bounded number of threads, so a burst
of outputs arriving together queues here instead of starving the event loop and the
heartbeat. ``VIDGEN_CPU_WORKERS`` sets the size; unset, the machine's cores.

Any code may use it::

    info = await cpu.run(probe, path)

Blocking I/O that only waits (a finished output's fsyncs and renames, creating its folder)
runs on a second pool, :func:`io_executor`, sized for waiting rather than for the cores
(:data:`IO_WORKERS` threads): an fsync holds no core, and several at once share the disk's
journal commits, so a burst of outputs finishing together neither queues its fsyncs one
core at a time nor holds the CPU pool's threads while the disk works.

The pool is one per process (the API's embedded worker and its requests share it). The
local renderer sizes its own render threads with :func:`size` too, and a worker claims no
more local jobs than that (see docs/jobs.md, "Capacity").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_size: int | None = None  # configured size; None: the cores
_io_pool: concurrent.futures.ThreadPoolExecutor | None = None

IO_WORKERS = 16  # threads of the I/O pool: fsyncs in flight at once


def cores() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def size(workers: int | None = None) -> int:
    """The pool's size: ``workers`` when given, else the configured size, else the cores."""
    return max(1, workers or _size or cores())


def configure(workers: int | None) -> None:
    """Set the pool's size (``VIDGEN_CPU_WORKERS``; None: the cores). A pool of another size
    already running is replaced; its running calls finish on their threads."""
    global _pool, _size
    with _lock:
        if workers == _size:
            return
        _size = workers
        old, _pool = _pool, None
    if old is not None:
        old.shutdown(wait=False)


def executor() -> concurrent.futures.ThreadPoolExecutor:
    """The pool itself (for ``loop.run_in_executor``), created on first use."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=size(), thread_name_prefix="vidgen-cpu"
            )
        return _pool


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the CPU pool; waits for a free thread first."""
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor(), call)


def io_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The I/O pool (for ``loop.run_in_executor``): blocking calls that wait on the disk
    and use no CPU to speak of (see the module docstring), created on first use."""
    global _io_pool
    with _lock:
        if _io_pool is None:
            _io_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=IO_WORKERS, thread_name_prefix="vidgen-io"
            )
        return _io_pool
