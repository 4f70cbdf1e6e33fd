"""OS2OS spatial verification: Hough voting of local matches about per-image centroids.

Implements "Objects in Scene to Objects in Scene" (paper 002, section 3). Given the K nearest
database descriptors of every query descriptor, each database image P that shares matches with the
query gets:

- rank-adaptive match affinities S (Eq. 1),
- the affinity-weighted centroid c of its matched query keypoints (Eq. 2),
- per match, the translation T_k from the query keypoint to c (Eq. 3), the angle difference a_k and
  the scale ratio s_k of the matched keypoints (Eq. 4),
- a vote V_k = L(p_k) + s_k R(a_k) T_k: where that match predicts the centroid in P (Eq. 5),
- votes binned on a grid of cell size w_s = b (w h)^(1 / (2 + eps)) (Eq. 6, 7),
- per bin (an object shared by both images), one-to-one matches O, its centrality score CS
  (Eq. 8, 9), angle coherence AS (Eq. 10) and OS2OS = CS x AS x log|O| (Eq. 11).

Query coordinates are in the frame of the query view the features came from (the caller maps boxes
back for mirrored views); database coordinates are in P's original pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgprov.extract.rootsift import LocalFeatures
from imgprov.presets import OS2OSConf
from imgprov.storage.ids import split_ids

GRID_OFFSETS = ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.5, 0.5))
"""Shifted copies of the vote grid, so an object whose votes straddle a cell border is not split."""

PDF_AT_ZERO = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Cluster:
    """One object shared by the query and a database image: the one-to-one matches O of one bin.

    query_index, match_index: (M,) int32 keypoint numbers in the query view and in the image.
    query_points: (M, 2) float32 query-view pixels; match_points: (M, 2) float32 image pixels.
    affinity: (M,) float32 S of each match (Eq. 1); votes: (M, 2) float32 V_k (Eq. 5).
    """

    query_index: np.ndarray
    match_index: np.ndarray
    query_points: np.ndarray
    match_points: np.ndarray
    affinity: np.ndarray
    votes: np.ndarray
    centrality: float
    angle_coherence: float
    score: float

    def __len__(self) -> int:
        return int(self.query_index.shape[0])


@dataclass(frozen=True)
class CandidateVotes:
    """The clusters of one database image, best first; `score` is the best cluster's OS2OS."""

    image_id: int
    clusters: tuple[Cluster, ...]
    matched: int

    @property
    def score(self) -> float:
        return self.clusters[0].score if self.clusters else 0.0


GeometryLookup = Callable[[list[int]], dict[int, np.ndarray]]
SizeLookup = Callable[[list[int]], dict[int, tuple[int, int]]]


def match_affinity(distances: np.ndarray, ids: np.ndarray, phi: int) -> np.ndarray:
    """Rank-adaptive affinity S(m_ij) = max(0, ||q_i - d_phi|| - ||q_i - d_j||) (Eq. 1).

    distances: (Nq, K) float32 squared L2 distances from FAISS, ascending per row.
    ids: (Nq, K) int64, -1 where fewer than K neighbours exist. Returns (Nq, K) float32.
    """
    valid = ids >= 0
    euclidean = np.sqrt(np.maximum(np.where(valid, distances, np.inf), 0.0))
    reference = euclidean[:, min(phi, euclidean.shape[1] - 1)]
    fallback = np.where(np.isfinite(euclidean), euclidean, -np.inf).max(axis=1)
    reference = np.where(np.isfinite(reference), reference, fallback)
    affinity = np.maximum(0.0, reference[:, None] - euclidean)
    return np.where(valid, affinity, 0.0).astype(np.float32)


def vote_window(width: int, height: int, conf: OS2OSConf) -> float:
    """Vote cell size w_s = b (w h)^(1 / (2 + eps)) for a database image of w x h pixels (Eq. 6)."""
    return conf.window_scale * float(width * height) ** (1.0 / (2.0 + conf.window_eps))


