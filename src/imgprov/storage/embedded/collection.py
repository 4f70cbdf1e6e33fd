"""An opened index directory: the catalogue, its vector sets, and transactional changes to both.

Vector sets: "local" (RootSIFT descriptors, always), "global" (one SSCD embedding per image,
unless the index was created with the global descriptor preset "none") and "objects" (OE-SIR object
embeddings, up to k per image, when the index was created with an object preset: `--objects`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from imgprov import presets
from imgprov.errors import IndexBusy, IndexCorrupt, IndexStoreError, PresetError
from imgprov.extract.local_codec import LocalCodec, local_codec
from imgprov.extract.rootsift import DESCRIPTOR_DIM, LocalFeatures, descriptors_as_float
from imgprov.extract.sscd import DEFAULT_GLOBAL, EMBEDDING_DIM, GlobalConf, global_preset
from imgprov.objects.conf import ObjectConf, object_preset
from imgprov.objects.embed import ObjectWhitening, raw_dim
from imgprov.presets import LocalStorageConf
from imgprov.provenance import ContentCredentials
from imgprov.storage.embedded.catalogue import Catalogue, WriterLock, chunks
from imgprov.storage.embedded.vectors import VectorSet, layout_of
from imgprov.storage.ids import vector_ids
from imgprov.storage.records import CollectionPresets, ImageRecord, NewImage, StoredObjects, VectorFileState

LOCAL = "local"
GLOBAL = "global"
OBJECTS = "objects"
NO_GLOBAL = "none"
NO_LOCAL_INDEX = "none"
NO_OBJECTS = "none"
LEGACY_LOCAL_STORAGE = "rootsift-u8"
"""What a catalogue from before local-storage presets holds: exact uint8 descriptors."""
WHITENING_SAMPLE = 20_000
"""Most raw object vectors the object whitening is learned on."""
WHITENING_GROWTH = 2.0
"""The whitening is learned again (and the object vectors rewritten) when the collection's objects
grow to this many times those it was learned on."""
SNAPSHOT_ATTEMPTS = 50
"""Tries to open a reader's snapshot while writers keep replacing vector files under it."""


