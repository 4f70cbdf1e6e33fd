"""Cooperative cancellation of a job on a worker thread: a CPU budget and a cancel flag, checked
between the job's steps (`checkpoint`).

A Python thread cannot be stopped from outside, so a job stops itself: `JobControl.run` makes the
control current on the worker thread, and `checkpoint()` raises when the request's client went away
(`cancel`) or the job used more than its CPU budget. The steps between checkpoints have bounded
working sizes (decoding is pixel-limited, comparisons run at bounded resolutions), so a job stops
soon after either happens and frees its slot.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from imgprov.service.errors import JobCancelled, JobOverBudget

T = TypeVar("T")

_current = threading.local()


class JobControl:
    """The cancel flag and CPU budget of one job.

    cpu_seconds: CPU time the job's worker thread may use (`time.thread_time`; native libraries'
    own helper threads are not counted), math.inf for none.
    """

    def __init__(self, cpu_seconds: float = math.inf):
        self.cpu_seconds = cpu_seconds
        self._cancelled = threading.Event()
        self._started_cpu: float | None = None

    def cancel(self) -> None:
        """Ask the job to stop at its next checkpoint (or not to start, when still queued)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """`JobCancelled` when cancelled, `JobOverBudget` when the thread has used its CPU budget."""
        if self._cancelled.is_set():
            raise JobCancelled("the job was cancelled")
        if self._started_cpu is not None and time.thread_time() - self._started_cpu > self.cpu_seconds:
            raise JobOverBudget(
                f"the request needed more than {self.cpu_seconds:g} s of CPU; send a smaller image"
            )

    def run(self, function: Callable[..., T], *args: object) -> T:
        """Run `function(*args)` on this thread with this control current (call on the worker)."""
        self._started_cpu = time.thread_time()
        _current.control = self
        try:
            self.check()
            return function(*args)
        finally:
            _current.control = None


def checkpoint() -> None:
    """Stop the current job here when it was cancelled or is over its CPU budget; a no-op outside
    a job run by `JobControl.run`."""
    control: JobControl | None = getattr(_current, "control", None)
    if control is not None:
        control.check()
