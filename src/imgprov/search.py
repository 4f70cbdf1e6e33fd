"""Search stage: find the originals a query is made of.

Local search: RootSIFT of the query (and of its mirror image, so flipped copies are found), k-NN of
every descriptor over the whole collection, OS2OS voting to shortlist images and find the objects
they share with the query, then MAGSAC verification of the best candidates. A candidate without a
verified region is not a match; a query without any match gets an empty result (no original in
the collection).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from imgprov.collection import Collection
from imgprov.extract.rootsift import LocalFeatures, descriptors_as_float, extract_rootsift
from imgprov.os2os import CandidateVotes, os2os_candidates
from imgprov.presets import SearchConf
from imgprov.results import Match, MatchRegion, SearchResult, VotePoint
from imgprov.verify import VerifiedRegion, verify_pair


@dataclass(frozen=True)
class QueryView:
    """The query, or its mirror image, with features in the view's own pixel frame.

    to_query: (3, 3) float64 mapping view pixels to query pixels.
    """

    features: LocalFeatures
    to_query: np.ndarray

    def region_in_query_frame(self, region: VerifiedRegion) -> VerifiedRegion:
        """Map a region verified in this view's frame to the query's frame."""
        query_points = _apply(self.to_query, region.query_points).astype(np.float32)
        return VerifiedRegion(
            query_box=_bounding_box(query_points),
            match_box=region.match_box,
            inliers=region.inliers,
            support=region.support,
            transform=region.transform @ np.linalg.inv(self.to_query),
            query_points=query_points,
            match_points=region.match_points,
        )


def search_local(
    collection: Collection, pixels: np.ndarray, conf: SearchConf, *, top_k: int = 10, query_name: str = ""
) -> SearchResult:
    """Search the collection for the originals of `pixels` ((H, W, 3) uint8 RGB)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    views = query_views(pixels, collection, conf)
    timings["extract"] = time.perf_counter() - started

    started = time.perf_counter()
    voted = [(view, vote_with_view(collection, view, conf)) for view in views]
    shortlist = _best_view_per_image(voted)[: conf.shortlist]
    timings["search"] = time.perf_counter() - started

    started = time.perf_counter()
    matches = verify_shortlist(collection, shortlist[: conf.verify_top], conf)
    timings["verify"] = time.perf_counter() - started

    height, width = pixels.shape[:2]
    return SearchResult(
        query=query_name,
        width=width,
        height=height,
        matches=tuple(matches[:top_k]),
        timings=timings,
        votes=tuple(_vote_points(shortlist[: conf.verify_top])),
    )


def query_views(pixels: np.ndarray, collection: Collection, conf: SearchConf) -> list[QueryView]:
    """Features of the query, and of its mirror image when `conf.query_flips`."""
    views = [QueryView(extract_rootsift(pixels, collection.feature_conf), np.eye(3))]
    if conf.query_flips:
        width = pixels.shape[1]
        mirror = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        flipped = np.ascontiguousarray(pixels[:, ::-1])
        views.append(QueryView(extract_rootsift(flipped, collection.feature_conf), mirror))
    return views


def vote_with_view(collection: Collection, view: QueryView, conf: SearchConf) -> list[CandidateVotes]:
    """k-NN over the collection's descriptors, then OS2OS voting, for one query view."""
    index = collection.local_index()
    if len(view.features) == 0 or index.ntotal == 0:
        return []
    k = min(conf.os2os.knn, index.ntotal)
    distances, ids = index.search(descriptors_as_float(view.features.descriptors), k)
    return os2os_candidates(
        view.features,
        distances,
        ids,
        collection.geometry,
        lambda image_ids: {
            image_id: (record.width, record.height)
            for image_id, record in collection.images(image_ids).items()
        },
        conf.os2os,
    )


def verify_shortlist(
    collection: Collection, shortlist: list[tuple[QueryView, CandidateVotes]], conf: SearchConf
) -> list[Match]:
    """Verify each shortlisted image; keep those with a verified region, most inliers first."""
    records = collection.images([candidate.image_id for _, candidate in shortlist])
    verified = []
    for view, candidate in shortlist:
        features = collection.local_features(candidate.image_id)
        record = records.get(candidate.image_id)
        if features is None or record is None:
            continue
        seeds = np.concatenate(
            [np.column_stack([cluster.query_index, cluster.match_index]) for cluster in candidate.clusters]
        )
        regions = [
            view.region_in_query_frame(region)
            for region in verify_pair(view.features, features, seeds, conf.verify)
        ]
        if regions:
            verified.append((candidate, record.path, regions))
    verified.sort(
        key=lambda item: (-sum(region.inliers for region in item[2]), -item[0].score, item[0].image_id)
    )
    return [
        _to_match(rank, candidate, path, regions, conf)
        for rank, (candidate, path, regions) in enumerate(verified, start=1)
    ]


def match_confidence(inliers: int, min_inliers: int) -> float:
    """Map an inlier count to (0, 1): 0.5 at the match threshold, 0.95 at four times it."""
    if inliers <= 0:
        return 0.0
    slope = math.log(19.0) / math.log(4.0)
    return 1.0 / (1.0 + (min_inliers / inliers) ** slope)


def _to_match(
    rank: int, candidate: CandidateVotes, path: str, regions: list[VerifiedRegion], conf: SearchConf
) -> Match:
    minimum = conf.verify.min_inliers
    inliers = sum(region.inliers for region in regions)
    return Match(
        image_id=candidate.image_id,
        path=path,
        rank=rank,
        score=match_confidence(inliers, minimum),
        inliers=inliers,
        os2os=candidate.score,
        regions=tuple(
            MatchRegion(
                query_box=region.query_box,
                match_box=region.match_box,
                score=match_confidence(region.inliers, minimum),
                inliers=region.inliers,
            )
            for region in regions
        ),
        transform=regions[0].transform,
    )


def _best_view_per_image(
    voted: list[tuple[QueryView, list[CandidateVotes]]],
) -> list[tuple[QueryView, CandidateVotes]]:
    best: dict[int, tuple[QueryView, CandidateVotes]] = {}
    for view, candidates in voted:
        for candidate in candidates:
            current = best.get(candidate.image_id)
            if current is None or candidate.score > current[1].score:
                best[candidate.image_id] = (view, candidate)
    return sorted(best.values(), key=lambda item: (-item[1].score, item[1].image_id))


def _vote_points(shortlist: list[tuple[QueryView, CandidateVotes]]) -> list[VotePoint]:
    return [
        VotePoint(
            image_id=candidate.image_id,
            score=cluster.score,
            points=_apply(view.to_query, cluster.query_points).astype(np.float32),
            weights=cluster.affinity,
        )
        for view, candidate in shortlist
        for cluster in candidate.clusters
    ]


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (3, 3) affine matrix to (N, 2) points."""
    return points.astype(np.float64) @ matrix[:2, :2].T + matrix[:2, 2]


def _bounding_box(points: np.ndarray) -> tuple[float, float, float, float]:
    low, high = points.min(axis=0), points.max(axis=0)
    return (float(low[0]), float(low[1]), float(high[0]), float(high[1]))
