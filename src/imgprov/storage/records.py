"""The records both stores read and write: an indexed image, an image to add, its objects, the
presets a collection is created with, and what the embedded catalogue records of a vector file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgprov.extract.rootsift import LocalFeatures
from imgprov.provenance import ContentCredentials


@dataclass(frozen=True)
class ImageRecord:
    """One indexed original; `width` and `height` are after EXIF orientation, `mtime` and
    `indexed_at` are seconds since the epoch."""

    id: int
    path: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    mtime: float
    indexed_at: float


@dataclass(frozen=True)
class StoredObjects:
    """The objects of one collection image (OE-SIR): boxes (k, 4) float32 (x0, y0, x1, y1) in the
    image's pixels and their raw L2-normalized vectors (k, D0) float32 (Eq. 4, before whitening)."""

    boxes: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class NewImage:
    """An image ready to enter the collection, with its extracted features.

    embedding: (512,) float32 L2-normalized global descriptor, None when the index has no global set.
    credentials: the file's C2PA content credentials, None when it carries none.
    """

    path: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    mtime: float
    features: LocalFeatures
    embedding: np.ndarray | None
    credentials: ContentCredentials | None = None
    objects: StoredObjects | None = None
    image_id: int | None = None
    """The id to keep (a collection copied from another store); None: the next free id."""
    indexed_at: float | None = None
    """When it was first indexed (a copied collection); None: now."""


@dataclass(frozen=True)
class CollectionPresets:
    """Preset names an index is created with; None keeps what the index records, else the default."""

    local_features: str | None = None
    local_index: str | None = None
    local_storage: str | None = None
    global_descriptor: str | None = None
    global_index: str | None = None
    objects: str | None = None


@dataclass(frozen=True)
class VectorFileState:
    """What the embedded catalogue records of one vector set: the file of its current generation
    (None before the first write), its vector count, FAISS layout ("Flat128", "IVF1024,PQ32"...) and
    the vector count an IVF layout was trained on (0 for a flat one)."""

    name: str
    file: str | None
    count: int
    layout: str
    trained_on: int
