"""The distributed store: vectors in Milvus, everything else in a SQL database (PostgreSQL, or
SQLite for a single machine).

The SQL catalogue is the source of truth, as in the embedded store: it holds every image, its
keypoint geometry and RootSIFT descriptors, its global embedding, its objects and credentials, the
presets, the events, and per vector set its count and Milvus index. Milvus holds the searchable
vectors with their ids (`imgprov.storage.ids.vector_ids`), derived from the catalogue and rebuilt from
it by `imgprov check --repair`.

Atomic writes over two systems without a distributed transaction: the table `image_rows` gives
each image a `state`, and readers see only `committed` images (the view `images`) and leave every
other image's vectors out of their k-NN answers. A write goes

1. one SQL transaction inserts the new images as `pending`;
2. their vectors are inserted into Milvus;
3. one SQL transaction marks the images replaced or removed `removing` and the new ones
   `committed`: the switch readers see, all at once;
4. the removed images' vectors are deleted from Milvus, then their rows.

A crash before 3 leaves pending images nobody sees; after 3, removing images nobody sees. The next
writer (or `imgprov check --repair`) deletes their vectors and rows before it writes. Writers
exclude each other with a PostgreSQL advisory lock (SQLite: a lock file).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import numpy as np

from imgprov import presets
from imgprov.extract.objects.conf import ObjectConf
from imgprov.extract.rootsift import DESCRIPTOR_DIM, descriptors_as_float
from imgprov.extract.sscd import EMBEDDING_DIM, GlobalConf
from imgprov.presets import VectorIndexConf
from imgprov.storage.check import CheckReport
from imgprov.storage.distributed.catalogue import COMMITTED, PENDING, REMOVING, DistributedCatalogue
from imgprov.storage.distributed.check import check_distributed
from imgprov.storage.distributed.info import distributed_info
from imgprov.storage.distributed.milvus import (
    MilvusIndex,
    MilvusVectors,
    connect,
    milvus_index_for,
    next_index,
    replace_collection,
)
from imgprov.storage.distributed.sql import SqlDatabase
from imgprov.storage.features import StoredFeatures
from imgprov.storage.ids import vector_ids
from imgprov.storage.location import Location
from imgprov.storage.presets import NO_LOCAL_INDEX, read_presets, record_presets, stored_whitening
from imgprov.storage.records import CollectionPresets, NewImage
from imgprov.storage.schema import insert_features, insert_image
from imgprov.storage.vector_sets import GLOBAL, LOCAL, OBJECTS, VECTOR_COUNTS, VectorSetName


class DistributedStore(StoredFeatures):
    """A collection kept in Milvus (vectors) and a SQL database (everything else).

    It reads like the embedded `Collection`: `local_index()`, `global_index()` and
    `object_index()` answer k-NN searches with FAISS's `(distances, ids)`, and the catalogue
    methods are the same queries.
    """

    def __init__(self, location: Location, catalogue: DistributedCatalogue, alias: str):
        self.location = location
        self.root = location.describe()
        self.catalogue = catalogue
        self.alias = alias
        self.removed_leftovers: list[str] = []
        self.generation = catalogue.meta("generation", "0") or "0"
        self._object_stage = None
        self.object_whitening = stored_whitening(catalogue)
        recorded = read_presets(catalogue)
        self.feature_conf = recorded.features
        self.local_conf = recorded.local_index
        self.local_storage = recorded.local_storage
        self.global_conf: GlobalConf | None = recorded.global_descriptor
        self.object_conf: ObjectConf | None = recorded.objects
        self.local: MilvusVectors | None = None
        if self.local_conf.name != NO_LOCAL_INDEX:
            self.local = self._vector_set(LOCAL, DESCRIPTOR_DIM, self.local_conf)
        self.global_set: MilvusVectors | None = None
        if recorded.global_index is not None:
            self.global_set = self._vector_set(GLOBAL, EMBEDDING_DIM, recorded.global_index)
        self.object_set: MilvusVectors | None = None
        if self.object_conf is not None:
            self.object_set = self._vector_set(OBJECTS, recorded.object_dim, presets.OBJECT_INDEX)

    def _vector_set(self, name: VectorSetName, dim: int, conf: VectorIndexConf) -> MilvusVectors:
        recorded = self.catalogue.meta(f"vectors.{name}.index")
        index = MilvusIndex.from_json(recorded) if recorded else milvus_index_for(0, conf)
        return MilvusVectors(
            name,
            self.alias,
            self.catalogue.meta(f"vectors.{name}.collection") or f"{self.location.name}_{name}",
            dim,
            conf,
            int(self.catalogue.meta(f"vectors.{name}.count", "0") or 0),
            index,
            self.catalogue.hidden_ids,
        )

    @property
    def vector_sets(self) -> list[MilvusVectors]:
        optional = [self.local, self.global_set, self.object_set]
        return [vector_set for vector_set in optional if vector_set is not None]

    @classmethod
    def open(cls, location: Location) -> DistributedStore:
        """Open an existing collection for reading."""
        catalogue = _open_catalogue(location, create=False)
        try:
            catalogue.check_schema()
            return cls(location, catalogue, connect(location.host, location.port))
        except BaseException:
            catalogue.close()
            raise

    @classmethod
    @contextlib.contextmanager
    def writer(
        cls,
        location: Location,
        *,
        presets: CollectionPresets | None = None,
        wait_seconds: float = 30.0,
        create: bool = True,
    ) -> Iterator[DistributedStore]:
        """Open for writing (creating the collection if `create`), holding the writer lock; an
        interrupted earlier write is rolled back or finished first (`removed_leftovers` says how)."""
        requested = presets or CollectionPresets()
        alias = connect(location.host, location.port)
        catalogue = _open_catalogue(location, create=create)
        try:
            with catalogue.database.writer_lock(wait_seconds):
                if create:
                    catalogue.create()
                catalogue.check_schema()
                record_presets(catalogue, requested)
                store = cls(location, catalogue, alias)
                for vector_set in store.vector_sets:
                    vector_set.create()
                store.removed_leftovers = store.finish_interrupted_write()
                store.removed_leftovers += store.drop_unused_object_sets()
                yield store
        finally:
            catalogue.close()

    def close(self) -> None:
        self.catalogue.close()

    def check(self, *, repair: bool) -> CheckReport:
        """`imgprov check` (`imgprov.storage.distributed.check`); `repair` needs a writer."""
        return check_distributed(self, repair=repair)

    def describe(self) -> dict:
        """`imgprov info` (`imgprov.storage.distributed.info`)."""
        return distributed_info(self)

    def vector_files(self) -> dict[str, str]:
        """What changes with every write (the embedded store's vector file names): the generation."""
        return {"generation": self.generation}

    def latest_generation(self) -> str:
        """The generation committed now (this store's own view may be older)."""
        return self.catalogue.meta("generation", "0") or "0"

    def local_index(self) -> MilvusVectors | None:
        return self.local

    def global_index(self) -> MilvusVectors | None:
        return self.global_set

    def global_is_exact(self) -> bool:
        return self.global_set is None or self.global_set.exact

    def object_index(self) -> MilvusVectors | None:
        return self.object_set

    def apply(self, *, add: list[NewImage] = (), remove: list[int] = ()) -> list[int]:
        """Remove and insert images and their vectors, atomically for readers (module docstring);
        returns the new ids. When the object whitening is learned again, every object vector
        changes: they go to a new Milvus collection, the one readers use from the commit on."""
        if not add and not remove:
            return []
        with self.catalogue.transaction() as db:
            ids = self._new_ids(add)
            for image_id, image in zip(ids, add, strict=True):
                self._insert(db, image_id, image)
        rewhitened: tuple[MilvusVectors, int] | None = None
        try:
            rewhitened = self._rewhitened_objects(frozenset(remove))
            for vector_set in self.vector_sets:
                if rewhitened is not None and vector_set is self.object_set:
                    continue
                parts = list(self._vectors_of(vector_set.name, ids, add))
                if parts:
                    vector_set.insert(
                        np.concatenate([part_ids for part_ids, _ in parts]),
                        np.concatenate([vectors for _, vectors in parts]),
                    )
        except BaseException:
            self._abandon(rewhitened)
            with contextlib.suppress(Exception):
                self.finish_interrupted_write()
            raise
        objects_before = self.object_set
        try:
            with self.catalogue.transaction() as db:
                self._set_states(db, REMOVING, remove)
                self._set_states(db, COMMITTED, ids)
                if rewhitened is not None:
                    self._switch_objects(*rewhitened)
                self._record_counts(db)
        except BaseException:
            self.object_set = objects_before
            self._abandon(rewhitened)
            raise
        self._delete_removing()
        if rewhitened is not None:
            self.drop_unused_object_sets()
        self._update_layouts()
        return ids

    @staticmethod
    def _set_states(db: SqlDatabase, state: str, image_ids: list[int]) -> None:
        db.executemany("UPDATE image_rows SET state = ? WHERE id = ?", [(state, i) for i in image_ids])

    def _rewhitened_objects(self, removed: frozenset[int]) -> tuple[MilvusVectors, int] | None:
        """When the whitening is due (the new images' rows are pending, `removed` still committed):
        learn it, write every object vector whitened anew into a new Milvus collection, and return
        that collection with the number of raw vectors learned on; else None."""
        if self.object_set is None:
            return None
        total = sum(len(raw) for _, raw in self._raw_objects(removed))
        if not self._whitening_due(total):
            return None
        self.object_whitening = self._fit_whitening(raw for _, raw in self._raw_objects(removed))
        name = f"{self.location.name}_{OBJECTS}_g{int(self.latest_generation()) + 1}"
        index = milvus_index_for(total, self.object_set.conf)
        rewritten = replace_collection(self.object_set, name, index)
        rewritten.drop()
        rewritten.create()
        for ids, raw in self._raw_objects(removed):
            rewritten.insert(ids, self.searchable(raw))
        return rewritten, total

    def _switch_objects(self, rewritten: MilvusVectors, trained_on: int) -> None:
        """Record the new whitening and its collection (in the commit transaction); the collection
        readers used until now stays, for those still open, until the next switch."""
        assert self.object_set is not None and self.object_whitening is not None
        self.catalogue.set_meta(f"vectors.{OBJECTS}.previous", self.object_set.collection_name)
        self.catalogue.set_meta(f"vectors.{OBJECTS}.collection", rewritten.collection_name)
        self.catalogue.set_meta(f"vectors.{OBJECTS}.index", rewritten.index.to_json())
        self._record_whitening(self.object_whitening, trained_on)
        self.object_set = rewritten

    def _abandon(self, rewhitened: tuple[MilvusVectors, int] | None) -> None:
        """Undo a failed write's new whitening: its collection goes, the stored whitening stays."""
        self.object_whitening = stored_whitening(self.catalogue)
        if rewhitened is not None:
            with contextlib.suppress(Exception):
                rewhitened[0].drop()

    def drop_unused_object_sets(self) -> list[str]:
        """Drop the object collections of older whitenings, and any an interrupted write left:
        every one but the current and the previous. Returns what was done."""
        if self.object_set is None:
            return []
        keep = {self.object_set.collection_name, self.catalogue.meta(f"vectors.{OBJECTS}.previous")}
        first = f"{self.location.name}_{OBJECTS}"
        later = re.compile(rf"{re.escape(first)}_g\d+")
        names = self.object_set.server_collections()
        unused = [name for name in names if (name == first or later.fullmatch(name)) and name not in keep]
        for name in unused:
            replace_collection(self.object_set, name, self.object_set.index).drop()
        return [f"dropped the unused object vector collection {name}" for name in unused]

    def finish_interrupted_write(self) -> list[str]:
        """Roll back what an interrupted write added (pending images) and finish what it removed
        (removing images): their vectors first, then their rows. Returns what was done."""
        pending = self.catalogue.ids_in_state(PENDING)
        done = []
        if pending:
            for vector_set in self.vector_sets:
                vector_set.delete_images(pending)
            with self.catalogue.transaction() as db:
                db.executemany("DELETE FROM image_rows WHERE id = ?", [(i,) for i in pending])
            done.append(f"rolled back {len(pending)} images an interrupted write had begun to add")
        removed = self._delete_removing()
        if removed:
            done.append(f"finished removing {removed} images an interrupted write had removed")
        return done

    def _delete_removing(self) -> int:
        removing = self.catalogue.ids_in_state(REMOVING)
        if removing:
            for vector_set in self.vector_sets:
                vector_set.delete_images(removing)
            with self.catalogue.transaction() as db:
                db.executemany("DELETE FROM image_rows WHERE id = ?", [(i,) for i in removing])
        return len(removing)

    def rebuild_vectors(self) -> None:
        """Drop every Milvus collection and insert the committed images' vectors again (repair)."""
        self.finish_interrupted_write()
        for vector_set in self.vector_sets:
            count = int(self.catalogue.database.execute(VECTOR_COUNTS[vector_set.name]).fetchone()[0])
            vector_set.drop()
            vector_set.index = milvus_index_for(count, vector_set.conf)
            vector_set.create()
            for ids, vectors in self._stored_vectors(vector_set.name):
                vector_set.insert(ids, vectors)
            vector_set.flush()
        with self.catalogue.transaction() as db:
            self._record_counts(db)
            for vector_set in self.vector_sets:
                self.catalogue.set_meta(f"vectors.{vector_set.name}.index", vector_set.index.to_json())

    def _new_ids(self, add: list[NewImage]) -> list[int]:
        """Ids for the new images: the ones they carry (a copied collection), else the next free."""
        next_id = int(self.catalogue.meta("next_image_id", "1") or 1)
        ids = []
        for image in add:
            image_id = image.image_id if image.image_id is not None else next_id
            ids.append(image_id)
            next_id = max(next_id, image_id + 1)
        self.catalogue.set_meta("next_image_id", str(next_id))
        return ids

    def _insert(self, db: SqlDatabase, image_id: int, image: NewImage) -> None:
        insert_image(db, "image_rows", image_id, image, state=PENDING)
        insert_features(
            db, image_id, image, self.codec, self.global_set is not None, self.object_set is not None
        )

    def _vectors_of(
        self, name: str, ids: list[int], add: list[NewImage]
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(vector ids (M,) int64, vectors (M, dim) float32) of the new images in one set."""
        for image_id, image in zip(ids, add, strict=True):
            if name == LOCAL and len(image.features):
                yield (
                    vector_ids(image_id, len(image.features)),
                    descriptors_as_float(self.codec.stored_descriptors(image.features.descriptors)),
                )
            elif name == GLOBAL and image.embedding is not None:
                yield vector_ids(image_id, 1), image.embedding.reshape(1, -1)
            elif name == OBJECTS and image.objects is not None and len(image.objects):
                yield vector_ids(image_id, len(image.objects)), self.searchable(image.objects.vectors)

    def _record_counts(self, db: SqlDatabase) -> None:
        for vector_set in self.vector_sets:
            vector_set.ntotal = int(db.execute(VECTOR_COUNTS[vector_set.name]).fetchone()[0])
            self.catalogue.set_meta(f"vectors.{vector_set.name}.count", str(vector_set.ntotal))
        self.generation = str(int(self.catalogue.meta("generation", "0") or 0) + 1)
        self.catalogue.set_meta("generation", self.generation)

    def _update_layouts(self) -> None:
        """Give each vector set the Milvus index its size calls for (logged as an event)."""
        for vector_set in self.vector_sets:
            current = vector_set.index
            target = next_index(current, vector_set.ntotal, vector_set.conf)
            if target is None:
                continue
            started = time.perf_counter()
            vector_set.set_index(target)
            with self.catalogue.transaction():
                self.catalogue.set_meta(f"vectors.{vector_set.name}.index", target.to_json())
                self.catalogue.set_meta(f"vectors.{vector_set.name}.trained_on", str(vector_set.ntotal))
                self.catalogue.log_event(
                    "vector-layout",
                    {
                        "vectors": vector_set.name,
                        "from": current.describe(),
                        "to": target.describe(),
                        "trained_on": vector_set.ntotal,
                        "seconds": round(time.perf_counter() - started, 2),
                    },
                )


def _open_catalogue(location: Location, *, create: bool) -> DistributedCatalogue:
    return DistributedCatalogue(location.describe(), SqlDatabase(location.sql, location.name, create=create))
