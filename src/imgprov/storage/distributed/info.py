"""`imgprov info` of a distributed store: counts, presets, each vector set's Milvus collection and
index, the catalogue's SQL dialect and recent events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgprov.storage.info import local_presets, recent_events
from imgprov.storage.vector_sets import LOCAL, VECTOR_COUNTS

if TYPE_CHECKING:
    from imgprov.storage.distributed.store import DistributedStore


def distributed_info(store: DistributedStore) -> dict:
    """The summary `imgprov info` prints, key by key."""
    catalogue = store.catalogue
    summary = {
        "db": store.root,
        "images": catalogue.image_count(),
        "keypoints": int(catalogue.database.execute(VECTOR_COUNTS[LOCAL]).fetchone()[0]),
        **local_presets(store),
        "local_vectors": store.local.ntotal if store.local is not None else 0,
        "local_index_layout": store.local.index.describe() if store.local is not None else "none",
        "global_preset": store.global_conf.name if store.global_conf is not None else "none",
        "objects_preset": store.object_conf.name if store.object_conf is not None else "none",
        "object_vectors": store.object_set.ntotal if store.object_set is not None else 0,
        "catalogue": catalogue.database.dialect,
    }
    for vector_set in store.vector_sets:
        summary[f"milvus_{vector_set.name}"] = f"{vector_set.collection_name}: {vector_set.index.describe()}"
    summary["events"] = recent_events(catalogue)
    return summary
