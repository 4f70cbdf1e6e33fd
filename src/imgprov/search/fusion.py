"""Object-level retrieval (OE-SIR Eq. 7, 8) and its fusion with the global and local stages.

Collection objects live in one FAISS index whose ids are `(image_id << 16) | object_number`
(`imgprov.storage.ids.vector_ids`). Each query object looks up its nearest collection objects; an
image's distance to the query is the smallest squared L2 distance over the object pairs found,
D(I_q, I_d) = min_ij ||x_i^q - x_j^d||^2 (Eq. 7), and the pair reaching it, (i, j) = argmin (Eq. 8),
says which query region the image explains. Pairs beyond every query object's `neighbours` nearest
are not seen, so an image none of whose objects is among them gets no distance at all.

The fusion model (`FusionScoring`) then scores every candidate a stage found (global cosine, OS2OS
votes, verified inliers, object distance) with one logistic model, for the ranker of
`imgprov.search.ranking`, which also gives each match its role.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import faiss
import numpy as np

from imgprov.extract.objects.conf import FusionWeights, RetrievalConf
from imgprov.geometry import Box, query_coverage
from imgprov.results import Match, MatchRegion, ObjectPair, RegionSource
from imgprov.storage.ids import split_ids


@dataclass(frozen=True)
class ObjectHit:
    """One collection image's distance to the query over object pairs (Eq. 7) and the pair (Eq. 8).

    distance: min_ij ||x_i^q - x_j^d||^2 of L2-normalized vectors, in [0, 4].
    query_object: i, the index of the query's box; match_object: j, the collection object's number.
    """

    image_id: int
    distance: float
    query_object: int
    match_object: int

    @property
    def similarity(self) -> float:
        """The cosine of the pair, 1 - distance / 2 (vectors are L2-normalized)."""
        return 1.0 - self.distance / 2.0


def image_hits(distances: np.ndarray, ids: np.ndarray) -> list[ObjectHit]:
    """Eq. 7 and 8 over k-NN lists: the best object pair of every image the lists reach.

    distances: (n, K) float32 squared L2 distances of each of n query objects to its K neighbours;
    ids: (n, K) int64 their vector ids (-1 where the index had fewer than K vectors).
    Returns one hit per image, nearest first (ties: lower image id first).
    """
    distances = np.asarray(distances, np.float64)
    ids = np.asarray(ids, np.int64)
    found = ids >= 0
    query_objects = np.broadcast_to(np.arange(ids.shape[0])[:, None], ids.shape)[found]
    image_ids, match_objects = split_ids(ids[found])
    flat = distances[found]
    order = np.lexsort((query_objects, flat, image_ids))
    first = np.ones(len(order), bool)
    first[1:] = image_ids[order][1:] != image_ids[order][:-1]
    best = order[first]
    hits = [
        ObjectHit(int(image_ids[i]), float(flat[i]), int(query_objects[i]), int(match_objects[i]))
        for i in best
    ]
    return sorted(hits, key=lambda hit: (hit.distance, hit.image_id))


def search_objects(index: faiss.Index, query_vectors: np.ndarray, neighbours: int) -> list[ObjectHit]:
    """Query objects ((n, D) float32 whitened, L2-normalized) against an L2 object index (Eq. 7, 8)."""
    if index.ntotal == 0 or len(query_vectors) == 0:
        return []
    count = min(neighbours, index.ntotal)
    distances, ids = index.search(np.ascontiguousarray(query_vectors, np.float32), count)
    return image_hits(distances, ids)


@dataclass(frozen=True)
class ExplainedRegion:
    """A query region a candidate explains: from verified local matches or from an object pair.

    query_box, match_box: (x0, y0, x1, y1) in query and candidate pixels; source: what found it;
    inliers: verified inliers (0 unless found by local features).
    """

    query_box: Box
    match_box: Box
    source: RegionSource
    inliers: int = 0


@dataclass(frozen=True)
class Evidence:
    """What the stages found about one collection image for one query.

    cosine: global-descriptor cosine (None when not computed); os2os: OS2OS score (0 when the image
    was not shortlisted); inliers: verified inliers over its regions; support: the best verified
    region's inlier fraction; regions: the verified regions; objects: its object hit (Eq. 7, 8),
    with the pair's boxes in `object_region`; transform: (3, 3) float64 from query pixels to the
    image's, of its first verified region (None without one).
    """

    image_id: int
    cosine: float | None = None
    os2os: float = 0.0
    inliers: int = 0
    support: float = 0.0
    regions: tuple[ExplainedRegion, ...] = ()
    objects: ObjectHit | None = None
    object_region: ExplainedRegion | None = None
    transform: np.ndarray | None = field(default=None, compare=False)


def fusion_features(evidence: Evidence) -> dict[str, float]:
    """The inputs of the fused model: local, support, cosine, os2os and objects (see FusionWeights)."""
    return {
        "local": math.log1p(evidence.inliers),
        "support": evidence.support,
        "cosine": evidence.cosine if evidence.cosine is not None else 0.0,
        "os2os": evidence.os2os,
        "objects": evidence.objects.similarity if evidence.objects is not None else 0.0,
    }


def fused_probability(features: Mapping[str, float], weights: FusionWeights) -> float:
    """sigmoid(bias + sum of weight x feature)."""
    logit = weights.bias + sum(getattr(weights, name) * value for name, value in features.items())
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))


def explained_regions(
    evidence: Evidence, query_size: tuple[int, int], host_cosine: float
) -> tuple[ExplainedRegion, ...]:
    """The verified regions; else the object pair's region; else, for an image whose global cosine
    reaches `host_cosine`, the whole query (a near-duplicate explains all of it); else none."""
    if evidence.regions:
        return evidence.regions
    if evidence.object_region is not None:
        return (evidence.object_region,)
    if evidence.cosine is not None and evidence.cosine >= host_cosine:
        whole = (0.0, 0.0, float(query_size[0]), float(query_size[1]))
        return (ExplainedRegion(whole, whole, RegionSource.GLOBAL),)
    return ()


@dataclass(frozen=True)
class FusionScoring:
    """The fusion model as the ranker (`imgprov.search.ranking`) uses it, over `Evidence`.

    A match's regions are `explained_regions`, each scored with the match's probability; its
    coverage counts them as area boxes; the host must cover `conf.host_coverage` of the query (a
    donor found without its host stays a donor).
    """

    conf: RetrievalConf

    @property
    def threshold(self) -> float:
        return self.conf.fusion.threshold

    @property
    def min_host_coverage(self) -> float:
        return self.conf.host_coverage

    def probability(self, evidence: Evidence) -> float:
        return fused_probability(fusion_features(evidence), self.conf.fusion)

    def match(
        self, evidence: Evidence, *, rank: int, score: float, path: str, query_size: tuple[int, int]
    ) -> Match:
        regions = explained_regions(evidence, query_size, self.conf.host_cosine)
        return Match(
            image_id=evidence.image_id,
            path=path,
            rank=rank,
            score=score,
            inliers=evidence.inliers,
            os2os=evidence.os2os,
            cosine=evidence.cosine,
            regions=tuple(
                MatchRegion(region.query_box, region.match_box, score, region.inliers, region.source)
                for region in regions
            ),
            transform=evidence.transform,
            coverage=query_coverage([region.query_box for region in regions], query_size),
            object_pair=object_pair(evidence),
        )


def object_pair(evidence: Evidence) -> ObjectPair | None:
    """The object pair that found the image (Eq. 8), with its boxes and Eq. 7 distance."""
    hit, region = evidence.objects, evidence.object_region
    if hit is None or region is None:
        return None
    return ObjectPair(hit.query_object, hit.match_object, region.query_box, region.match_box, hit.distance)
