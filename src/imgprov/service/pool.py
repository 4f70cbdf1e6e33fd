"""A bounded pool of worker threads: CPU-heavy jobs run off the event loop, a full queue is a 503."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import math
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from imgprov.service.cancellation import JobControl
from imgprov.service.errors import ClientGone, ServiceBusy, ServiceTimeout

DISCONNECT_POLL_SECONDS = 0.25
"""How often a request waiting for its job checks whether its client is still there."""

T = TypeVar("T")


class JobPool:
    """`workers` threads, and room for `queue_size` more jobs waiting for one.

    A job that finds no room is refused at once (`ServiceBusy`) instead of piling up. A job whose
    request times out, or whose client disconnects, is cancelled: dropped when still queued, stopped
    at its next `checkpoint` when running (`JobControl`), and its slot is freed when it stops.
    A request reserves its slot (`reserve`) before it reads its uploads, so no more requests than
    there are slots ever hold an upload in memory.
    """

    def __init__(self, name: str, workers: int, queue_size: int):
        self.workers = workers
        self.capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"imgprov-{name}")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Slots taken: jobs running or waiting, and reservations not yet used."""
        with self._lock:
            return self._pending

    def reserve(self) -> Slot:
        """Take a slot for one job to run later; `ServiceBusy` when every slot is taken."""
        with self._lock:
            if self._pending >= self.capacity:
                raise ServiceBusy("the server is busy; try again in a few seconds")
            self._pending += 1
        return Slot(self)

    def submit(self, function: Callable[..., T], *args: object) -> Future[T]:
        """Queue `function(*args)`; `ServiceBusy` when every slot is taken."""
        return self.reserve().submit(function, *args)

    async def run(self, function: Callable[..., T], *args: object, timeout: float) -> T:
        """Run `function(*args)` on a worker and wait for it, at most `timeout` seconds."""
        return await self.reserve().run(function, *args, timeout=timeout)

    def shutdown(self) -> None:
        """Stop taking jobs; queued ones are cancelled, running ones finish in their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start(self, function: Callable[..., T], *args: object) -> Future[T]:
        """Run a job in a slot already taken; the slot is freed when the job ends."""
        try:
            future = self._executor.submit(function, *args)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(lambda _: self._release())
        return future

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1
            idle = self._pending == 0
        if idle:
            return_freed_memory()


def return_freed_memory() -> None:
    """Give the heap that finished jobs freed back to the system (glibc keeps it otherwise, and a
    server that decoded one large image would stay that large); nothing where there is no glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


class Slot:
    """A place reserved in a `JobPool` for one job.

    The job frees it when it ends; a slot left unused frees itself when its `with` block exits.
    """

    def __init__(self, pool: JobPool):
        self._pool = pool
        self._taken = True

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._taken:
            self._taken = False
            self._pool._release()

    def submit(self, function: Callable[..., T], *args: object) -> Future[T]:
        """Queue `function(*args)` in this slot (once)."""
        if not self._taken:
            raise RuntimeError("this slot was already used or freed")
        self._taken = False
        return self._pool._start(function, *args)

    async def run(
        self,
        function: Callable[..., T],
        *args: object,
        timeout: float,
        cpu_seconds: float = math.inf,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> T:
        """Run `function(*args)` in this slot and wait for it, at most `timeout` seconds, the job's
        thread using at most `cpu_seconds` of CPU (`JobOverBudget`); `disconnected` is polled while
        waiting, and when it says the client went away the job is cancelled (`ClientGone`)."""
        control = JobControl(cpu_seconds)
        future = self.submit(control.run, function, *args)
        waiting = asyncio.wrap_future(future)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            done, _ = await asyncio.wait({waiting}, timeout=max(0.0, min(DISCONNECT_POLL_SECONDS, left)))
            if done:
                return waiting.result()
            if disconnected is not None and await disconnected():
                control.cancel()
                future.cancel()
                raise ClientGone("the client disconnected; its job was cancelled")
            if left <= 0:
                control.cancel()
                future.cancel()
                raise ServiceTimeout(f"the request took longer than {timeout:g} s")