def os2os_candidates(
    query: LocalFeatures,
    distances: np.ndarray,
    ids: np.ndarray,
    geometry_of: GeometryLookup,
    size_of: SizeLookup,
    conf: OS2OSConf,
) -> list[CandidateVotes]:
    """Score every database image sharing matches with the query; best first.

    distances, ids: (Nq, K) the FAISS k-NN result for the query's descriptors, in keypoint order.
    geometry_of: image ids -> (N, 4) float32 keypoint rows x, y, scale, angle.
    size_of: image ids -> (width, height).
    """
    affinity = match_affinity(distances, ids, conf.phi)
    query_rows, neighbour_cols = np.nonzero(affinity > 0)
    if query_rows.size == 0:
        return []
    image_ids, items = split_ids(ids[query_rows, neighbour_cols])
    scores = affinity[query_rows, neighbour_cols]
    groups = _group_by_image(image_ids, scores, conf)
    geometry = geometry_of([image_id for image_id, _ in groups])
    sizes = size_of([image_id for image_id, _ in groups])
    candidates = []
    for image_id, members in groups:
        if image_id not in geometry or image_id not in sizes:
            continue
        candidate = _vote_for_image(
            image_id,
            query,
            query_rows[members],
            items[members],
            scores[members],
            geometry[image_id],
            sizes[image_id],
            conf,
        )
        if candidate.clusters:
            candidates.append(candidate)
    candidates.sort(key=lambda candidate: (-candidate.score, candidate.image_id))
    return candidates


def _group_by_image(
    image_ids: np.ndarray, scores: np.ndarray, conf: OS2OSConf
) -> list[tuple[int, np.ndarray]]:
    """Match positions per image with enough matches, the images with most affinity first."""
    order = np.argsort(image_ids, kind="stable")
    unique, starts, counts = np.unique(image_ids[order], return_index=True, return_counts=True)
    totals = np.add.reduceat(scores[order], starts) if len(starts) else np.zeros(0)
    keep = np.nonzero(counts >= conf.min_cluster_votes)[0]
    keep = keep[np.argsort(-totals[keep], kind="stable")][: conf.max_voting_images]
    return [(int(unique[i]), order[starts[i] : starts[i] + counts[i]]) for i in keep]


@dataclass(frozen=True)
class _ImageMatches:
    """The positive-affinity matches between the query and one image, with their votes (all (M, ...))."""

    query_index: np.ndarray
    match_index: np.ndarray
    query_points: np.ndarray
    match_points: np.ndarray
    affinity: np.ndarray
    angle_diff: np.ndarray
    votes: np.ndarray


def _vote_for_image(
    image_id: int,
    query: LocalFeatures,
    query_index: np.ndarray,
    match_index: np.ndarray,
    affinity: np.ndarray,
    geometry: np.ndarray,
    size: tuple[int, int],
    conf: OS2OSConf,
) -> CandidateVotes:
    in_range = match_index < len(geometry)
    query_index, match_index, affinity = query_index[in_range], match_index[in_range], affinity[in_range]
    query_xy = query.keypoints[query_index].astype(np.float64)
    match = geometry[match_index].astype(np.float64)
    weights = affinity.astype(np.float64)
    centroid = (weights[:, None] * query_xy).sum(axis=0) / weights.sum()
    translation = centroid - query_xy
    angle_diff = _wrap_angle(match[:, 3] - query.angles[query_index].astype(np.float64))
    scale_ratio = match[:, 2] / np.maximum(query.scales[query_index].astype(np.float64), 1e-6)
    matches = _ImageMatches(
        query_index=query_index,
        match_index=match_index,
        query_points=query_xy,
        match_points=match[:, :2],
        affinity=affinity,
        angle_diff=angle_diff,
        votes=match[:, :2] + scale_ratio[:, None] * _rotate(translation, angle_diff),
    )
    window = vote_window(size[0], size[1], conf)
    best: list[Cluster] = []
    for offset in GRID_OFFSETS:
        clusters = _clusters_on_grid(matches, window, np.array(offset) * window, conf)
        if clusters and (not best or clusters[0].score > best[0].score):
            best = clusters
    return CandidateVotes(
        image_id=image_id, clusters=tuple(best[: conf.max_clusters_per_image]), matched=len(query_index)
    )