class StoredFeatures:
    """What both stores read from their catalogue the same way: image records, keypoints and
    descriptors, global embeddings, objects and credentials (the `catalogue` attribute, with
    `images` holding only the images readers may see), and the object presets."""

    catalogue: Catalogue
    local_storage: LocalStorageConf
    object_conf: ObjectConf | None
    object_whitening: ObjectWhitening | None
    object_set: VectorSet | None
    _object_stage: object

    @property
    def codec(self) -> LocalCodec:
        """How the catalogue encodes local features (the `preset.local_storage` it records)."""
        return local_codec(self.local_storage)

    def images(self, image_ids: list[int]) -> dict[int, ImageRecord]:
        return self.catalogue.images_by_ids(image_ids)

    def geometry(self, image_ids: list[int]) -> dict[int, np.ndarray]:
        """Keypoint geometry per image: (N, 4) float32 rows of x, y, scale, angle."""
        codec = self.codec
        found: dict[int, np.ndarray] = {}
        for chunk in chunks(image_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.catalogue.connection.execute(
                f"SELECT image_id, geometry FROM keypoints WHERE image_id IN ({marks})", chunk
            ).fetchall()
            found.update((row[0], codec.decode_geometry(row[1])) for row in rows)
        return found

    def local_features(self, image_id: int) -> LocalFeatures | None:
        """Geometry and descriptors of one indexed image, decoded from the collection's local
        storage (compressed ones approximately), or None if it is gone."""
        row = self.catalogue.connection.execute(
            "SELECT k.geometry, d.data, i.width, i.height FROM keypoints k "
            "JOIN descriptors d ON d.image_id = k.image_id JOIN images i ON i.id = k.image_id "
            "WHERE k.image_id = ?",
            (image_id,),
        ).fetchone()
        if row is None:
            return None
        return self.codec.decode(row[0], row[1], (row[2], row[3]))

    def embeddings(self, image_ids: list[int]) -> dict[int, np.ndarray]:
        """Stored global embeddings, (512,) float32 each."""
        found: dict[int, np.ndarray] = {}
        for chunk in chunks(image_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.catalogue.connection.execute(
                f"SELECT image_id, data FROM global_vectors WHERE image_id IN ({marks})", chunk
            ).fetchall()
            found.update((row[0], np.frombuffer(row[1], dtype=np.float32)) for row in rows)
        return found

    def objects(self, image_ids: list[int]) -> dict[int, StoredObjects]:
        """The stored objects (boxes and raw vectors) of the images that have them."""
        found: dict[int, StoredObjects] = {}
        for chunk in chunks(image_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.catalogue.connection.execute(
                f"SELECT image_id, count, boxes, vectors FROM objects WHERE image_id IN ({marks})", chunk
            ).fetchall()
            for image_id, count, boxes, vectors in rows:
                raw = np.frombuffer(vectors, dtype=np.float32)
                found[image_id] = StoredObjects(
                    np.frombuffer(boxes, dtype=np.float32).reshape(count, 4),
                    raw.reshape(count, len(raw) // max(count, 1)),
                )
        return found

    def credentials(self, image_ids: list[int]) -> dict[int, ContentCredentials]:
        """The stored content credentials of the images that carry any."""
        found: dict[int, ContentCredentials] = {}
        for chunk in chunks(image_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.catalogue.connection.execute(
                f"SELECT image_id, document, store FROM credentials WHERE image_id IN ({marks})", chunk
            ).fetchall()
            found.update((row[0], ContentCredentials.from_json(json.loads(row[1]), row[2])) for row in rows)
        return found

    def searchable(self, raw_vectors: np.ndarray) -> np.ndarray:
        """(N, D) float32 object vectors as the object index holds them: whitened when the preset
        whitens (a collection without its whitening yet keeps the first D raw dimensions)."""
        if self.object_conf is None or self.object_conf.whitening.dim == 0:
            return np.ascontiguousarray(raw_vectors, np.float32)
        if self.object_whitening is None:
            return np.ascontiguousarray(np.asarray(raw_vectors, np.float32)[:, : self.object_set.dim])
        return self.object_whitening.transform(raw_vectors)

    def object_stage(self):
        """The object stage (`imgprov.objects.stage.ObjectStage`) of the index's object preset,
        its models loaded once; None when the index has no objects."""
        if self.object_conf is None:
            return None
        if self._object_stage is None:
            from imgprov.objects.stage import ObjectStage

            self._object_stage = ObjectStage(self.object_conf)
        return self._object_stage

    def _raw_objects(
        self, leave_out: frozenset[int] = frozenset()
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every image's (ids (k,) int64, raw object vectors (k, D0) float32), in id order, but
        those of the images `leave_out` names."""
        cursor = self.catalogue.connection.execute(
            "SELECT image_id, count, vectors FROM objects WHERE count > 0 ORDER BY image_id"
        )
        for image_id, count, data in cursor:
            if image_id not in leave_out:
                yield vector_ids(image_id, count), np.frombuffer(data, dtype=np.float32).reshape(count, -1)

    def _whitening_due(self, total: int) -> bool:
        """Whether the object whitening must be learned (again) now that `total` raw object vectors
        are stored: the preset whitens, and there is no whitening yet or the objects outgrew the
        last fit (`WHITENING_GROWTH`)."""
        if self.object_conf is None or self.object_conf.whitening.dim == 0 or total < 2:
            return False
        trained_on = int(self.catalogue.meta("objects.whitening.trained_on", "0") or 0)
        return self.object_whitening is None or total > trained_on * WHITENING_GROWTH

    def _fit_whitening(self, raw: Iterable[np.ndarray]) -> ObjectWhitening:
        """The preset's whitening learned on (a sample of) raw object vectors, (k, D0) float32 each."""
        assert self.object_conf is not None
        sample = np.concatenate(list(raw))
        if len(sample) > WHITENING_SAMPLE:
            keep = np.random.default_rng(7).choice(len(sample), WHITENING_SAMPLE, replace=False)
            sample = sample[np.sort(keep)]
        conf = self.object_conf.whitening
        return _padded(ObjectWhitening.fit(sample, conf), conf.dim)

    def adopt_whitening(self, whitening: ObjectWhitening, trained_on: int) -> None:
        """Take the object whitening of the collection this one is a copy of, before any object is
        stored, so that both hold the same object vectors and give the same answers."""
        with self.catalogue.transaction():
            self._record_whitening(whitening, trained_on)

    def _record_whitening(self, whitening: ObjectWhitening, trained_on: int) -> None:
        """Make `whitening` the collection's (in the caller's write transaction)."""
        self.object_whitening = whitening
        self.catalogue.set_meta("objects.whitening", base64.b64encode(whitening.to_bytes()).decode())
        self.catalogue.set_meta("objects.whitening.trained_on", str(trained_on))
        self.catalogue.log_event("objects-whitening", {"trained_on": trained_on, "dim": whitening.dim})

    def _batches(self, name: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every image's (ids (N,) int64, vectors (N, dim) float32) of one vector set, in id order."""
        if name == OBJECTS:
            for ids, raw in self._raw_objects():
                yield ids, self.searchable(raw)
            return
        table = "descriptors" if name == LOCAL else "global_vectors"
        cursor = self.catalogue.connection.execute(f"SELECT image_id, data FROM {table} ORDER BY image_id")
        for image_id, data in cursor:
            if name == LOCAL:
                descriptors = self.codec.decode_descriptors(data)
                yield vector_ids(image_id, len(descriptors)), descriptors_as_float(descriptors)
            else:
                yield vector_ids(image_id, 1), np.frombuffer(data, dtype=np.float32).reshape(1, -1)


class Collection(StoredFeatures):
    """The images of one index directory and their vector sets."""

    def __init__(self, root: Path, catalogue: Catalogue):
        self.root = root
        self.catalogue = catalogue
        self.removed_leftovers: list[str] = []
        """Vector files an interrupted write had left, deleted when this writer opened the index."""
        self.feature_conf = recorded_preset(catalogue, "preset.local_features", presets.local_features)
        self.local_conf = recorded_preset(catalogue, "preset.local_index", local_index_or_none)
        self.local_storage = recorded_local_storage(catalogue)
        self.local: VectorSet | None = None
        if self.local_conf.name != NO_LOCAL_INDEX:
            state = catalogue.vector_state(LOCAL)
            self.local = VectorSet(LOCAL, root, self.local_conf, DESCRIPTOR_DIM, state)
        self.global_conf: GlobalConf | None = None
        self.global_set: VectorSet | None = None
        if catalogue.meta("preset.global", NO_GLOBAL) != NO_GLOBAL:
            self.global_conf = recorded_preset(catalogue, "preset.global", global_preset)
            index_conf = recorded_preset(catalogue, "preset.global_index", presets.global_index)
            state = catalogue.vector_state(GLOBAL)
            self.global_set = VectorSet(GLOBAL, root, index_conf, EMBEDDING_DIM, state)
        self.object_conf: ObjectConf | None = None
        self.object_set: VectorSet | None = None
        self.object_whitening: ObjectWhitening | None = None
        self._object_stage = None
        if catalogue.meta("preset.objects", NO_OBJECTS) != NO_OBJECTS:
            self.object_conf = recorded_preset(catalogue, "preset.objects", object_preset)
            self.object_whitening = stored_whitening(catalogue)
            dim = self.object_conf.whitening.dim or raw_dim(self.object_conf.embedding)
            state = catalogue.vector_state(OBJECTS)
            self.object_set = VectorSet(OBJECTS, root, presets.OBJECT_INDEX, dim, state)

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
                added[OBJECTS] = list(self._batches(OBJECTS))
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
                self._commit_vectors(vector_set, list(self._batches(vector_set.name)), [])

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

    def remove_stray_files(self) -> list[str]:
        """Delete vector files no catalogue entry names (left by a crash); returns their names."""
        referenced = {vector_set.state.file for vector_set in self.vector_sets}
        stray = [
            path
            for path in sorted(self.root.iterdir())
            if (path.suffix == ".faiss" or path.name.endswith(".faiss.tmp")) and path.name not in referenced
        ]
        for path in stray:
            path.unlink(missing_ok=True)
        return [path.name for path in stray]

    def _insert(self, db, image: NewImage) -> int:
        cursor = db.execute(
            "INSERT INTO images (id, path, sha256, size_bytes, width, height, format, mtime, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                image.image_id,
                image.path,
                image.sha256,
                image.size_bytes,
                image.width,
                image.height,
                image.format,
                image.mtime,
                image.indexed_at if image.indexed_at is not None else time.time(),
            ),
        )
        image_id = int(cursor.lastrowid)
        insert_features(
            db, image_id, image, self.codec, self.global_set is not None, self.object_set is not None
        )
        return image_id

    def _commit_vectors(
        self, vector_set: VectorSet, added: list[tuple[np.ndarray, np.ndarray]], removed: list[int]
    ) -> None:
        _, events = vector_set.stage(added, removed, lambda: self._batches(vector_set.name))
        self.catalogue.record_vector_state(vector_set.write())
        for event in events:
            self.catalogue.log_event("vector-layout", event)


def insert_features(
    db, image_id: int, image: NewImage, codec: LocalCodec, with_global: bool, with_objects: bool
) -> None:
    """Insert one image's catalogue rows (keypoints and descriptors encoded by `codec`, credentials,
    and its global embedding and objects where the collection keeps them) through a DB-API
    connection with `?` placeholders; both stores' catalogues share these tables."""
    geometry, descriptors = codec.encode(image.features)
    db.execute(
        "INSERT INTO keypoints (image_id, count, geometry) VALUES (?, ?, ?)",
        (image_id, len(image.features), geometry),
    )
    db.execute("INSERT INTO descriptors (image_id, data) VALUES (?, ?)", (image_id, descriptors))
    if image.credentials is not None:
        db.execute(
            "INSERT INTO credentials (image_id, state, document, store) VALUES (?, ?, ?, ?)",
            (
                image_id,
                image.credentials.state.value,
                json.dumps(image.credentials.to_json()),
                image.credentials.raw_store,
            ),
        )
    if image.embedding is not None and with_global:
        db.execute(
            "INSERT INTO global_vectors (image_id, data) VALUES (?, ?)",
            (image_id, np.ascontiguousarray(image.embedding, dtype=np.float32).tobytes()),
        )
    if image.objects is not None and with_objects:
        db.execute(
            "INSERT INTO objects (image_id, count, boxes, vectors) VALUES (?, ?, ?, ?)",
            (
                image_id,
                len(image.objects),
                np.ascontiguousarray(image.objects.boxes, dtype=np.float32).tobytes(),
                np.ascontiguousarray(image.objects.vectors, dtype=np.float32).tobytes(),
            ),
        )


def record_presets(catalogue: Catalogue, requested: CollectionPresets) -> None:
    """Record the presets of a new index; refuse different ones for an existing index."""
    wanted = {
        "preset.local_features": (
            requested.local_features,
            presets.local_features,
            presets.DEFAULT_LOCAL_FEATURES,
        ),
        "preset.local_index": (requested.local_index, local_index_or_none, presets.DEFAULT_LOCAL_INDEX),
        "preset.local_storage": (
            requested.local_storage,
            presets.local_storage,
            presets.DEFAULT_LOCAL_STORAGE,
        ),
        "preset.global": (requested.global_descriptor, _global_or_none, DEFAULT_GLOBAL),
        "preset.global_index": (requested.global_index, presets.global_index, presets.DEFAULT_GLOBAL_INDEX),
        "preset.objects": (requested.objects, _objects_or_none, NO_OBJECTS),
    }
    if requested.local_index == NO_LOCAL_INDEX and requested.global_descriptor == NO_GLOBAL:
        raise PresetError(
            "--vectors none needs a global descriptor (with --global none too, no stage finds candidates)"
        )
    with catalogue.transaction():
        for key, (name, lookup, default) in wanted.items():
            canonical = lookup(name).name if name is not None else None
            recorded = catalogue.meta(key)
            if recorded is None and key in _LEGACY and catalogue.image_count():
                # An index from before this preset existed: it stays what it was made as.
                recorded = _LEGACY[key]
                catalogue.set_meta(key, recorded)
            if recorded is None:
                catalogue.set_meta(key, canonical or lookup(default).name)
            elif canonical is not None and canonical != recorded:
                raise PresetError(
                    f"this index was built with {key.split('.')[1]} preset {recorded!r}, not {canonical!r}; "
                    "use another --db for a different preset"
                )


_LEGACY = {"preset.objects": NO_OBJECTS, "preset.local_storage": LEGACY_LOCAL_STORAGE}
"""What an index made before a preset existed is, for presets newer than the first indexes:
no objects (its images have none), exact local features."""


def recorded_local_storage(catalogue: Catalogue) -> LocalStorageConf:
    """The local-storage preset a catalogue records; one from before the preset is exact uint8."""
    if catalogue.meta("preset.local_storage") is None and catalogue.image_count():
        return presets.local_storage(LEGACY_LOCAL_STORAGE)
    return recorded_preset(catalogue, "preset.local_storage", presets.local_storage)


@dataclass(frozen=True)
class _NoGlobal:
    name: str = NO_GLOBAL


def local_index_or_none(name: str = presets.DEFAULT_LOCAL_INDEX):
    """The local vector-index preset, or a stand-in named "none" for a collection without the
    feature-level index (OS2OS voting off; local features kept per image to verify shortlists)."""
    if name == NO_LOCAL_INDEX:
        return _NoGlobal()
    if name not in presets.LOCAL_INDEXES:
        valid = ", ".join([*sorted(presets.LOCAL_INDEXES), NO_LOCAL_INDEX])
        raise PresetError(f"unknown local-index preset {name!r}; valid: {valid}")
    return presets.local_index(name)


def _global_or_none(name: str = DEFAULT_GLOBAL) -> GlobalConf | _NoGlobal:
    return _NoGlobal() if name == NO_GLOBAL else global_preset(name)


def _objects_or_none(name: str = NO_OBJECTS) -> ObjectConf | _NoGlobal:
    return _NoGlobal() if name == NO_OBJECTS else object_preset(name)


def stored_whitening(catalogue: Catalogue) -> ObjectWhitening | None:
    encoded = catalogue.meta("objects.whitening")
    return ObjectWhitening.from_bytes(base64.b64decode(encoded)) if encoded else None


def _padded(whitening: ObjectWhitening, dim: int) -> ObjectWhitening:
    """The whitening with zero columns up to `dim` outputs (a small sample gives fewer), so that
    the object vectors keep one dimension whatever the collection's size."""
    missing = dim - whitening.dim
    if missing <= 0:
        return whitening
    zeros = np.zeros((whitening.projection.shape[0], missing), np.float32)
    return ObjectWhitening(whitening.mean, np.concatenate([whitening.projection, zeros], axis=1))


def recorded_preset(catalogue: Catalogue, key: str, lookup):
    name = catalogue.meta(key)
    if name is None:
        if catalogue.image_count():
            raise IndexCorrupt(f"{catalogue.root}: the catalogue does not record its {key}")
        return lookup()
    try:
        return lookup(name)
    except PresetError as exc:
        raise IndexStoreError(f"{catalogue.root}: {exc} (index made by another imgprov version?)") from None
