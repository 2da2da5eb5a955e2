"""Bulk reads (at-risk lists and CSV exports, retention) on their own thread, behind
a bounded queue, so that they never starve ``POST /score``.

Scoring has its own worker (:class:`~churnlens._online.MicroBatcher`); reads get
another one, :class:`ReadQueue`: one read at a time (its work on the event loop, the
streaming of a CSV export, included), the rest of the machine (and the interpreter
lock) left to scoring and the event loop. Each read, and each piece of a read (a CSV
export), first steps aside for 5 ms while scoring requests are in flight
(:meth:`ReadQueue.step_aside`, :meth:`ReadQueue.pause`). With reads on the shared
thread pool, 8 bulk readers cut ``POST /score`` (8 clients) from ~530 to ~25 requests
per second (p99 24 -> 420 ms); with this queue, 447 -> 310 (p99 22 -> 43 ms;
``bench/bench_api.py``). When more reads wait than the queue holds, the newest is
refused (503, ``Retry-After``) instead of piling up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import HTTPException

__all__ = ["ReadQueue"]

T = TypeVar("T")


class ReadQueue:
    """A dedicated executor for reads, with a bounded number of waiting reads.

    Parameters
    ----------
    workers
        Threads running reads (one keeps reads from taking more than a core).
    max_pending
        Reads queued or running at most; beyond, 503.
    busy
        True while scoring work is in flight (reads in pieces pause between them).
    pause_s
        How long such a pause lasts.
    """

    def __init__(self, *, workers: int = 1, max_pending: int = 64,
                 busy: Callable[[], bool] | None = None, pause_s: float = 0.005) -> None:
        self.workers = workers
        self.max_pending = max_pending
        self.busy = busy
        self.pause_s = pause_s
        self.pending = 0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    def check_room(self) -> None:
        """Refuse (503, ``Retry-After``) a read when the queue is full."""
        if self.pending >= self.max_pending:
            raise HTTPException(503, detail=f"busy: {self.pending} reads waiting; retry in "
                                            "a second", headers={"Retry-After": "1"})

    @contextlib.asynccontextmanager
    async def slot(self, *, checked: bool = False) -> AsyncIterator[None]:
        """Hold one of the ``workers`` read slots (wait in the queue; 503 when full).

        Everything a read does, on the event loop too (streaming a CSV export), happens
        inside its slot, so reads together never take more than ``workers`` at a time.
        ``checked``: the room was checked already (:meth:`check_room`; a streamed
        answer cannot turn into a 503 once started).
        """
        if not checked:
            self.check_room()
        self.pending += 1  # (on the event loop: no lock needed)
        try:
            async with self._slots():
                await self.step_aside()
                yield
        finally:
            self.pending -= 1

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on the read thread, in a slot (503 when the queue is full)."""
        async with self.slot():
            return await asyncio.get_running_loop().run_in_executor(
                self._pool(), functools.partial(function, *args))

    def pause(self) -> None:
        """Between two pieces of a read (read thread): step aside while scoring is busy."""
        if self.busy is not None and self.busy():
            time.sleep(self.pause_s)  # (releases the interpreter lock)

    async def step_aside(self) -> None:
        """Between two pieces of a read (event loop): let scoring go first when busy."""
        if self.busy is not None and self.busy():
            await asyncio.sleep(self.pause_s)

    def _slots(self) -> asyncio.Semaphore:
        # One semaphore per event loop (a test client may run several, one after another).
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._semaphore is None:
            self._loop, self._semaphore = loop, asyncio.Semaphore(self.workers)
        return self._semaphore

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.workers, thread_name_prefix="churnlens-reads")
            return self._executor

    def close(self) -> None:
        """Stop the read thread (a later read starts a new one)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
