"""`imgprov check`: do the catalogue and the vector files agree? Repair what does not.

Three kinds of findings:
- damage: the SQLite catalogue itself is inconsistent (its integrity check fails, an image lacks its
  features). The catalogue is the source of truth, so nothing can rebuild it: restore a backup.
- problems: a vector file disagrees with the catalogue (missing, damaged, wrong size, layout or
  ids). `--repair` rebuilds every vector file from the catalogue.
- leftovers: files no catalogue entry names, left by an interrupted write (or being written by a
  writer right now). They change nothing a reader sees; the next write or `--repair` deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from imgprov.errors import IndexCorrupt
from imgprov.extract.sscd import EMBEDDING_DIM
from imgprov.presets import LocalStorageConf
from imgprov.storage.distributed.milvus import MilvusVectors
from imgprov.storage.distributed.store import DistributedStore
from imgprov.storage.embedded.collection import Collection
from imgprov.storage.embedded.vectors import VectorSet, layout_of
from imgprov.storage.ids import split_ids
from imgprov.storage.protocol import Store
from imgprov.storage.vector_sets import GLOBAL, LOCAL, OBJECTS, VECTORS_BY_IMAGE


def catalogue_checks(storage: LocalStorageConf) -> tuple[tuple[str, str], ...]:
    """(query counting bad rows, finding) pairs over the keypoints and descriptors, whose blobs
    hold `storage.geometry_bytes` and `storage.descriptor_bytes` per keypoint."""
    return (
        (
            "SELECT COUNT(*) FROM images i LEFT JOIN keypoints k ON k.image_id = i.id "
            "WHERE k.image_id IS NULL",
            "images without keypoints",
        ),
        (
            "SELECT COUNT(*) FROM images i LEFT JOIN descriptors d ON d.image_id = i.id "
            "WHERE d.image_id IS NULL",
            "images without descriptors",
        ),
        (
            f"SELECT COUNT(*) FROM keypoints WHERE length(geometry) != count * {storage.geometry_bytes}",
            "keypoint geometry of the wrong size",
        ),
        (
            "SELECT COUNT(*) FROM keypoints k JOIN descriptors d ON d.image_id = k.image_id "
            f"WHERE length(d.data) != k.count * {storage.descriptor_bytes}",
            "descriptors whose number differs from the keypoints'",
        ),
    )


GLOBAL_CHECKS = (
    (
        "SELECT COUNT(*) FROM images i LEFT JOIN global_vectors g ON g.image_id = i.id "
        "WHERE g.image_id IS NULL",
        "images without a global embedding",
    ),
    (
        f"SELECT COUNT(*) FROM global_vectors WHERE length(data) != {EMBEDDING_DIM * 4}",
        "global embeddings of the wrong size",
    ),
)
OBJECT_CHECKS = (
    (
        "SELECT COUNT(*) FROM images i LEFT JOIN objects o ON o.image_id = i.id WHERE o.image_id IS NULL",
        "images without objects",
    ),
    (
        "SELECT COUNT(*) FROM objects WHERE length(boxes) != count * 16 "
        "OR (count > 0 AND length(vectors) % count != 0)",
        "object boxes or vectors of the wrong size",
    ),
)
EXPECTED_COUNTS = {
    LOCAL: "SELECT image_id, count FROM keypoints WHERE count > 0",
    GLOBAL: "SELECT image_id, 1 FROM global_vectors",
    OBJECTS: "SELECT image_id, count FROM objects WHERE count > 0",
}
LEFTOVER_SUFFIXES = (".faiss", ".faiss.tmp")


@dataclass
class CheckReport:
    """Findings of a check (see the module docstring); `repaired` lists what was fixed."""

    images: int = 0
    vectors: dict[str, int] = field(default_factory=dict)
    damage: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the index is sound (now): no damage, and no problem left unrepaired."""
        return not self.damage and (not self.problems or bool(self.repaired))

    def lines(self) -> list[str]:
        if self.damage:
            status = "DAMAGED"
        elif self.problems:
            status = "repaired" if self.repaired else "PROBLEMS FOUND"
        else:
            status = "ok"
        counts = ", ".join(f"{count} {name} vectors" for name, count in self.vectors.items())
        lines = [f"{status}: {self.images} images, {counts}"]
        lines += [f"damage: {finding}" for finding in self.damage]
        lines += [f"problem: {problem}" for problem in self.problems]
        lines += [
            f"note: {name} is named by no catalogue entry (an interrupted write's, or one in progress); "
            "the next write or `imgprov check --repair` deletes it"
            for name in self.leftovers
        ]
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"repaired: {action}" for action in self.repaired]
        if self.damage:
            lines.append("the catalogue itself is damaged; restore the index directory from a backup")
        elif self.problems and not self.repaired:
            lines.append("run `imgprov check --repair` (with the same --db) to rebuild the vectors")
        return lines


