"""The service's only contact with search, compare and object roles: one function each.

When search or compare change their signatures, or search starts giving each match its role, the
calls to fix are here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imgprov.compare import CompareConf, Comparison, compare_images
from imgprov.errors import ImageError
from imgprov.extract.rootsift import LocalFeatures
from imgprov.extract.sscd import SSCDExtractor
from imgprov.images import load_image
from imgprov.presets import SearchConf
from imgprov.results import Match, SearchResult
from imgprov.search.pipeline import search
from imgprov.service.errors import OriginalUnavailable, UnknownImage
from imgprov.storage import Store
from imgprov.storage.records import ImageRecord

HOST = "host"
DONOR = "donor"
COVERAGE_GRID_SIDE = 256
"""Coverage is measured on a grid of at most this many cells per side (boxes are coarse anyway)."""


@dataclass(frozen=True)
class Explanation:
    """The comparison of a query with one indexed original, and the original's pixels."""

    record: ImageRecord
    original: np.ndarray
    comparison: Comparison


def find_originals(
    collection: Store,
    pixels: np.ndarray,
    conf: SearchConf,
    embedder: SSCDExtractor | None,
    *,
    top_k: int,
    query_name: str,
    unconfirmed: bool = False,
) -> SearchResult:
    """Search the collection for the originals of `pixels` ((H, W, 3) uint8 RGB); with `unconfirmed`,
    the candidates ranked next as well (`SearchResult.unconfirmed`)."""
    return search(
        collection,
        pixels,
        conf,
        top_k=top_k,
        query_name=query_name,
        embedder=embedder,
        unconfirmed=unconfirmed,
    )


def compare_pair(
    query: np.ndarray,
    original: np.ndarray,
    conf: CompareConf,
    *,
    original_features: LocalFeatures | None = None,
) -> Comparison:
    """Compare a query with a candidate original (its RootSIFT features when already known)."""
    return compare_images(query, original, conf, original_features=original_features)


def explain_original(collection: Store, query: np.ndarray, image_id: int, conf: CompareConf) -> Explanation:
    """Compare the query with the indexed original `image_id`, reusing its indexed keypoints.

    The original is a trusted collection file: it is read with the default limits, not the uploads'.
    """
    record = collection.images([image_id]).get(image_id)
    if record is None:
        raise UnknownImage(f"no image with id {image_id} in the collection")
    try:
        original = load_image(record.path).pixels
    except ImageError:
        raise OriginalUnavailable(f"the file of image {image_id} cannot be read on the server") from None
    features = collection.local_features(image_id)
    return Explanation(record, original, compare_pair(query, original, conf, original_features=features))


def match_roles(result: SearchResult) -> dict[int, str]:
    """The role of each matched image id, HOST or DONOR: the role search gives a match when it gives
    one, else the host is the match whose regions cover most of the query and every other is a donor."""
    given = {match.image_id: getattr(match, "role", None) for match in result.matches}
    if given and all(role in (HOST, DONOR) for role in given.values()):
        return given
    coverage = {
        match.image_id: query_coverage(match, result.width, result.height) for match in result.matches
    }
    host = max(result.matches, key=lambda match: (coverage[match.image_id], -match.rank), default=None)
    return {match.image_id: HOST if match is host else DONOR for match in result.matches}


def query_coverage(match: Match, width: int, height: int) -> float:
    """Fraction of the query's area inside the union of the match's regions (query boxes)."""
    if width < 1 or height < 1 or not match.regions:
        return 0.0
    scale = min(1.0, COVERAGE_GRID_SIDE / max(width, height))
    grid = np.zeros((max(1, math.ceil(height * scale)), max(1, math.ceil(width * scale))), bool)
    for region in match.regions:
        x0, y0, x1, y1 = region.query_box
        columns = slice(max(0, math.floor(x0 * scale)), max(0, math.ceil(x1 * scale)))
        rows = slice(max(0, math.floor(y0 * scale)), max(0, math.ceil(y1 * scale)))
        grid[rows, columns] = True
    return float(grid.mean())
