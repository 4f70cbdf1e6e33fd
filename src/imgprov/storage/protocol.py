"""What search, compare, info, the server and `imgprov migrate` need from a store, as Protocols.

Two implementations: `imgprov.storage.embedded` (an index directory: SQLite + FAISS) and
`imgprov.storage.distributed` (Milvus + PostgreSQL or SQLite).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from imgprov.extract.objects.conf import ObjectConf
from imgprov.extract.objects.embed import ObjectWhitening
from imgprov.extract.rootsift import LocalFeatures
from imgprov.extract.sscd import GlobalConf
from imgprov.presets import LocalFeatureConf, LocalStorageConf, VectorIndexConf
from imgprov.provenance import ContentCredentials
from imgprov.storage.check import CheckReport
from imgprov.storage.presets import NoPreset
from imgprov.storage.records import ImageRecord, NewImage, StoredObjects
from imgprov.storage.vector_sets import VectorSetName

if TYPE_CHECKING:
    from imgprov.extract.objects.stage import ObjectStage


class NeighbourIndex(Protocol):
    """A k-NN index over one vector set, answering as FAISS does."""

    @property
    def ntotal(self) -> int:
        """Vectors a search can find."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, dim) float32 queries -> (n, k) float32 distances (squared L2 or inner product) and
        (n, k) int64 vector ids (`imgprov.storage.ids.vector_ids`), -1 past the last neighbour found."""


class VectorSetInfo(Protocol):
    """A vector set as its store describes it: name, index preset and vector dimension."""

    name: VectorSetName
    conf: VectorIndexConf
    dim: int


class ImageCatalogue(Protocol):
    """The image records of a store (committed images only)."""

    def image_by_path(self, path: str) -> ImageRecord | None: ...

    def images_by_ids(self, ids: list[int]) -> dict[int, ImageRecord]: ...

    def image_with_sha256(self, sha256: str) -> ImageRecord | None: ...

    def images_under(self, prefix: str) -> list[ImageRecord]: ...

    def all_images(self) -> list[ImageRecord]: ...

    def image_count(self) -> int: ...

    def meta(self, key: str, default: str | None = None) -> str | None: ...

    def events(self, limit: int = 20) -> list[tuple[float, str, dict]]: ...


class Store(Protocol):
    """The read side: presets, image records, stored features and the neighbour indexes.

    `root` names the store in messages (the index directory, or the distributed store's URL);
    `local_conf` is a `NoPreset` for a collection without a local index (`--vectors none`);
    `global_conf` / `global_set` and `object_conf` / `object_set` are None when the collection has
    no global descriptors / objects; `object_whitening` is the object vectors' PCA-whitening learned
    on the collection (None when the object preset does not whiten). `vector_files()` changes with
    every committed write.
    """

    root: Path | str
    catalogue: ImageCatalogue
    feature_conf: LocalFeatureConf
    local_conf: VectorIndexConf | NoPreset
    local_storage: LocalStorageConf
    global_conf: GlobalConf | None
    global_set: VectorSetInfo | None
    object_conf: ObjectConf | None
    object_set: VectorSetInfo | None
    object_whitening: ObjectWhitening | None

    def images(self, image_ids: list[int]) -> dict[int, ImageRecord]: ...

    def geometry(self, image_ids: list[int]) -> dict[int, np.ndarray]: ...

    def local_features(self, image_id: int) -> LocalFeatures | None: ...

    def embeddings(self, image_ids: list[int]) -> dict[int, np.ndarray]: ...

    def objects(self, image_ids: list[int]) -> dict[int, StoredObjects]: ...

    def credentials(self, image_ids: list[int]) -> dict[int, ContentCredentials]: ...

    def searchable(self, raw_vectors: np.ndarray) -> np.ndarray: ...

    def object_stage(self) -> ObjectStage | None:
        """The object stage of the collection's object preset, its models loaded once; None
        without objects."""

    def local_index(self) -> NeighbourIndex | None:
        """None for a collection without a local index (`--vectors none`)."""

    def global_index(self) -> NeighbourIndex | None: ...

    def global_is_exact(self) -> bool: ...

    def object_index(self) -> NeighbourIndex | None: ...

    def vector_files(self) -> dict[str, str]: ...

    def check(self, *, repair: bool) -> CheckReport:
        """`imgprov check`: the catalogue, then the vectors against it; `repair` (a writer only)
        rebuilds the vectors when they disagree."""

    def describe(self) -> dict:
        """`imgprov info`: counts, presets, vector layout and recent events, key by key."""

    def close(self) -> None: ...


class WritableStore(Store, Protocol):
    """A store opened by its writer (holding the writer lock)."""

    removed_leftovers: list[str]

    def apply(self, *, add: list[NewImage] = (), remove: list[int] = ()) -> list[int]:
        """Remove and insert images and their vectors, all or nothing for readers; the new ids."""

    def rebuild_vectors(self) -> None:
        """Rebuild every vector set from the catalogue (repair)."""

    def adopt_whitening(self, whitening: ObjectWhitening, trained_on: int) -> None:
        """Take a source collection's object whitening before any object is stored (a copy)."""
