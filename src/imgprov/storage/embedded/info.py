"""`imgprov info` of an index directory: counts, presets, the local vector layout, bytes on disk
(per image too) and recent events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgprov.storage.info import local_presets, recent_events
from imgprov.storage.vector_sets import LOCAL, VECTOR_COUNTS

if TYPE_CHECKING:
    from imgprov.storage.embedded.collection import Collection


def collection_info(collection: Collection) -> dict:
    """The summary `imgprov info` prints, key by key."""
    catalogue = collection.catalogue
    images = catalogue.image_count()
    keypoints = int(catalogue.connection.execute(VECTOR_COUNTS[LOCAL]).fetchone()[0])
    state = collection.local.state if collection.local is not None else catalogue.vector_state(LOCAL)
    disk = {path.name: path.stat().st_size for path in collection.root.iterdir() if path.is_file()}
    catalogue_bytes = sum(size for name, size in disk.items() if name.startswith("imgprov.sqlite"))
    vector_bytes = disk.get(state.file or "", 0)
    return {
        "db": str(collection.root),
        "images": images,
        "keypoints": keypoints,
        **local_presets(collection),
        "local_vectors": state.count,
        "local_index_layout": state.layout,
        "local_index_trained_on": state.trained_on,
        "objects_preset": collection.object_conf.name if collection.object_conf is not None else "none",
        "object_vectors": collection.object_set.state.count if collection.object_set is not None else 0,
        "catalogue_bytes": catalogue_bytes,
        "local_index_bytes": vector_bytes,
        "bytes_per_image": round((catalogue_bytes + vector_bytes) / images) if images else 0,
        "events": recent_events(catalogue),
    }
