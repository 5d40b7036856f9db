"""The process's CPU pool: where CPU-bound work of the jobs runs, sized to the machine.

A worker keeps hundreds of remote generations in flight (``VIDGEN_WORKER_MAX_IN_FLIGHT``),
and waiting at a provider costs no CPU. What does cost CPU (probing an output, making its
thumbnail, the ``local`` renderer's frames) runs on a bounded number of threads, so a burst
of outputs arriving together queues here instead of starving the event loop and the
heartbeat. ``VIDGEN_CPU_WORKERS`` sets the size; unset, the machine's cores.

Any code may use it::

    info = await cpu.run(probe, path)

Blocking I/O that only waits (a finished output's fsyncs and renames, creating its folder,
a call waiting for the media processes below) runs on a second pool, :func:`io_executor`,
sized for waiting rather than for the cores (:data:`IO_WORKERS` threads): an fsync holds
no core, and several at once share the disk's journal commits, so a burst of outputs
finishing together neither queues its fsyncs one core at a time nor holds the CPU pool's
threads while the disk works.

The pool is one per process (the API's embedded worker and its requests share it). The
local renderer sizes its own render threads with :func:`size` too, and a worker claims no
more local jobs than that (see docs/jobs.md, "Capacity").

Inspecting a finished output (probe + thumbnail, :func:`vidgen.media.inspect.read`) holds the
interpreter's lock for much of its time, and a worker with hundreds of jobs in flight needs
that lock for its event loop. So that work runs in a small pool of processes of its own
(:func:`run_in_process`, ``VIDGEN_MEDIA_PROCESSES``; unset: the CPU pool's size, 0: in the
calling thread instead). The processes are started on first use, with the ``spawn`` method
(never ``fork``: the worker has threads, and a child forked while one of them holds a lock
can hang on it); they ignore SIGINT and SIGTERM, so a signal sent to the whole process group
stops the worker gracefully instead of killing the calls it is still waiting for, and
:func:`shutdown` ends them. A process that dies under a call (killed, out of memory) fails
that call and every call waiting in the pool with :class:`ProcessLost`; the next call starts
a fresh pool. A call that runs longer than its limit (``VIDGEN_MEDIA_TIMEOUT_SECONDS``: a probe
stuck on a malformed file) gets :class:`ProcessTimedOut`: the pool is ended and its processes
killed, since the pool does not say which process runs which call (calls running beside it get
:class:`ProcessLost`), and the next call starts a fresh pool. At most one call per process,
plus one, is handed to the pool at a time (:data:`_slots`), so a call's time limit counts its
own run, not a queue's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_size: int | None = None  # configured size; None: the cores
_io_pool: concurrent.futures.ThreadPoolExecutor | None = None

IO_WORKERS = 16  # threads of the I/O pool: fsyncs in flight at once

_processes: int | None = None  # configured process count; None: size(), 0: no processes
_process_pool: concurrent.futures.ProcessPoolExecutor | None = None
# Calls handed to the pool at once: one per process, plus one ready for the first to free.
_slots: threading.BoundedSemaphore | None = None
# The longest a call may run in a process (None: no limit); see configure_processes.
_call_seconds: float | None = None
# How long a killed process gets to be reaped.
REAP_SECONDS = 10.0
# How long shutdown() waits for the processes' calls to end before it kills them.
SHUTDOWN_SECONDS = 5.0


class ProcessLost(Exception):
    """A process of the pool ended while it held or queued this call (killed, out of memory):
    the call's result is unknown and nothing of it was returned. Running it again is safe."""


class ProcessTimedOut(ProcessLost):
    """The call ran longer than the limit: its process was killed (with the pool's others)."""


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


# --- the process pool ------------------------------------------------------------------------
def processes() -> int:
    """How many processes the pool has: the configured count, else :func:`size`; 0: none."""
    return size() if _processes is None else _processes


def configure_processes(count: int | None, seconds: float | None = None) -> None:
    """Set the process pool's size (``VIDGEN_MEDIA_PROCESSES``; None: :func:`size`; 0: run
    the calls in the calling thread) and the longest a call may run there
    (``VIDGEN_MEDIA_TIMEOUT_SECONDS``; None: no limit; calls in the calling thread have
    none). A pool of another size already running is shut down without waiting: its calls
    still running end on their processes."""
    global _process_pool, _processes, _call_seconds
    with _lock:
        _call_seconds = seconds
        if count == _processes:
            return
        _processes = count
        old, _process_pool = _process_pool, None
    if old is not None:
        old.shutdown(wait=False)


