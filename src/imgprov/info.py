"""A summary of an index directory for `imgprov info`."""

from __future__ import annotations

import datetime
from dataclasses import asdict
from pathlib import Path

from imgprov.collection import Collection
from imgprov.errors import ImgprovError


def collection_info(collection: Collection) -> dict:
    """Counts, presets, vector layout, bytes on disk (per image too) and recent events."""
    catalogue = collection.catalogue
    images = catalogue.image_count()
    keypoints = int(
        catalogue.connection.execute("SELECT COALESCE(SUM(count), 0) FROM keypoints").fetchone()[0]
    )
    state = collection.local.state
    disk = {path.name: path.stat().st_size for path in collection.root.iterdir() if path.is_file()}
    catalogue_bytes = sum(size for name, size in disk.items() if name.startswith("imgprov.sqlite"))
    vector_bytes = disk.get(state.file or "", 0)
    return {
        "db": str(collection.root),
        "images": images,
        "keypoints": keypoints,
        "local_features_preset": collection.feature_conf.name,
        "local_index_preset": collection.local_conf.name,
        "local_vectors": state.count,
        "local_index_layout": state.layout,
        "local_index_trained_on": state.trained_on,
        "objects_preset": collection.object_conf.name if collection.object_conf is not None else "none",
        "object_vectors": collection.object_set.state.count if collection.object_set is not None else 0,
        "catalogue_bytes": catalogue_bytes,
        "local_index_bytes": vector_bytes,
        "bytes_per_image": round((catalogue_bytes + vector_bytes) / images) if images else 0,
        "events": [
            {"time": _iso(when), "kind": kind, "detail": detail}
            for when, kind, detail in catalogue.events(10)
        ],
    }


def image_info(collection: Collection, path: Path) -> dict:
    """One indexed image's catalogue record and its full stored C2PA credentials (or null)."""
    record = collection.catalogue.image_by_path(str(path.resolve()))
    if record is None:
        raise ImgprovError(f"{path}: not in the index {collection.root}")
    credentials = collection.credentials([record.id]).get(record.id)
    return {
        "image": {**asdict(record), "indexed_at": _iso(record.indexed_at), "mtime": _iso(record.mtime)},
        "credentials": credentials.to_json() if credentials is not None else None,
    }


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat(timespec="seconds")
