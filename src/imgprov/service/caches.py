"""What a server keeps between requests so that the page's view of a match costs one comparison,
and a comparison asked for twice costs none: the uploads recently searched for (`QueryCache`, behind
short-lived `query_token`s) and the comparisons recently computed (`ComparisonCache`).

Both are bounded in entries, bytes and age, evict the least recently used entry first, and are
safe to use from the worker threads at once. Nothing in them outlives the process.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from imgprov.service.errors import BadRequest, UnknownQuery
from imgprov.service.uploads import Upload
from imgprov.storage.records import ImageRecord

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

TOKEN_LENGTH = 32
TOKEN_PATTERN = re.compile(rf"[0-9a-f]{{{TOKEN_LENGTH}}}")
ENTRY_OVERHEAD_BYTES = 512
"""What an entry costs besides its payload (key, bookkeeping), counted against the byte bound."""


@dataclass(frozen=True)
class CacheBounds:
    """At most `entries` entries of together at most `max_bytes` bytes, each kept `ttl_seconds`
    after its last use."""

    entries: int
    max_bytes: int
    ttl_seconds: float


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    size: int
    expires: float


class BoundedLRU(Generic[K, V]):
    """A thread-safe least-recently-used map bounded by `CacheBounds`; a value larger than the whole
    byte bound is not kept. `clock` is injectable so that tests can pass time."""

    def __init__(self, bounds: CacheBounds, clock: Callable[[], float] = time.monotonic):
        self.bounds = bounds
        self._clock = clock
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def get(self, key: K) -> V | None:
        """The value under `key` (now the most recently used), None when absent or expired."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            now = self._clock()
            if entry.expires <= now:
                self._drop(key)
                return None
            self._entries[key] = _Entry(entry.value, entry.size, now + self.bounds.ttl_seconds)
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: K, value: V, size: int) -> bool:
        """Keep `value` (counted as `size` bytes), evicting the oldest entries to make room; False
        when it is larger than the cache may ever hold."""
        size += ENTRY_OVERHEAD_BYTES
        if size > self.bounds.max_bytes or self.bounds.entries < 1:
            return False
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._evict_expired()
            while self._entries and (
                len(self._entries) >= self.bounds.entries or self._bytes + size > self.bounds.max_bytes
            ):
                self._drop(next(iter(self._entries)))
            self._entries[key] = _Entry(value, size, self._clock() + self.bounds.ttl_seconds)
            self._bytes += size
            return True

    def discard_where(self, doomed: Callable[[K], bool]) -> int:
        """Drop every entry whose key `doomed` accepts; how many were dropped."""
        with self._lock:
            keys = [key for key in self._entries if doomed(key)]
            for key in keys:
                self._drop(key)
            return len(keys)

    def _evict_expired(self) -> None:
        now = self._clock()
        for key in [key for key, entry in self._entries.items() if entry.expires <= now]:
            self._drop(key)

    def _drop(self, key: K) -> None:
        self._bytes -= self._entries.pop(key).size


class QueryCache:
    """Uploads recently searched for, each behind a `query_token` that `/v1/compare` takes instead
    of the file.

    A token is an HMAC of the upload's sha256 under a secret of this process: the same bytes get
    the same token (and one entry), and nobody can make up the token of an image, not even from
    its hash. Tokens die with the process, after `ttl_seconds` unused, or when evicted.
    """

    def __init__(self, bounds: CacheBounds, clock: Callable[[], float] = time.monotonic):
        self._secret = secrets.token_bytes(32)
        self._uploads: BoundedLRU[str, Upload] = BoundedLRU(bounds, clock)

    def __len__(self) -> int:
        return len(self._uploads)

    @property
    def size_bytes(self) -> int:
        return self._uploads.size_bytes

    def keep(self, upload: Upload, sha256: str) -> str | None:
        """Keep the upload (whose bytes hash to `sha256`); its token, None when it is too large."""
        token = hmac.new(self._secret, sha256.encode(), hashlib.sha256).hexdigest()[:TOKEN_LENGTH]
        return token if self._uploads.put(token, upload, len(upload.data) + len(upload.name)) else None

    def upload(self, token: str) -> Upload:
        """The upload behind `token`: `BadRequest` (400) when it is no token, `UnknownQuery` (404)
        when this server holds none such (never issued, expired or evicted)."""
        if not TOKEN_PATTERN.fullmatch(token):
            raise BadRequest(f"the form field `query_token` must be {TOKEN_LENGTH} lowercase hex digits")
        upload = self._uploads.get(token)
        if upload is None:
            raise UnknownQuery("unknown or expired query_token; send the query file again")
        return upload


@dataclass(frozen=True)
class ComparisonKey:
    """A comparison of a query (by the sha256 of its bytes) with an indexed original as it is now:
    the record's content and indexing time tell a replaced original from the one compared."""

    query_sha256: str
    original_id: int
    original_sha256: str
    original_size: int
    original_mtime: float
    indexed_at: float

    @classmethod
    def of(cls, query_sha256: str, record: ImageRecord) -> ComparisonKey:
        return cls(query_sha256, record.id, record.sha256, record.size_bytes, record.mtime, record.indexed_at)


class ComparisonCache:
    """The JSON bodies (pictures included when they were asked for) of recent comparisons with
    indexed originals. `computed` counts the comparisons this server actually ran (`/v1/compare`
    and `explain`), `hits` those answered from here."""

    def __init__(self, bounds: CacheBounds, clock: Callable[[], float] = time.monotonic):
        self._bodies: BoundedLRU[ComparisonKey, dict] = BoundedLRU(bounds, clock)
        self._lock = threading.Lock()
        self.computed = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._bodies)

    @property
    def size_bytes(self) -> int:
        return self._bodies.size_bytes

    def lookup(self, key: ComparisonKey, with_pictures: bool) -> dict | None:
        """The body kept for `key`, without pictures unless asked for; None when there is none, or
        when pictures are asked for and the kept body has none."""
        body = self._bodies.get(key)
        if body is None or (with_pictures and "pictures" not in body):
            return None
        with self._lock:
            self.hits += 1
        return body if with_pictures else {name: value for name, value in body.items() if name != "pictures"}

    def count_computed(self) -> None:
        """Note that a comparison was run."""
        with self._lock:
            self.computed += 1

    def store(self, key: ComparisonKey, body: dict) -> None:
        """Keep a body just computed."""
        self._bodies.put(key, body, len(json.dumps(body)))

    def forget_original(self, original_id: int) -> int:
        """Drop every comparison with the original `original_id` (removed or replaced)."""
        return self._bodies.discard_where(lambda key: key.original_id == original_id)
