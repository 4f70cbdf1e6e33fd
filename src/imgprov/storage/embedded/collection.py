"""The embedded store: an index directory holding the SQLite catalogue and one FAISS file per
vector set (`imgprov.storage.vector_sets`).

The catalogue is the source of truth; a vector file is derived data. A write (`apply`) writes
and fsyncs each changed vector set under a new generation's file name, records those files in
one catalogue transaction with the image rows, and only then deletes the old files: a crash at
any point leaves the previous generation readable, and `imgprov check --repair` rebuilds any
vector file from the catalogue. A reader (`open`) pins one committed generation; one writer at a
time holds the directory's writer lock (`writer`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from imgprov import presets
from imgprov.errors import IndexBusy
from imgprov.extract.objects.conf import ObjectConf
from imgprov.extract.objects.embed import ObjectWhitening
from imgprov.extract.rootsift import DESCRIPTOR_DIM, descriptors_as_float
from imgprov.extract.sscd import EMBEDDING_DIM, GlobalConf
from imgprov.storage.check import CheckReport
from imgprov.storage.embedded.catalogue import Catalogue
from imgprov.storage.embedded.check import check_collection
from imgprov.storage.embedded.info import collection_info
from imgprov.storage.embedded.vectors import VectorSet, layout_of
from imgprov.storage.features import StoredFeatures
from imgprov.storage.ids import vector_ids
from imgprov.storage.presets import NO_LOCAL_INDEX, read_presets, record_presets, stored_whitening
from imgprov.storage.records import CollectionPresets, NewImage, VectorFileState
from imgprov.storage.schema import insert_features, insert_image
from imgprov.storage.vector_sets import GLOBAL, LOCAL, OBJECTS
from imgprov.storage.writer_lock import WriterLock

VECTOR_FILE_SUFFIXES = (".faiss", ".faiss.tmp")
"""A vector file, and one being written."""
SNAPSHOT_ATTEMPTS = 50
"""Tries to open a reader's snapshot while writers keep replacing vector files under it."""


