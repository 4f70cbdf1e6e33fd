"""How the service explains a query by one indexed original: the original's file and the comparison
with it, the original's indexed keypoints reused."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgprov.compare import CompareConf, Comparison, compare_images
from imgprov.errors import ImageError
from imgprov.images import load_image
from imgprov.service.errors import OriginalUnavailable, UnknownImage
from imgprov.storage import Store
from imgprov.storage.records import ImageRecord


@dataclass(frozen=True)
class Explanation:
    """The comparison of a query with one indexed original, and the original's pixels."""

    record: ImageRecord
    original: np.ndarray
    comparison: Comparison


def explain_original(collection: Store, query: np.ndarray, image_id: int, conf: CompareConf) -> Explanation:
    """Compare the query with the indexed original `image_id`, reusing its indexed keypoints.

    The original is a trusted collection file: it is read with the default limits, not the uploads'.
    """
    return explain_record(collection, query, indexed_record(collection, image_id), conf)


def indexed_record(collection: Store, image_id: int) -> ImageRecord:
    """The catalogue record of image `image_id`; `UnknownImage` (404) when there is none."""
    record = collection.images([image_id]).get(image_id)
    if record is None:
        raise UnknownImage(f"no image with id {image_id} in the collection")
    return record


def explain_record(
    collection: Store, query: np.ndarray, record: ImageRecord, conf: CompareConf
) -> Explanation:
    """`explain_original` for a record already looked up."""
    try:
        original = load_image(record.path).pixels
    except ImageError:
        raise OriginalUnavailable(f"the file of image {record.id} cannot be read on the server") from None
    features = collection.local_features(record.id)
    return Explanation(record, original, compare_images(query, original, conf, original_features=features))
