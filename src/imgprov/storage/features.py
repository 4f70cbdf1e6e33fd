"""What both stores read from their catalogue the same way: image records, keypoints and
descriptors, global embeddings, objects and credentials; and the object whitening, learned on
the stored raw object vectors and learned again as the collection grows."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from imgprov.extract.local_codec import LocalCodec, local_codec
from imgprov.extract.objects.conf import ObjectConf
from imgprov.extract.objects.embed import ObjectWhitening
from imgprov.extract.rootsift import LocalFeatures, descriptors_as_float
from imgprov.presets import LocalStorageConf
from imgprov.provenance import ContentCredentials
from imgprov.storage.catalogue import SqlCatalogue, rows_with_ids
from imgprov.storage.ids import vector_ids
from imgprov.storage.records import ImageRecord, StoredObjects
from imgprov.storage.vector_sets import LOCAL, OBJECTS, VectorSetName

if TYPE_CHECKING:
    from imgprov.extract.objects.stage import ObjectStage
    from imgprov.storage.protocol import VectorSetInfo

WHITENING_SAMPLE = 20_000
"""Most raw object vectors the object whitening is learned on."""
WHITENING_GROWTH = 2.0
"""The whitening is learned again (and the object vectors rewritten) when the collection's objects
grow to this many times those it was learned on."""


class StoredFeatures:
    """What both stores read from their catalogue the same way: image records, keypoints and
    descriptors, global embeddings, objects and credentials (the `catalogue` attribute, with
    `images` holding only the images readers may see), and the object presets."""

    catalogue: SqlCatalogue
    local_storage: LocalStorageConf
    object_conf: ObjectConf | None
    object_whitening: ObjectWhitening | None
    object_set: VectorSetInfo | None
    _object_stage: ObjectStage | None

    @property
    def codec(self) -> LocalCodec:
        """How the catalogue encodes local features (the `preset.local_storage` it records)."""
        return local_codec(self.local_storage)

    def images(self, image_ids: list[int]) -> dict[int, ImageRecord]:
        return self.catalogue.images_by_ids(image_ids)

    def geometry(self, image_ids: list[int]) -> dict[int, np.ndarray]:
        """Keypoint geometry per image: (N, 4) float32 rows of x, y, scale, angle."""
        codec = self.codec
        rows = self._feature_rows("geometry FROM keypoints", image_ids)
        return {image_id: codec.decode_geometry(geometry) for image_id, geometry in rows}

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
        rows = self._feature_rows("data FROM global_vectors", image_ids)
        return {image_id: np.frombuffer(data, dtype=np.float32) for image_id, data in rows}

    def objects(self, image_ids: list[int]) -> dict[int, StoredObjects]:
        """The stored objects (boxes and raw vectors) of the images that have them."""
        found: dict[int, StoredObjects] = {}
        for image_id, count, boxes, vectors in self._feature_rows(
            "count, boxes, vectors FROM objects", image_ids
        ):
            raw = np.frombuffer(vectors, dtype=np.float32)
            found[image_id] = StoredObjects(
                np.frombuffer(boxes, dtype=np.float32).reshape(count, 4),
                raw.reshape(count, len(raw) // max(count, 1)),
            )
        return found

    def credentials(self, image_ids: list[int]) -> dict[int, ContentCredentials]:
        """The stored content credentials of the images that carry any."""
        rows = self._feature_rows("document, store FROM credentials", image_ids)
        return {
            image_id: ContentCredentials.from_json(json.loads(document), store)
            for image_id, document, store in rows
        }

    def _feature_rows(self, columns_from_table: str, image_ids: list[int]) -> Iterator[tuple]:
        """(image_id, columns...) rows of one feature table (`"data FROM global_vectors"`) for the
        images `image_ids` that have one."""
        query = f"SELECT image_id, {columns_from_table} WHERE image_id"
        return rows_with_ids(self.catalogue.connection, query, image_ids)

    def searchable(self, raw_vectors: np.ndarray) -> np.ndarray:
        """(N, D) float32 object vectors as the object index holds them: whitened when the preset
        whitens (a collection without its whitening yet keeps the first D raw dimensions)."""
        if self.object_conf is None or self.object_conf.whitening.dim == 0:
            return np.ascontiguousarray(raw_vectors, np.float32)
        if self.object_whitening is None:
            return np.ascontiguousarray(np.asarray(raw_vectors, np.float32)[:, : self.object_set.dim])
        return self.object_whitening.transform(raw_vectors)

    def object_stage(self) -> ObjectStage | None:
        """The object stage (`imgprov.extract.objects.stage.ObjectStage`) of the index's object preset,
        its models loaded once; None when the index has no objects."""
        if self.object_conf is None:
            return None
        if self._object_stage is None:
            from imgprov.extract.objects.stage import ObjectStage

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

    def _stored_vectors(self, name: VectorSetName) -> Iterator[tuple[np.ndarray, np.ndarray]]:
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


def _padded(whitening: ObjectWhitening, dim: int) -> ObjectWhitening:
    """The whitening with zero columns up to `dim` outputs (a small sample gives fewer), so that
    the object vectors keep one dimension whatever the collection's size."""
    missing = dim - whitening.dim
    if missing <= 0:
        return whitening
    zeros = np.zeros((whitening.projection.shape[0], missing), np.float32)
    return ObjectWhitening(whitening.mean, np.concatenate([whitening.projection, zeros], axis=1))