class Collection(StoredFeatures):
    """The images of one index directory and their vector sets."""

    def __init__(self, root: Path, catalogue: Catalogue):
        self.root = root
        self.catalogue = catalogue
        self.removed_leftovers: list[str] = []
        """Vector files an interrupted write had left, deleted when this writer opened the index."""
        recorded = read_presets(catalogue)
        self.feature_conf = recorded.features
        self.local_conf = recorded.local_index
        self.local_storage = recorded.local_storage
        self.global_conf: GlobalConf | None = recorded.global_descriptor
        self.object_conf: ObjectConf | None = recorded.objects
        self.local: VectorSet | None = None
        if self.local_conf.name != NO_LOCAL_INDEX:
            self.local = VectorSet(
                LOCAL, root, self.local_conf, DESCRIPTOR_DIM, catalogue.vector_state(LOCAL)
            )
        self.global_set: VectorSet | None = None
        if recorded.global_index is not None:
            state = catalogue.vector_state(GLOBAL)
            self.global_set = VectorSet(GLOBAL, root, recorded.global_index, EMBEDDING_DIM, state)
        self.object_set: VectorSet | None = None
        self.object_whitening: ObjectWhitening | None = None
        self._object_stage = None
        if self.object_conf is not None:
            self.object_whitening = stored_whitening(catalogue)
            state = catalogue.vector_state(OBJECTS)
            self.object_set = VectorSet(OBJECTS, root, presets.OBJECT_INDEX, recorded.object_dim, state)

    @property
    def vector_sets(self) -> list[VectorSet]:
        optional = [self.local, self.global_set, self.object_set]
        return [vector_set for vector_set in optional if vector_set is not None]

    @classmethod
    def open(cls, root: Path) -> Collection:
        """Open an existing index for reading, as a snapshot of one committed write.

        The catalogue is read in one read transaction held until `close`, and every vector file
        that transaction names is opened inside it, so a writer that replaces and deletes a file
        meanwhile changes nothing this reader sees. Open again to see later writes.
        """
        catalogue = Catalogue.open(root, create=False)
        try:
            return cls._snapshot(root, catalogue)
        except BaseException:
            catalogue.close()
            raise

    @classmethod
    def _snapshot(cls, root: Path, catalogue: Catalogue) -> Collection:
        """Pin a read transaction and its vector files; retry when a writer deleted one of them.

        A writer deletes a generation only after committing the next one, so a file missing in one
        snapshot and named again by the next is missing for good (`index()` reports it).
        """
        missing_before: set[str] = set()
        for _ in range(SNAPSHOT_ATTEMPTS):
            catalogue.begin_snapshot()
            collection = cls(root, catalogue)
            missing = {
                vector_set.state.file or "" for vector_set in collection.vector_sets if not vector_set.pin()
            }
            if missing <= missing_before or not missing:
                return collection
            collection._unpin_vector_files()
            catalogue.end_snapshot()
            missing_before = missing
        raise IndexBusy(f"{root}: the index kept changing while it was being opened; try again")

    def vector_files(self) -> dict[str, str]:
        """The vector file of each set as this collection sees it (see `Catalogue.vector_files`)."""
        return {vector_set.name: vector_set.state.file or "" for vector_set in self.vector_sets}

    @classmethod
    @contextlib.contextmanager
    def writer(
        cls,
        root: Path,
        *,
        presets: CollectionPresets | None = None,
        wait_seconds: float = 30.0,
        create: bool = True,
    ) -> Iterator[Collection]:
        """Open for writing (creating the index if `create`), holding the writer lock throughout."""
        catalogue = Catalogue.open(root, create=create)
        try:
            with WriterLock(root, wait_seconds):
                record_presets(catalogue, presets or CollectionPresets())
                collection = cls(root, catalogue)
                collection.removed_leftovers = collection.remove_stray_files()
                yield collection
        finally:
            catalogue.close()

    def close(self) -> None:
        self._unpin_vector_files()
        self.catalogue.close()

    def _unpin_vector_files(self) -> None:
        for vector_set in self.vector_sets:
            vector_set.unpin()

    def apply(self, *, add: list[NewImage] = (), remove: list[int] = ()) -> list[int]:
        """Remove and insert images and their vectors in one transaction; returns the new ids.

        Nothing to change writes nothing: a re-run over indexed files does not rewrite the vectors.
        """
        if not add and not remove:
            return []
        with self._vector_transaction() as db:
            db.executemany("DELETE FROM images WHERE id = ?", [(image_id,) for image_id in remove])
            ids = [self._insert(db, image) for image in add]
            added = {LOCAL: [], GLOBAL: [], OBJECTS: []}
            for image_id, image in zip(ids, add, strict=True):
                if self.local is not None:
                    added[LOCAL].append(
                        (
                            vector_ids(image_id, len(image.features)),
                            descriptors_as_float(self.codec.stored_descriptors(image.features.descriptors)),
                        )
                    )
                if image.embedding is not None:
                    added[GLOBAL].append((vector_ids(image_id, 1), image.embedding.reshape(1, -1)))
                if image.objects is not None and self.object_set is not None:
                    added[OBJECTS].append((vector_ids(image_id, len(image.objects)), image.objects.vectors))
            if self.object_set is not None and self._refit_whitening(db):
                # Every stored object vector changes with the whitening: rewrite the whole set.
                self._reset(self.object_set)
                added[OBJECTS] = list(self._stored_vectors(OBJECTS))
            else:
                added[OBJECTS] = [(ids, self.searchable(raw)) for ids, raw in added[OBJECTS]]
            for vector_set in self.vector_sets:
                self._commit_vectors(vector_set, added[vector_set.name], list(remove))
        return ids

    def _refit_whitening(self, db: sqlite3.Connection) -> bool:
        """Learn the object whitening on the stored raw vectors (inside the write transaction) when
        it is due (`_whitening_due`); True when it was learned again."""
        total = int(db.execute("SELECT COALESCE(SUM(count), 0) FROM objects").fetchone()[0])
        if not self._whitening_due(total):
            return False
        self._record_whitening(self._fit_whitening(raw for _, raw in self._raw_objects()), total)
        return True

    @staticmethod
    def _reset(vector_set: VectorSet) -> None:
        vector_set.forget()
        vector_set.state = VectorFileState(vector_set.name, file=None, count=0, layout="none", trained_on=0)

    def rebuild_vectors(self) -> None:
        """Rewrite every vector file from the catalogue (repair)."""
        with self._vector_transaction():
            for vector_set in self.vector_sets:
                self._reset(vector_set)
                self._commit_vectors(vector_set, list(self._stored_vectors(vector_set.name)), [])

    @contextlib.contextmanager
    def _vector_transaction(self) -> Iterator[sqlite3.Connection]:
        """A catalogue transaction whose vector files are swapped in only if it commits."""
        previous = {vector_set.name: vector_set.state.file for vector_set in self.vector_sets}
        try:
            with self.catalogue.transaction() as db:
                yield db
        except BaseException:
            if self.object_set is not None:
                self.object_whitening = stored_whitening(self.catalogue)
            for vector_set in self.vector_sets:
                staged = vector_set.state.file
                vector_set.forget()
                vector_set.state = self.catalogue.vector_state(vector_set.name)
                if staged and staged not in (previous[vector_set.name], vector_set.state.file):
                    (self.root / staged).unlink(missing_ok=True)
            raise
        for vector_set in self.vector_sets:
            old = previous[vector_set.name]
            if old and old != vector_set.state.file:
                (self.root / old).unlink(missing_ok=True)

    def local_index(self) -> faiss.Index | None:
        """The FAISS index of all local descriptors (ids from `imgprov.storage.ids.vector_ids`), None for
        a collection created without one (`--vectors none`: local features verify shortlists only)."""
        return self.local.index() if self.local is not None else None

    def global_index(self) -> faiss.Index | None:
        """The FAISS index of the global embeddings (inner product), None without a global set."""
        return self.global_set.index() if self.global_set is not None else None

    def global_is_exact(self) -> bool:
        """Whether the global index searches exactly (no compressed codes to re-rank)."""
        index = self.global_index()
        return index is None or layout_of(index).kind == "flat"

    def object_index(self) -> faiss.Index | None:
        """The FAISS index of the object vectors (L2; ids `vector_ids(image, object number)`), None
        when the index has no objects."""
        return self.object_set.index() if self.object_set is not None else None

    def check(self, *, repair: bool) -> CheckReport:
        """`imgprov check` (`imgprov.storage.embedded.check`); `repair` needs a writer."""
        return check_collection(self, repair=repair)

    def describe(self) -> dict:
        """`imgprov info` (`imgprov.storage.embedded.info`)."""
        return collection_info(self)

    def stray_files(self) -> list[Path]:
        """Vector files in the index directory that no catalogue entry names (left by a crash, or
        being written by a writer right now), sorted."""
        referenced = {vector_set.state.file for vector_set in self.vector_sets}
        return [
            path
            for path in sorted(self.root.iterdir())
            if path.name.endswith(VECTOR_FILE_SUFFIXES) and path.name not in referenced
        ]

    def remove_stray_files(self) -> list[str]:
        """Delete the `stray_files` (left by a crash); returns their names."""
        stray = self.stray_files()
        for path in stray:
            path.unlink(missing_ok=True)
        return [path.name for path in stray]

    def _insert(self, db: sqlite3.Connection, image: NewImage) -> int:
        image_id = int(insert_image(db, "images", image.image_id, image).lastrowid)
        insert_features(
            db, image_id, image, self.codec, self.global_set is not None, self.object_set is not None
        )
        return image_id

    def _commit_vectors(
        self, vector_set: VectorSet, added: list[tuple[np.ndarray, np.ndarray]], removed: list[int]
    ) -> None:
        _, events = vector_set.stage(added, removed, lambda: self._stored_vectors(vector_set.name))
        self.catalogue.record_vector_state(vector_set.write())
        for event in events:
            self.catalogue.log_event("vector-layout", event)
