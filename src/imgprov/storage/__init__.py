"""Where collections are stored: the embedded index directory or a distributed store.

`open_store(db)` opens a collection for reading and `store_writer(db, ...)` for writing, whatever
`--db` names (`imgprov.storage.location`). Milvus and PostgreSQL clients are imported only when a
distributed store is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from imgprov.storage.embedded.collection import Collection
from imgprov.storage.location import Location, LocationError, parse_location
from imgprov.storage.protocol import Store, WritableStore
from imgprov.storage.records import CollectionPresets

__all__ = [
    "Location",
    "LocationError",
    "Store",
    "WritableStore",
    "open_store",
    "parse_location",
    "store_writer",
]


def open_store(db: str | Path | Location) -> Store:
    """Open the collection `db` names for reading."""
    location = db if isinstance(db, Location) else parse_location(db)
    if location.path is not None:
        return Collection.open(location.path)
    from imgprov.storage.distributed.store import DistributedStore

    return DistributedStore.open(location)


@contextlib.contextmanager
def store_writer(
    db: str | Path | Location,
    *,
    presets: CollectionPresets | None = None,
    wait_seconds: float = 30.0,
    create: bool = True,
) -> Iterator[WritableStore]:
    """Open the collection `db` names for writing, holding its writer lock (see `Collection.writer`)."""
    location = db if isinstance(db, Location) else parse_location(db)
    if location.path is not None:
        with Collection.writer(
            location.path, presets=presets or CollectionPresets(), wait_seconds=wait_seconds, create=create
        ) as collection:
            yield collection
        return
    from imgprov.storage.distributed.store import DistributedStore

    with DistributedStore.writer(
        location, presets=presets, wait_seconds=wait_seconds, create=create
    ) as store:
        yield store
