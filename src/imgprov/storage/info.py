"""A summary of an index directory for `imgprov info`."""

from __future__ import annotations

import datetime
from dataclasses import asdict
from pathlib import Path

from imgprov.errors import ImgprovError
from imgprov.storage.distributed.store import DistributedStore
from imgprov.storage.embedded.collection import Collection
from imgprov.storage.protocol import Store
from imgprov.storage.vector_sets import VECTOR_COUNTS


def store_info(store: Store) -> dict:
    """`collection_info` for the embedded store, `distributed_info` for a distributed one."""
    return collection_info(store) if isinstance(store, Collection) else distributed_info(store)


def distributed_info(store: DistributedStore) -> dict:
    """Counts, presets, each vector set's Milvus collection and index, and recent events."""
    catalogue = store.catalogue
    keypoints = int(catalogue.database.execute(VECTOR_COUNTS["local"]).fetchone()[0])
    summary = {
        "db": store.root,
        "images": catalogue.image_count(),
        "keypoints": keypoints,
        "local_features_preset": store.feature_conf.name,
        "local_index_preset": store.local_conf.name,
        "local_storage_preset": store.local_storage.name,
        "local_bytes_per_keypoint": store.local_storage.bytes_per_keypoint,
        "local_vectors": store.local.ntotal if store.local is not None else 0,
        "local_index_layout": store.local.index.describe() if store.local is not None else "none",
        "global_preset": store.global_conf.name if store.global_conf is not None else "none",
        "objects_preset": store.object_conf.name if store.object_conf is not None else "none",
        "object_vectors": store.object_set.ntotal if store.object_set is not None else 0,
        "catalogue": catalogue.database.dialect,
    }
    for vector_set in store.vector_sets:
        summary[f"milvus_{vector_set.name}"] = f"{vector_set.collection_name}: {vector_set.index.describe()}"
    summary["events"] = [
        {"time": _iso(when), "kind": kind, "detail": detail} for when, kind, detail in catalogue.events(10)
    ]
    return summary


def collection_info(collection: Collection) -> dict:
    """Counts, presets, vector layout, bytes on disk (per image too) and recent events."""
    catalogue = collection.catalogue
    images = catalogue.image_count()
    keypoints = int(
        catalogue.connection.execute("SELECT COALESCE(SUM(count), 0) FROM keypoints").fetchone()[0]
    )
    state = collection.local.state if collection.local is not None else catalogue.vector_state("local")
    disk = {path.name: path.stat().st_size for path in collection.root.iterdir() if path.is_file()}
    catalogue_bytes = sum(size for name, size in disk.items() if name.startswith("imgprov.sqlite"))
    vector_bytes = disk.get(state.file or "", 0)
    return {
        "db": str(collection.root),
        "images": images,
        "keypoints": keypoints,
        "local_features_preset": collection.feature_conf.name,
        "local_index_preset": collection.local_conf.name,
        "local_storage_preset": collection.local_storage.name,
        "local_bytes_per_keypoint": collection.local_storage.bytes_per_keypoint,
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


def image_info(collection: Store, path: Path) -> dict:
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
