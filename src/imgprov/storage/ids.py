"""The vector id scheme both stores share (FAISS ids, Milvus primary keys).

A vector id is 64-bit: the image id in the high bits and the item number within the image (a
keypoint, an object) in the low `ITEM_BITS` bits, so an image's vectors are one id range.
"""

from __future__ import annotations

import numpy as np

ITEM_BITS = 16
ITEM_MASK = (1 << ITEM_BITS) - 1


def vector_ids(image_id: int, count: int) -> np.ndarray:
    """(count,) int64 ids of the items 0..count-1 of one image."""
    if count > ITEM_MASK + 1:
        raise ValueError(f"an image may hold at most {ITEM_MASK + 1} vectors, got {count}")
    return (np.int64(image_id) << ITEM_BITS) | np.arange(count, dtype=np.int64)


def split_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split (..., ) int64 vector ids into image ids and item numbers (same shape)."""
    return ids >> ITEM_BITS, ids & ITEM_MASK
