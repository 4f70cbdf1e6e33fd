"""Object-level retrieval (OE-SIR Eq. 7, 8) and its fusion with the global and local stages.

Collection objects live in one FAISS index whose ids are `(image_id << 16) | object_number`
(`imgprov.storage.ids.vector_ids`). Each query object looks up its nearest collection objects; an
image's distance to the query is the smallest squared L2 distance over the object pairs found,
D(I_q, I_d) = min_ij ||x_i^q - x_j^d||^2 (Eq. 7), and the pair reaching it, (i, j) = argmin (Eq. 8),
says which query region the image explains. Pairs beyond every query object's `neighbours` nearest
are not seen, so an image none of whose objects is among them gets no distance at all.

`fuse` then scores every candidate an image stage found (global cosine, OS2OS votes, verified
inliers, object distance) with one logistic model and gives each match a role: `host` when the
query region it explains covers most of the query, `donor` when it explains a small region.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np

from imgprov.geometry import box_areas, clip_boxes
from imgprov.objects.conf import FusionWeights, RetrievalConf
from imgprov.storage.ids import split_ids

Box = tuple[float, float, float, float]
ROLE_HOST = "host"
ROLE_DONOR = "donor"


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

    query_box, match_box: (x0, y0, x1, y1) in query and candidate pixels; source: "local" (verified
    local features), "objects" (the object pair of Eq. 8) or "global" (the whole query, for a match
    found by its global cosine alone); inliers: verified inliers (0 unless "local").
    """

    query_box: Box
    match_box: Box
    source: str
    inliers: int = 0

    def to_json(self) -> dict:
        return {
            "query_box": [round(v, 1) for v in self.query_box],
            "match_box": [round(v, 1) for v in self.match_box],
            "source": self.source,
            "inliers": self.inliers,
        }


@dataclass(frozen=True)
class Evidence:
    """What the stages found about one collection image for one query.

    cosine: global-descriptor cosine (None when not computed); os2os: OS2OS score (0 when the image
    was not shortlisted); inliers: verified inliers over its regions; support: the best verified
    region's inlier fraction; regions: the verified regions; objects: its object hit (Eq. 7, 8),
    with the pair's boxes in `object_region`.
    """

    image_id: int
    cosine: float | None = None
    os2os: float = 0.0
    inliers: int = 0
    support: float = 0.0
    regions: tuple[ExplainedRegion, ...] = ()
    objects: ObjectHit | None = None
    object_region: ExplainedRegion | None = None


@dataclass(frozen=True)
class FusedMatch:
    """A collection image the query is made of, with its role.

    score: fused P(match); confirmed: whether it reaches the fusion threshold; role: "host" or
    "donor"; coverage: fraction of the query its regions explain; regions: the query regions it
    explains, verified ones first; object_pair: (i, j) of Eq. 8 and object_distance its Eq. 7
    distance, when the object stage found the image.
    """

    image_id: int
    rank: int
    score: float
    role: str
    coverage: float
    regions: tuple[ExplainedRegion, ...]
    confirmed: bool = True
    cosine: float | None = None
    inliers: int = 0
    os2os: float = 0.0
    object_pair: tuple[int, int] | None = None
    object_distance: float | None = None
    features: Mapping[str, float] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict:
        """The match as `imgprov search --json` can show it (the caller adds the image's path)."""
        pair = None
        if self.object_pair is not None and self.object_distance is not None:
            pair = {
                "query_object": self.object_pair[0],
                "match_object": self.object_pair[1],
                "distance": round(self.object_distance, 4),
            }
        return {
            "id": self.image_id,
            "rank": self.rank,
            "score": round(self.score, 4),
            "role": self.role,
            "coverage": round(self.coverage, 4),
            "cosine": None if self.cosine is None else round(self.cosine, 4),
            "inliers": self.inliers,
            "os2os": round(self.os2os, 4),
            "regions": [region.to_json() for region in self.regions],
            "object_pair": pair,
        }


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


def coverage(regions: Sequence[ExplainedRegion], query_size: tuple[int, int]) -> float:
    """Fraction of a (width, height) query covered by the union of the regions' query boxes."""
    if not regions:
        return 0.0
    width, height = query_size
    boxes = clip_boxes(np.array([region.query_box for region in regions], np.float64), query_size)
    if len(boxes) == 1:
        return float(box_areas(boxes)[0] / (width * height))
    scale = min(1.0, 256.0 / max(width, height))
    covered = np.zeros((max(1, round(height * scale)), max(1, round(width * scale))), bool)
    for x0, y0, x1, y1 in np.rint(boxes * scale).astype(int):
        covered[y0:y1, x0:x1] = True
    return float(covered.mean())


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
        return (ExplainedRegion(whole, whole, "global"),)
    return ()


def fuse(
    candidates: Sequence[Evidence],
    query_size: tuple[int, int],
    conf: RetrievalConf,
    *,
    top_k: int = 10,
    keep_all: bool = False,
) -> list[FusedMatch]:
    """Rank candidates by fused probability and give the matches their roles.

    query_size: (width, height) of the query. A candidate is a match (`confirmed`) when its fused
    probability reaches `conf.fusion.threshold`; the others are dropped, or ranked after the matches
    when `keep_all` (what `search --unconfirmed` shows, and what recall@k measures). Roles: the
    match whose regions (`explained_regions`) cover most of the query is the host, provided they
    cover at least `conf.host_coverage` of it (a donor found without its host stays a donor);
    every other match, which explains a smaller region or none that is known, is a donor. The host
    is never an unconfirmed candidate.
    """
    scored = []
    for evidence in candidates:
        features = fusion_features(evidence)
        probability = fused_probability(features, conf.fusion)
        if keep_all or probability >= conf.fusion.threshold:
            scored.append((probability, evidence, features))
    scored.sort(key=lambda item: (-item[0], -item[1].inliers, item[1].image_id))
    ranked = []
    for probability, evidence, features in scored[:top_k]:
        regions = explained_regions(evidence, query_size, conf.host_cosine)
        ranked.append((probability, evidence, regions, coverage(regions, query_size), features))
    confirmed = sum(probability >= conf.fusion.threshold for probability, *_ in ranked)
    host = max(range(confirmed), key=lambda number: (ranked[number][3], -number), default=None)
    if host is not None and ranked[host][3] < conf.host_coverage:
        host = None
    return [
        _fused_match(
            rank, probability, evidence, regions, covered, features, rank - 1 == host, rank <= confirmed
        )
        for rank, (probability, evidence, regions, covered, features) in enumerate(ranked, start=1)
    ]


def _fused_match(
    rank: int,
    probability: float,
    evidence: Evidence,
    regions: tuple[ExplainedRegion, ...],
    covered: float,
    features: Mapping[str, float],
    is_host: bool,
    confirmed: bool,
) -> FusedMatch:
    hit = evidence.objects
    return FusedMatch(
        image_id=evidence.image_id,
        rank=rank,
        score=probability,
        role=ROLE_HOST if is_host else ROLE_DONOR,
        coverage=covered,
        regions=regions,
        confirmed=confirmed,
        cosine=evidence.cosine,
        inliers=evidence.inliers,
        os2os=evidence.os2os,
        object_pair=(hit.query_object, hit.match_object) if hit is not None else None,
        object_distance=hit.distance if hit is not None else None,
        features=dict(features),
    )
