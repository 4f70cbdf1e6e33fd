"""`imgprov info`: a summary of a store (`Store.describe`, written by each store:
`imgprov.storage.embedded.info`, `imgprov.storage.distributed.info`), or one indexed image's
record and stored credentials. The parts both summaries share are here."""

from __future__ import annotations

import datetime
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from imgprov.errors import ImgprovError

if TYPE_CHECKING:
    from imgprov.storage.catalogue import SqlCatalogue
    from imgprov.storage.protocol import Store

RECENT_EVENTS = 10


def local_presets(store: Store) -> dict:
    """The summary's local-feature presets and the bytes a keypoint takes in the catalogue."""
    return {
        "local_features_preset": store.feature_conf.name,
        "local_index_preset": store.local_conf.name,
        "local_storage_preset": store.local_storage.name,
        "local_bytes_per_keypoint": store.local_storage.bytes_per_keypoint,
    }


def recent_events(catalogue: SqlCatalogue) -> list[dict]:
    """The latest events, newest first, with ISO times."""
    return [
        {"time": iso_time(when), "kind": kind, "detail": detail}
        for when, kind, detail in catalogue.events(RECENT_EVENTS)
    ]


def image_info(collection: Store, path: Path) -> dict:
    """One indexed image's catalogue record and its full stored C2PA credentials (or null)."""
    record = collection.catalogue.image_by_path(str(path.resolve()))
    if record is None:
        raise ImgprovError(f"{path}: not in the index {collection.root}")
    credentials = collection.credentials([record.id]).get(record.id)
    return {
        "image": {
            **asdict(record),
            "indexed_at": iso_time(record.indexed_at),
            "mtime": iso_time(record.mtime),
        },
        "credentials": credentials.to_json() if credentials is not None else None,
    }


def iso_time(timestamp: float) -> str:
    """Seconds since the epoch as an ISO 8601 UTC time to the second."""
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat(timespec="seconds")