def _clusters_on_grid(
    matches: _ImageMatches, window: float, offset: np.ndarray, conf: OS2OSConf
) -> list[Cluster]:
    """Bin votes with cells `window` wide (Eq. 7) and score each bin with enough votes."""
    cells = np.ceil((matches.votes + offset) / window).astype(np.int64)
    keys = cells[:, 0] * 1_000_003 + cells[:, 1]
    order = np.argsort(keys, kind="stable")
    _, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
    clusters = []
    for start, count in zip(starts, counts, strict=True):
        if count < conf.min_cluster_votes:
            continue
        members = _one_to_one(order[start : start + count], matches)
        if len(members) < conf.min_cluster_votes:
            continue
        centrality = centrality_score(matches.votes[members], window)
        coherence = angle_coherence_score(matches.angle_diff[members])
        clusters.append(
            Cluster(
                query_index=matches.query_index[members].astype(np.int32),
                match_index=matches.match_index[members].astype(np.int32),
                query_points=matches.query_points[members].astype(np.float32),
                match_points=matches.match_points[members].astype(np.float32),
                affinity=matches.affinity[members].astype(np.float32),
                votes=matches.votes[members].astype(np.float32),
                centrality=centrality,
                angle_coherence=coherence,
                score=os2os_score(centrality, coherence, len(members)),
            )
        )
    clusters.sort(key=lambda cluster: -cluster.score)
    return clusters


def _one_to_one(members: np.ndarray, matches: _ImageMatches) -> np.ndarray:
    """Keep each query and each database keypoint once, preferring the highest affinity."""
    ordered = members[np.argsort(-matches.affinity[members], kind="stable")]
    _, first_query = np.unique(matches.query_index[ordered], return_index=True)
    ordered = ordered[np.sort(first_query)]
    _, first_match = np.unique(matches.match_index[ordered], return_index=True)
    return ordered[np.sort(first_match)]


def centrality_score(votes: np.ndarray, window: float) -> float:
    """CS (Eq. 8, 9): mean Gaussian density of the votes' distances to their mean, in cells.

    votes: (M, 2). Normalized by pdf(0) so that perfectly coincident votes score 1.
    """
    distances = np.linalg.norm(votes - votes.mean(axis=0), axis=1) / window
    density = np.exp(-(distances**2) / 2.0) / math.sqrt(2.0 * math.pi)
    return float(density.mean() / PDF_AT_ZERO)


def angle_coherence_score(angle_diffs: np.ndarray) -> float:
    """AS = 1 / (1 + stdv(A)) (Eq. 10), with the circular standard deviation in radians."""
    resultant = float(np.abs(np.exp(1j * angle_diffs).mean()))
    spread = math.sqrt(max(0.0, -2.0 * math.log(max(resultant, 1e-12))))
    return 1.0 / (1.0 + spread)


def os2os_score(centrality: float, coherence: float, size: int) -> float:
    """OS2OS = CS x AS x log|O| (Eq. 11)."""
    return centrality * coherence * math.log(size)


def _wrap_angle(angles: np.ndarray) -> np.ndarray:
    return (angles + np.pi) % (2.0 * np.pi) - np.pi


def _rotate(vectors: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """R(a) v for each (x, y) row: SIFT angles and pixel axes (y down) turn the same way."""
    cos, sin = np.cos(angles), np.sin(angles)
    x, y = vectors[:, 0], vectors[:, 1]
    return np.column_stack([cos * x - sin * y, sin * x + cos * y])