def check_store(store: Store, *, repair: bool) -> CheckReport:
    """`check_collection` for the embedded store, `check_distributed` for a distributed one."""
    if isinstance(store, Collection):
        return check_collection(store, repair=repair)
    return check_distributed(store, repair=repair)


def check_collection(collection: Collection, *, repair: bool) -> CheckReport:
    """Check the catalogue, then each vector file against it; with `repair` (a writable collection,
    see `Collection.writer`), rebuild the vector files when any disagrees."""
    catalogue = collection.catalogue
    report = CheckReport(images=catalogue.image_count())
    report.damage = catalogue_damage(collection)
    if not report.damage:
        for vector_set in collection.vector_sets:
            report.problems += vector_problems(collection, vector_set)
    report.leftovers = leftover_files(collection)
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


def check_distributed(store: DistributedStore, *, repair: bool) -> CheckReport:
    """Check a distributed store: its catalogue, then each Milvus collection against it (which
    images' vectors it holds, and how many); with `repair` (a writer, see `store_writer`), rebuild
    the Milvus collections when any disagrees. Images of an interrupted write were already rolled
    back or removed when the writer opened (`removed_leftovers`)."""
    report = CheckReport(images=store.catalogue.image_count())
    report.damage = distributed_catalogue_damage(store)
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


def distributed_catalogue_damage(store: DistributedStore) -> list[str]:
    """What is inconsistent inside a distributed store's SQL catalogue (committed images)."""
    checks = catalogue_checks(store.local_storage)
    checks += GLOBAL_CHECKS if store.global_set is not None else ()
    checks += OBJECT_CHECKS if store.object_set is not None else ()
    damage = []
    for query, finding in checks:
        count = int(store.catalogue.database.execute(query).fetchone()[0])
        if count:
            damage.append(f"{count} {finding}")
    return damage


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


def catalogue_damage(collection: Collection) -> list[str]:
    """What is inconsistent inside the SQLite catalogue itself."""
    connection = collection.catalogue.connection
    integrity = connection.execute("PRAGMA integrity_check").fetchone()[0]
    if integrity != "ok":
        return [f"SQLite integrity check: {integrity}"]
    damage = []
    if connection.execute("PRAGMA foreign_key_check").fetchall():
        damage.append("rows that refer to images which no longer exist")
    checks = catalogue_checks(collection.local_storage) + (
        GLOBAL_CHECKS if collection.global_set is not None else ()
    )
    checks += OBJECT_CHECKS if collection.object_set is not None else ()
    for query, finding in checks:
        count = int(connection.execute(query).fetchone()[0])
        if count:
            damage.append(f"{count} {finding}")
    return damage


def vector_problems(collection: Collection, vector_set: VectorSet) -> list[str]:
    """How one vector file disagrees with the catalogue: size, readability, layout, ids."""
    name, state = vector_set.name, vector_set.state
    expected = dict(collection.catalogue.connection.execute(EXPECTED_COUNTS[name]).fetchall())
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


def leftover_files(collection: Collection) -> list[str]:
    """Vector files in the index directory that the catalogue does not name."""
    referenced = set(collection.vector_files().values())
    return sorted(
        path.name
        for path in collection.root.iterdir()
        if path.name.endswith(LEFTOVER_SUFFIXES) and path.name not in referenced
    )


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
