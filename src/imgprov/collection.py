"""An opened index directory: the catalogue, its vector sets, and transactional changes to both."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgprov import presets
from imgprov.errors import IndexCorrupt, IndexStoreError, PresetError
from imgprov.extract.rootsift import DESCRIPTOR_DIM, LocalFeatures, descriptors_as_float
from imgprov.store import Catalogue, ImageRecord, VectorFileState, WriterLock, chunks
from imgprov.vectors import VectorSet, vector_ids

LOCAL = "local"


@dataclass(frozen=True)
class NewImage:
    """An image ready to enter the collection, with its extracted local features."""

    path: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    mtime: float
    features: LocalFeatures


class Collection:
    """The images of one index directory and their local-feature index."""

    def __init__(self, root: Path, catalogue: Catalogue):
        self.root = root
        self.catalogue = catalogue
        self.feature_conf = _recorded_preset(catalogue, "preset.local_features", presets.local_features)
        self.local_conf = _recorded_preset(catalogue, "preset.local_index", presets.local_index)
        self.local = VectorSet(
            name=LOCAL,
            root=root,
            conf=self.local_conf,
            dim=DESCRIPTOR_DIM,
            state=catalogue.vector_state(LOCAL),
        )

    @classmethod
    def open(cls, root: Path) -> Collection:
        """Open an existing index for reading."""
        return cls(root, Catalogue.open(root, create=False))

    @classmethod
    @contextlib.contextmanager
    def writer(
        cls,
        root: Path,
        *,
        feature_preset: str | None = None,
        index_preset: str | None = None,
        wait_seconds: float = 30.0,
        create: bool = True,
    ) -> Iterator[Collection]:
        """Open for writing (creating the index if `create`), holding the writer lock throughout."""
        catalogue = Catalogue.open(root, create=create)
        try:
            with WriterLock(root, wait_seconds):
                _record_presets(catalogue, feature_preset, index_preset)
                collection = cls(root, catalogue)
                collection.remove_stray_files()
                yield collection
        finally:
            catalogue.close()

    def close(self) -> None:
        self.catalogue.close()

    def apply(self, *, add: list[NewImage] = (), remove: list[int] = ()) -> list[int]:
        """Remove and insert images and their vectors in one transaction; returns the new ids."""
        previous = self.local.state.file
        try:
            with self.catalogue.transaction() as db:
                db.executemany("DELETE FROM images WHERE id = ?", [(image_id,) for image_id in remove])
                ids = [self._insert(db, image) for image in add]
                added = [
                    (
                        vector_ids(image_id, len(image.features)),
                        descriptors_as_float(image.features.descriptors),
                    )
                    for image_id, image in zip(ids, add, strict=True)
                ]
                self._commit_vectors(added, list(remove))
        except BaseException:
            self._abandon_staged(previous)
            raise
        self._delete_file(previous)
        return ids

    def rebuild_local_vectors(self) -> None:
        """Rewrite the local vector file from the catalogue's descriptors (repair)."""
        previous = self.local.state.file
        self.local.forget()
        self.local.state = VectorFileState(name=LOCAL, file=None, count=0, layout="none", trained_on=0)
        try:
            with self.catalogue.transaction():
                self._commit_vectors(list(self.local_batches()), [])
        except BaseException:
            self._abandon_staged(previous)
            raise
        self._delete_file(previous)

    def local_index(self):
        """The FAISS index of all local descriptors (ids from `imgprov.vectors.vector_ids`)."""
        return self.local.index()

    def geometry(self, image_ids: list[int]) -> dict[int, np.ndarray]:
        """Keypoint geometry per image: (N, 4) float32 rows of x, y, scale, angle."""
        found: dict[int, np.ndarray] = {}
        for chunk in chunks(image_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.catalogue.connection.execute(
                f"SELECT image_id, geometry FROM keypoints WHERE image_id IN ({marks})", chunk
            ).fetchall()
            found.update((row[0], np.frombuffer(row[1], dtype=np.float32).reshape(-1, 4)) for row in rows)
        return found

    def local_features(self, image_id: int) -> LocalFeatures | None:
        """Geometry and descriptors of one indexed image, or None if it is gone."""
        row = self.catalogue.connection.execute(
            "SELECT k.geometry, d.data, i.width, i.height FROM keypoints k "
            "JOIN descriptors d ON d.image_id = k.image_id JOIN images i ON i.id = k.image_id "
            "WHERE k.image_id = ?",
            (image_id,),
        ).fetchone()
        if row is None:
            return None
        geometry = np.frombuffer(row[0], dtype=np.float32)
        descriptors = np.frombuffer(row[1], dtype=np.uint8)
        return LocalFeatures.from_arrays(geometry, descriptors, (row[2], row[3]))

    def local_batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every image's (ids (N,) int64, descriptors (N, 128) float32), in id order."""
        cursor = self.catalogue.connection.execute("SELECT image_id, data FROM descriptors ORDER BY image_id")
        for image_id, data in cursor:
            descriptors = np.frombuffer(data, dtype=np.uint8).reshape(-1, DESCRIPTOR_DIM)
            yield vector_ids(image_id, len(descriptors)), descriptors_as_float(descriptors)

    def images(self, image_ids: list[int]) -> dict[int, ImageRecord]:
        return self.catalogue.images_by_ids(image_ids)

    def remove_stray_files(self) -> list[str]:
        """Delete vector files no catalogue entry names (left by a crash); returns their names."""
        referenced = {self.local.state.file}
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
            "INSERT INTO images (path, sha256, size_bytes, width, height, format, mtime, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                image.path,
                image.sha256,
                image.size_bytes,
                image.width,
                image.height,
                image.format,
                image.mtime,
                time.time(),
            ),
        )
        image_id = int(cursor.lastrowid)
        features = image.features
        db.execute(
            "INSERT INTO keypoints (image_id, count, geometry) VALUES (?, ?, ?)",
            (image_id, len(features), features.geometry().tobytes()),
        )
        db.execute(
            "INSERT INTO descriptors (image_id, data) VALUES (?, ?)",
            (image_id, np.ascontiguousarray(features.descriptors, dtype=np.uint8).tobytes()),
        )
        return image_id

    def _commit_vectors(self, added: list[tuple[np.ndarray, np.ndarray]], removed: list[int]) -> None:
        _, events = self.local.stage(added, removed, self.local_batches)
        self.catalogue.record_vector_state(self.local.write())
        for event in events:
            self.catalogue.log_event("vector-layout", event)

    def _abandon_staged(self, previous_file: str | None) -> None:
        staged = self.local.state.file
        self.local.forget()
        self.local.state = self.catalogue.vector_state(LOCAL)
        if staged and staged != previous_file and staged != self.local.state.file:
            self._delete_file(staged)

    def _delete_file(self, name: str | None) -> None:
        if name and name != self.local.state.file:
            (self.root / name).unlink(missing_ok=True)


def _record_presets(catalogue: Catalogue, feature_preset: str | None, index_preset: str | None) -> None:
    wanted = {
        "preset.local_features": (feature_preset, presets.local_features, presets.DEFAULT_LOCAL_FEATURES),
        "preset.local_index": (index_preset, presets.local_index, presets.DEFAULT_LOCAL_INDEX),
    }
    with catalogue.transaction():
        for key, (requested, lookup, default) in wanted.items():
            recorded = catalogue.meta(key)
            if requested is not None:
                lookup(requested)
            if recorded is None:
                catalogue.set_meta(key, requested or default)
            elif requested is not None and requested != recorded:
                raise PresetError(
                    f"this index was built with {key.split('.')[1]} preset {recorded!r}, not {requested!r}; "
                    "use another --db for a different preset"
                )


def _recorded_preset(catalogue: Catalogue, key: str, lookup):
    name = catalogue.meta(key)
    if name is None:
        if catalogue.image_count():
            raise IndexCorrupt(f"{catalogue.root}: the catalogue does not record its {key}")
        return lookup()
    try:
        return lookup(name)
    except PresetError as exc:
        raise IndexStoreError(f"{catalogue.root}: {exc} (index made by another imgprov version?)") from None
