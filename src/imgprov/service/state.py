"""What a server process holds between requests: settings, the read-only collection, the worker
pools, the SSCD extractor, and the bounded caches of searched uploads and comparisons. No writer
lock is held between requests."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path

from imgprov import presets
from imgprov.compare import CompareConf, compare_preset
from imgprov.extract.models import sscd_extractor
from imgprov.extract.sscd import SSCDExtractor, available_cores
from imgprov.presets import SearchConf
from imgprov.provenance import TrustAnchors
from imgprov.service.caches import CacheBounds, ComparisonCache, QueryCache
from imgprov.service.pool import JobPool
from imgprov.service.settings import ServiceSettings
from imgprov.storage import Store, open_store, parse_location, store_writer
from imgprov.storage.embedded.catalogue import Catalogue

RELEASE_SECONDS = 10.0
"""How often an idle server checks whether to let go of an old snapshot of a changed index."""
LIGHT_WORKERS = 1
LIGHT_QUEUE = 32
"""Health, metadata and thumbnails run on their own small pool: they never wait behind searches."""
LARGE_JOBS = 1
"""Jobs on large images (`app.LARGE_IMAGE_PIXELS`) running at once; the other workers stay free."""


class CollectionCache:
    """The read-only `Collection` searches use, reopened whenever the index has changed.

    A change, by this server or by another process (`imgprov index`), gives the vector files a new
    generation; `current()` notices that (through a connection of its own: the collection's sees
    its snapshot only) and opens the new one. On the embedded store a search in flight keeps the
    snapshot it started with, catalogue and vectors alike; a distributed store has no snapshots: each
    read sees the latest commit, never an uncommitted image (`imgprov.storage.distributed.store`).
    Replaced collections are closed by garbage collection once no search uses them.
    `release_if_stale()`, on a timer, keeps an idle server from holding an old
    snapshot, which would keep SQLite from recycling its write-ahead log while another process
    indexes, without reloading the vectors until a request needs them.
    """

    def __init__(self, root: Path | str):
        self.root = root
        self.location = parse_location(root)
        self._lock = threading.Lock()
        embedded = self.location.path
        self._probe = Catalogue.open(embedded, create=False) if embedded is not None else open_store(root)
        self._collection: Store | None = open_warm(root)

    def current(self) -> Store:
        """The collection as of the index's latest committed write."""
        with self._lock:
            if self._collection is None or not self._is_latest(self._collection):
                self._collection = open_warm(self.root)
            return self._collection

    def release_if_stale(self) -> None:
        """Let go of the collection if the index changed since it was opened."""
        with self._lock:
            if self._collection is not None and not self._is_latest(self._collection):
                self._collection = None

    def reload(self) -> None:
        """Reopen now (after this server changed the index)."""
        with self._lock:
            self._collection = open_warm(self.root)

    def close(self) -> None:
        """Close the connections; searches still running keep the collection they hold."""
        with self._lock:
            self._probe.close()

    def _is_latest(self, collection: Store) -> bool:
        if isinstance(self._probe, Catalogue):
            latest = self._probe.vector_files()
        else:
            latest = {"generation": self._probe.latest_generation()}
        return all(latest.get(name, "") == file for name, file in collection.vector_files().items())


def open_warm(root: Path | str) -> Store:
    """Open a snapshot of the index with its vector files already read, so worker threads never
    wait for one another to load them."""
    collection = open_store(root)
    collection.local_index()
    collection.global_index()
    return collection


@dataclass(frozen=True)
class ServiceState:
    """Everything the request handlers share; built once per app by `build_state`."""

    settings: ServiceSettings
    collections: CollectionCache
    search_conf: SearchConf
    compare_conf: CompareConf
    embedder: SSCDExtractor | None
    jobs: JobPool
    light_jobs: JobPool
    queries: QueryCache
    comparisons: ComparisonCache
    trust: TrustAnchors | None = None
    large_lane: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(LARGE_JOBS))

    def shutdown(self) -> None:
        self.jobs.shutdown()
        self.light_jobs.shutdown()
        self.collections.close()


def build_state(settings: ServiceSettings) -> ServiceState:
    """Open the index (creating it when asked), load the presets and the SSCD model once."""
    if settings.create:
        with store_writer(settings.db, create=True):
            pass
    collections = CollectionCache(settings.db)
    global_conf = collections.current().global_conf
    threads_per_job = max(1, available_cores() // settings.workers)
    return ServiceState(
        settings=settings,
        collections=collections,
        search_conf=presets.search(settings.search_preset),
        compare_conf=compare_preset(settings.compare_preset),
        embedder=sscd_extractor(global_conf, threads_per_job) if global_conf else None,
        jobs=JobPool("jobs", settings.workers, settings.queue_size),
        light_jobs=JobPool("thumbnails", LIGHT_WORKERS, LIGHT_QUEUE),
        queries=QueryCache(
            CacheBounds(settings.query_cache_entries, settings.query_cache_bytes, settings.query_ttl)
        ),
        comparisons=ComparisonCache(
            CacheBounds(
                settings.comparison_cache_entries, settings.comparison_cache_bytes, settings.query_ttl
            )
        ),
        trust=TrustAnchors.from_file(settings.trust_anchors) if settings.trust_anchors else None,
    )
