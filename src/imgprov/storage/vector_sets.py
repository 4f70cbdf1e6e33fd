"""The vector sets a collection keeps, in either store: their names, the catalogue rows that hold
each set's vectors, and how many IVF lists a set of a given size gets (FAISS and Milvus alike)."""

from __future__ import annotations

import math
from typing import Literal

VectorSetName = Literal["local", "global", "objects"]
LOCAL: VectorSetName = "local"
"""RootSIFT descriptors, one vector per keypoint (the rows of `keypoints` and `descriptors`)."""
GLOBAL: VectorSetName = "global"
"""One global embedding per image (`global_vectors`), unless the global preset is "none"."""
OBJECTS: VectorSetName = "objects"
"""Object embeddings, up to k per image (`objects`), when the collection has an object preset."""

VECTORS_BY_IMAGE: dict[str, str] = {
    LOCAL: "SELECT k.image_id, k.count FROM keypoints k JOIN images i ON i.id = k.image_id WHERE k.count > 0",
    GLOBAL: "SELECT g.image_id, 1 FROM global_vectors g JOIN images i ON i.id = g.image_id",
    OBJECTS: "SELECT o.image_id, o.count FROM objects o JOIN images i ON i.id = o.image_id WHERE o.count > 0",
}
"""(image id, vectors) of each image of `images` that has vectors in a set."""
VECTOR_COUNTS: dict[str, str] = {
    LOCAL: "SELECT COALESCE(SUM(k.count), 0) FROM keypoints k JOIN images i ON i.id = k.image_id",
    GLOBAL: "SELECT COUNT(*) FROM global_vectors g JOIN images i ON i.id = g.image_id",
    OBJECTS: "SELECT COALESCE(SUM(o.count), 0) FROM objects o JOIN images i ON i.id = o.image_id",
}
"""Vectors each set must hold for the images of `images`."""


def ivf_lists_for(count: int, lists_per_sqrt: float) -> int:
    """Number of IVF lists for `count` vectors: about lists_per_sqrt * sqrt(count), a power of 2."""
    target = max(16.0, lists_per_sqrt * math.sqrt(max(count, 1)))
    return int(2 ** round(math.log2(target)))
