"""`imgprov check` of an index directory: the SQLite catalogue (its integrity, then the shared
catalogue checks), then each FAISS vector file against it, and the files no catalogue entry
names; see `imgprov.storage.check`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import faiss
import numpy as np

from imgprov.errors import IndexCorrupt
from imgprov.storage.check import CheckReport, feature_damage
from imgprov.storage.embedded.vectors import VectorSet, layout_of
from imgprov.storage.ids import split_ids
from imgprov.storage.vector_sets import VECTORS_BY_IMAGE

if TYPE_CHECKING:
    from imgprov.storage.embedded.collection import Collection


def check_collection(collection: Collection, *, repair: bool) -> CheckReport:
    """Check the catalogue, then each vector file against it; with `repair` (a writable collection,
    see `Collection.writer`), rebuild the vector files when any disagrees."""
    catalogue = collection.catalogue
    report = CheckReport(images=catalogue.image_count())
    report.damage = catalogue_damage(collection)
    if not report.damage:
        for vector_set in collection.vector_sets:
            report.problems += vector_problems(collection, vector_set)
    report.leftovers = [path.name for path in collection.stray_files()]
    if repair:
        report.repaired += [f"deleted {name}" for name in collection.removed_leftovers]
        if report.problems:
            collection.rebuild_vectors()
            report.repaired += [
                f"rebuilt {vector_set.name} vectors into {vector_set.state.file}"
                for vector_set in collection.vector_sets
            ]
        report.repaired += [f"deleted {name}" for name in collection.remove_stray_files()]
        report.leftovers = []
    report.vectors = {vector_set.name: vector_set.state.count for vector_set in collection.vector_sets}
    return report


def catalogue_damage(collection: Collection) -> list[str]:
    """What is inconsistent inside the SQLite catalogue itself."""
    connection = collection.catalogue.connection
    integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    if integrity != "ok":
        return [f"SQLite integrity check: {integrity}"]
    damage = []
    if connection.execute("PRAGMA foreign_key_check").fetchall():
        damage.append("rows that refer to images which no longer exist")
    return damage + feature_damage(collection, connection)


def vector_problems(collection: Collection, vector_set: VectorSet) -> list[str]:
    """How one vector file disagrees with the catalogue: size, readability, layout, ids."""
    name, state = vector_set.name, vector_set.state
    expected = dict(collection.catalogue.connection.execute(VECTORS_BY_IMAGE[name]).fetchall())
    total = sum(expected.values())
    if state.count != total:
        return [f"catalogue records {state.count} {name} vectors but the images hold {total}"]
    if not state.file:
        return [] if total == 0 else [f"no {name} vector file is recorded"]
    try:
        index = vector_set.index()
    except IndexCorrupt as exc:
        return [str(exc)]
    layout = layout_of(index).describe()
    if layout != state.layout:
        return [f"the {name} vector file is laid out as {layout}, the catalogue records {state.layout}"]
    image_ids, _ = split_ids(stored_ids(index))
    found, counts = np.unique(image_ids, return_counts=True)
    if expected != dict(zip(found.tolist(), counts.tolist(), strict=True)):
        return [f"the {name} vector file's ids do not match the catalogue's images"]
    return []


def stored_ids(index: faiss.Index) -> np.ndarray:
    """(ntotal,) int64 ids held by an IDMap or IVF index."""
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    invlists = faiss.extract_index_ivf(index).invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(number), invlists.list_size(number)).copy()
        for number in range(invlists.nlist)
        if invlists.list_size(number)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