def process_executor() -> concurrent.futures.ProcessPoolExecutor | None:
    """The process pool, created on first use (its processes start as calls need them);
    None when it is switched off (0 processes)."""
    global _process_pool, _slots
    with _lock:
        if _process_pool is None:
            count = processes()
            if count < 1:
                return None
            _process_pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=count,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_process,
            )
            _slots = threading.BoundedSemaphore(count + 1)
        return _process_pool


def run_in_process(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in the process pool, blocking until it returns: call it from a
    thread (the CPU pool's), never the event loop. ``fn`` and its arguments and result must
    pickle. With the pool switched off, the call runs here. Exceptions of ``fn`` are raised
    here as they were raised there.

    Raises:
        ProcessLost: the process died under the call, or the pool broke while it waited.
        ProcessTimedOut: the call ran longer than the configured limit (its process, and
            the pool's others, were killed).
    """
    pool = process_executor()
    if pool is None:
        return fn(*args, **kwargs)
    slots = _slots
    assert slots is not None
    with slots:
        try:
            future = pool.submit(fn, *args, **kwargs)
        except (BrokenProcessPool, RuntimeError):
            # Broken by an earlier call, or shut down meanwhile: this call never started, so
            # it goes to a fresh pool (RuntimeError: "cannot schedule new futures after
            # shutdown").
            _drop(pool)
            pool = process_executor()
            if pool is None:
                return fn(*args, **kwargs)
            future = pool.submit(fn, *args, **kwargs)
        limit = _call_seconds
        try:
            return future.result(timeout=limit)
        except concurrent.futures.TimeoutError as exc:
            logger.warning(
                "media process call ran longer than %ss; killing the media processes",
                limit,
                extra={"action": "cpu.timeout", "call": getattr(fn, "__qualname__", str(fn))},
            )
            _kill(pool)
            raise ProcessTimedOut(f"the media process call ran longer than {limit}s") from exc
        except BrokenProcessPool as exc:
            _drop(pool)
            raise ProcessLost(f"a media process ended under the call: {exc}") from exc
        except concurrent.futures.CancelledError as exc:  # shut down before it started
            raise ProcessLost("the media processes were shut down before the call ran") from exc


def _drop(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Forget a broken pool (unless another thread replaced it already)."""
    global _process_pool
    with _lock:
        if _process_pool is not pool:
            return
        _process_pool = None
    logger.warning("media process pool broken; starting a new one", extra={"action": "cpu.pool"})
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown(timeout: float = SHUTDOWN_SECONDS) -> None:
    """End the process pool (blocking; from a thread in async code): calls not started are
    canceled (their callers get :class:`ProcessLost`), calls running get ``timeout`` seconds
    to end, and processes still alive after that are killed. The next call starts a new pool.
    """
    global _process_pool
    with _lock:
        pool, _process_pool = _process_pool, None
    if pool is None:
        return
    _end(pool, timeout)


def _kill(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """End ``pool`` at once, killing its processes (a call in it ran too long); the next call
    starts a new pool."""
    global _process_pool
    with _lock:
        if _process_pool is pool:
            _process_pool = None
    _end(pool, 0.0)


def _end(pool: concurrent.futures.ProcessPoolExecutor, timeout: float) -> None:
    children = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + timeout
    for child in children:
        ended(child, max(0.0, deadline - time.monotonic()))
    for child in children:
        if not ended(child, 0.0):
            logger.warning(
                "media process did not end in time; killing it",
                extra={"action": "cpu.kill", "pid": child.pid},
            )
            child.kill()
    for child in children:
        # SIGKILL cannot be refused, but a loaded machine may take a while to end it. Then
        # reap it here unless the pool's thread already has (no zombie either way).
        if ended(child, REAP_SECONDS):
            child.join(0)


def ended(child: multiprocessing.process.BaseProcess, timeout: float) -> bool:
    """Whether ``child`` has exited, waiting up to ``timeout`` seconds for it.

    The pool's own thread joins its processes too, and two threads waiting on one pid race:
    the loser's ``waitpid`` fails, and ``join``/``is_alive`` then report a dead process as
    alive until the winner records its exit code. The process's sentinel (a pipe the kernel
    closes when it exits) answers the same for every thread.
    """
    return bool(multiprocessing.connection.wait([child.sentinel], timeout))


def _start_process() -> None:
    """In each pool process: leave SIGINT and SIGTERM to the parent, which ends the pool
    (see the module docstring), and import the media code before the first call needs it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import vidgen.media.inspect  # noqa: F401
