"""The object stage end to end: the objects of a collection image, and those of a query.

A collection image's objects are its proposals (`imgprov.objects.proposals`), each embedded
(`imgprov.objects.embed`). A query's objects are its whole image and, once its host is known with a
transform, every region the host does not explain (`imgprov.objects.localize`, Eq. 9): those are
the pasted regions, the objects donor retrieval needs. Proposals stand in when no host is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from imgprov.extract.effnet import EffNetFeatures
from imgprov.extract.sscd import SSCDExtractor
from imgprov.geometry import clip_boxes
from imgprov.objects.conf import ObjectConf
from imgprov.objects.detector import Detector
from imgprov.objects.embed import ObjectEmbedder, ObjectWhitening
from imgprov.objects.localize import unexplained_regions
from imgprov.objects.proposals import propose

KIND_WHOLE = "whole"
KIND_PROPOSAL = "proposal"
KIND_UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class ImageObjects:
    """The objects of one image.

    boxes: (k, 4) float32 (x0, y0, x1, y1) in the image's original pixels.
    vectors: (k, D0) float32 raw object vectors, L2-normalized (what a collection stores; search
        uses `searchable(vectors, whitening)`).
    kinds: (k,) what each box is: "whole", "proposal" or "unexplained" (by the host).
    """

    boxes: np.ndarray
    vectors: np.ndarray
    kinds: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class HostAlignment:
    """A query's host and where it lies: pixels (H', W', 3) uint8 RGB of the host, and
    query_to_host (3, 3) float64 mapping query pixels to host pixels (a verified transform)."""

    pixels: np.ndarray
    query_to_host: np.ndarray


@dataclass(frozen=True)
class VerifiedRegion:
    """A region of the query that local features verified against a collection image.

    query_box: (x0, y0, x1, y1) in query pixels; query_to_match: (3, 3) float64 transform from
    query pixels to the collection image's pixels.
    """

    image_id: int
    query_box: tuple[float, float, float, float]
    inliers: int
    query_to_match: np.ndarray


def pick_host(
    regions: Sequence[VerifiedRegion], query_size: tuple[int, int], min_coverage: float
) -> VerifiedRegion | None:
    """The verified region covering most of a (width, height) query, most inliers breaking ties;
    None when none covers `min_coverage` of it. Its image is the host Eq. 9 compares against."""
    width, height = query_size
    best, best_key = None, None
    for region in regions:
        x0, y0, x1, y1 = region.query_box
        covered = max(0.0, x1 - x0) * max(0.0, y1 - y0) / max(1.0, float(width * height))
        key = (covered, region.inliers)
        if covered >= min_coverage and (best_key is None or key > best_key):
            best, best_key = region, key
    return best


class ObjectStage:
    """Object proposals and embeddings with one `ObjectConf`; models load when this is built.

    Pass `detector`, `sscd` or `features` to share models already loaded elsewhere.
    """

    def __init__(
        self,
        conf: ObjectConf,
        *,
        detector: Detector | None = None,
        sscd: SSCDExtractor | None = None,
        features: EffNetFeatures | None = None,
    ):
        self.conf = conf
        self.embedder = ObjectEmbedder(conf.embedding, features=features, sscd=sscd)
        needs_detector = conf.proposals.method == "detector"
        self.detector = detector if detector is not None or not needs_detector else Detector()

    def collection_objects(self, pixels: np.ndarray) -> ImageObjects:
        """The objects of a collection image ((H, W, 3) uint8 RGB): its up to k proposals."""
        boxes = propose(pixels, self.conf.proposals, self.detector)
        kinds = tuple(
            KIND_WHOLE if index == 0 and self.conf.proposals.whole_image else KIND_PROPOSAL
            for index in range(len(boxes))
        )
        return ImageObjects(boxes, self.embedder.embed(pixels, boxes), kinds)

    def query_objects(self, pixels: np.ndarray, host: HostAlignment | None = None) -> ImageObjects:
        """The objects of a query: the whole image, the regions `host` does not explain, then
        `query_proposals` proposals (`fallback_proposals` when there is no host)."""
        height, width = pixels.shape[:2]
        boxes = [np.array([[0.0, 0.0, width, height]], np.float32)]
        kinds = [KIND_WHOLE]
        if host is not None:
            regions = unexplained_regions(
                pixels, host.pixels, host.query_to_host, self.conf.retrieval.localize
            )
            boxes.append(regions)
            kinds += [KIND_UNEXPLAINED] * len(regions)
        retrieval = self.conf.retrieval
        extra = retrieval.query_proposals if host is not None else retrieval.fallback_proposals
        if extra > 0:
            proposals = propose(pixels, replace(self.conf.proposals, max_objects=extra + 1), self.detector)
            proposals = proposals[1:] if self.conf.proposals.whole_image else proposals
            boxes.append(proposals[:extra])
            kinds += [KIND_PROPOSAL] * len(proposals[:extra])
        stacked = clip_boxes(np.concatenate(boxes), (width, height)).astype(np.float32)
        return ImageObjects(stacked, self.embedder.embed(pixels, stacked), tuple(kinds))

    def fit_whitening(self, raw_vectors: np.ndarray) -> ObjectWhitening | None:
        """The whitening learned on (N, D0) raw collection vectors; None when the preset has none."""
        if self.conf.whitening.dim == 0:
            return None
        return ObjectWhitening.fit(raw_vectors, self.conf.whitening)


def searchable(raw_vectors: np.ndarray, whitening: ObjectWhitening | None) -> np.ndarray:
    """(N, D) float32 vectors to index or search: whitened when there is a whitening, else raw."""
    if whitening is None:
        return np.ascontiguousarray(raw_vectors, np.float32)
    return whitening.transform(raw_vectors)
