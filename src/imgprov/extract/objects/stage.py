"""The object stage end to end: the objects of a collection image, and those of a query.

A collection image's objects are its proposals (`imgprov.extract.objects.proposals`), each embedded
(`imgprov.extract.objects.embed`). A query's objects are its whole image and, once its host is known with a
transform, every region the host does not explain (`imgprov.extract.objects.localize`, Eq. 9): those are
the pasted regions, the objects donor retrieval needs. Proposals stand in when no host is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from imgprov.extract.effnet import EffNetFeatures
from imgprov.extract.objects.conf import ObjectConf
from imgprov.extract.objects.detector import Detector
from imgprov.extract.objects.embed import ObjectEmbedder, ObjectWhitening
from imgprov.extract.objects.localize import unexplained_regions
from imgprov.extract.objects.proposals import propose
from imgprov.extract.sscd import SSCDExtractor
from imgprov.geometry import clip_boxes, query_coverage
from imgprov.verify import VerifiedRegion


class ObjectKind(StrEnum):
    """What an object's box is: the whole image, a proposal, or a region the host does not explain."""

    WHOLE = "whole"
    PROPOSAL = "proposal"
    UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class ImageObjects:
    """The objects of one image.

    boxes: (k, 4) float32 (x0, y0, x1, y1) in the image's original pixels.
    vectors: (k, D0) float32 raw object vectors, L2-normalized (what a collection stores; search
        uses `searchable(vectors, whitening)`).
    kinds: (k,) what each box is.
    """

    boxes: np.ndarray
    vectors: np.ndarray
    kinds: tuple[ObjectKind, ...]

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class HostAlignment:
    """A query's host and where it lies: pixels (H', W', 3) uint8 RGB of the host, and
    query_to_host (3, 3) float64 mapping query pixels to host pixels (a verified transform)."""

    pixels: np.ndarray
    query_to_host: np.ndarray


def pick_host(
    regions: Sequence[tuple[int, VerifiedRegion]], query_size: tuple[int, int], min_coverage: float
) -> tuple[int, VerifiedRegion] | None:
    """The (image id, verified region) whose region covers most of a (width, height) query, most
    inliers breaking ties; None when none covers `min_coverage` of it. Its image is the host Eq. 9
    compares against."""
    best, best_key = None, None
    for entry in regions:
        region = entry[1]
        covered = query_coverage([region.query_box], query_size)
        key = (covered, region.inliers)
        if covered >= min_coverage and (best_key is None or key > best_key):
            best, best_key = entry, key
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
            ObjectKind.WHOLE if index == 0 and self.conf.proposals.whole_image else ObjectKind.PROPOSAL
            for index in range(len(boxes))
        )
        return ImageObjects(boxes, self.embedder.embed(pixels, boxes), kinds)

    def query_objects(self, pixels: np.ndarray, host: HostAlignment | None = None) -> ImageObjects:
        """The objects of a query: the whole image, the regions `host` does not explain, then
        `query_proposals` proposals (`fallback_proposals` when there is no host)."""
        height, width = pixels.shape[:2]
        boxes = [np.array([[0.0, 0.0, width, height]], np.float32)]
        kinds = [ObjectKind.WHOLE]
        if host is not None:
            regions = unexplained_regions(
                pixels, host.pixels, host.query_to_host, self.conf.retrieval.localize
            )
            boxes.append(regions)
            kinds += [ObjectKind.UNEXPLAINED] * len(regions)
        retrieval = self.conf.retrieval
        extra = retrieval.query_proposals if host is not None else retrieval.fallback_proposals
        if extra > 0:
            proposals = propose(pixels, replace(self.conf.proposals, max_objects=extra + 1), self.detector)
            proposals = proposals[1:] if self.conf.proposals.whole_image else proposals
            boxes.append(proposals[:extra])
            kinds += [ObjectKind.PROPOSAL] * len(proposals[:extra])
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
