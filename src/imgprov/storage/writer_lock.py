"""The writer lock of a store kept in files: one writer at a time on an index directory (or on a
distributed store's SQLite catalogue), an exclusive advisory `flock` on a lock file."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path

from imgprov.errors import IndexBusy, IndexUnwritable

LOCK_FILE = "write.lock"


class WriterLock:
    """An exclusive advisory lock on the index directory (on its file `name`): one writer at a time."""

    def __init__(self, root: Path, wait_seconds: float, name: str = LOCK_FILE):
        self.path = root / name
        self.wait_seconds = wait_seconds
        self._handle = None

    def __enter__(self) -> WriterLock:
        try:
            handle = self.path.open("a+")
        except OSError as exc:
            raise IndexUnwritable(f"{self.path.parent}: cannot write ({exc.strerror or exc})") from None
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise IndexBusy(
                        f"{self.path.parent}: another imgprov process is writing to this index; "
                        "try again when it has finished"
                    ) from None
                time.sleep(0.1)
        self._handle = handle
        return self

    def __exit__(self, *exc_info) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
