"""`imgprov check` of a distributed store: its SQL catalogue (committed images), then each Milvus
collection against it (which images' vectors it holds, and how many); see `imgprov.storage.check`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgprov.storage.check import CheckReport, feature_damage
from imgprov.storage.distributed.milvus import MilvusVectors
from imgprov.storage.vector_sets import VECTORS_BY_IMAGE

if TYPE_CHECKING:
    from imgprov.storage.distributed.store import DistributedStore


def check_distributed(store: DistributedStore, *, repair: bool) -> CheckReport:
    """Check a distributed store: its catalogue, then each Milvus collection against it (which
    images' vectors it holds, and how many); with `repair` (a writer, see `store_writer`), rebuild
    the Milvus collections when any disagrees. Images of an interrupted write were already rolled
    back or removed when the writer opened (`removed_leftovers`)."""
    report = CheckReport(images=store.catalogue.image_count())
    report.damage = feature_damage(store, store.catalogue.database)
    if not report.damage:
        hidden = set(store.catalogue.hidden_ids())
        for vector_set in store.vector_sets:
            report.problems += milvus_problems(store, vector_set, hidden)
        if hidden:
            report.notes.append(
                f"{len(hidden)} images of a write in progress or interrupted are not visible yet; "
                "the next write or `imgprov check --repair` finishes an interrupted one"
            )
    if repair:
        report.repaired += store.removed_leftovers
        if report.problems:
            store.rebuild_vectors()
            report.repaired += [
                f"rebuilt {vector_set.name} vectors in Milvus collection {vector_set.collection_name}"
                for vector_set in store.vector_sets
            ]
        report.notes = []
    report.vectors = {vector_set.name: vector_set.ntotal for vector_set in store.vector_sets}
    return report


def milvus_problems(store: DistributedStore, vector_set: MilvusVectors, hidden: set[int]) -> list[str]:
    """How one Milvus collection disagrees with the catalogue's committed images."""
    expected = dict(store.catalogue.database.execute(VECTORS_BY_IMAGE[vector_set.name]).fetchall())
    total = sum(expected.values())
    if vector_set.ntotal != total:
        return [
            f"catalogue records {vector_set.ntotal} {vector_set.name} vectors but the images hold {total}"
        ]
    if not vector_set.exists():
        return [f"Milvus has no collection {vector_set.collection_name}"]
    found = {
        image_id: count for image_id, count in vector_set.counts_by_image().items() if image_id not in hidden
    }
    if found != expected:
        held = sum(found.values())
        return [
            f"Milvus collection {vector_set.collection_name} holds {held} vectors of {len(found)} images, "
            f"the catalogue {total} of {len(expected)}"
        ]
    return []
