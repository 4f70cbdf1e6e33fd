"""Geometric verification: robust transforms between a query and a candidate, one per shared object.

Correspondences come from two sources: the one-to-one matches of the OS2OS clusters (which survive
approximate k-NN search) and a direct ratio-test matching of the two images' descriptors. Models
are fitted sequentially with USAC MAGSAC++: a homography where enough inliers support one, else a
partial affine transform; each model's inliers are removed before the next is sought, so a host and
each pasted donor object become separate regions.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from imgprov.extract.rootsift import LocalFeatures, descriptors_as_float
from imgprov.geometry import Box, apply_matrix, bounding_box
from imgprov.presets import VerifyConf


@dataclass(frozen=True)
class VerifiedRegion:
    """A region of the query explained by one transform to the candidate.

    query_box, match_box: (x0, y0, x1, y1) in query and candidate original pixels.
    support: inliers / keypoints inside the smaller of the two boxes; near duplicates reach 0.3-0.8,
    chance alignments of unrelated images stay under a few percent.
    transform: (3, 3) float64 mapping query pixels to candidate pixels.
    query_points, match_points: (M, 2) float32 inlier correspondences.
    """

    query_box: Box
    match_box: Box
    inliers: int
    support: float
    transform: np.ndarray
    query_points: np.ndarray
    match_points: np.ndarray

    def mapped_to(self, view_to_query: np.ndarray) -> VerifiedRegion:
        """This region, verified in a view of the query, in the query's own frame.

        view_to_query: (3, 3) float64 mapping the view's pixels to the query's.
        """
        query_points = apply_matrix(view_to_query, self.query_points).astype(np.float32)
        return VerifiedRegion(
            query_box=bounding_box(query_points),
            match_box=self.match_box,
            inliers=self.inliers,
            support=self.support,
            transform=self.transform @ np.linalg.inv(view_to_query),
            query_points=query_points,
            match_points=self.match_points,
        )


def ratio_matches(query: LocalFeatures, candidate: LocalFeatures, ratio: float) -> np.ndarray:
    """(M, 2) int32 pairs (query index, candidate index) passing Lowe's ratio test."""
    if len(query) < 2 or len(candidate) < 2:
        return np.zeros((0, 2), np.int32)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    knn = matcher.knnMatch(
        descriptors_as_float(query.descriptors), descriptors_as_float(candidate.descriptors), 2
    )
    pairs = [
        (m[0].queryIdx, m[0].trainIdx) for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance
    ]
    return np.array(pairs, dtype=np.int32).reshape(-1, 2)


def verify_pair(
    query: LocalFeatures, candidate: LocalFeatures, seed_pairs: np.ndarray, conf: VerifyConf
) -> list[VerifiedRegion]:
    """Find up to `conf.max_regions` transforms between query and candidate, most inliers first.

    seed_pairs: (S, 2) int32 extra (query index, candidate index) correspondences, e.g. OS2OS's.
    """
    pairs = _unique_pairs(
        np.concatenate([seed_pairs.reshape(-1, 2), ratio_matches(query, candidate, conf.ratio)])
    )
    query_points = query.keypoints[pairs[:, 0]].astype(np.float32)
    match_points = candidate.keypoints[pairs[:, 1]].astype(np.float32)
    threshold = conf.reprojection_fraction * float(np.hypot(*candidate.image_size))
    regions: list[VerifiedRegion] = []
    remaining = np.arange(len(pairs))
    while len(regions) < conf.max_regions and len(remaining) >= conf.min_inliers:
        found = _fit_transform(query_points[remaining], match_points[remaining], threshold, conf)
        if found is None:
            break
        transform, inlier_mask = found
        inliers = remaining[inlier_mask]
        region_box = bounding_box(query_points[inliers])
        match_box = bounding_box(match_points[inliers])
        keypoints_inside = min(
            int(_inside(query.keypoints, region_box).sum()),
            int(_inside(candidate.keypoints, match_box).sum()),
        )
        support = len(inliers) / max(keypoints_inside, len(inliers))
        remaining = remaining[~inlier_mask & ~_inside(query_points[remaining], region_box)]
        if support < conf.min_support:
            continue
        regions.append(
            VerifiedRegion(
                query_box=region_box,
                match_box=match_box,
                inliers=len(inliers),
                support=support,
                transform=transform,
                query_points=query_points[inliers],
                match_points=match_points[inliers],
            )
        )
    return regions


def _fit_transform(
    source: np.ndarray, target: np.ndarray, threshold: float, conf: VerifyConf
) -> tuple[np.ndarray, np.ndarray] | None:
    """Best of homography and partial affine by inlier count; None when neither is plausible."""
    best = None
    if len(source) >= 4:
        homography, mask = cv2.findHomography(
            source, target, cv2.USAC_MAGSAC, threshold, maxIters=conf.max_iterations, confidence=0.999
        )
        if homography is not None and mask is not None and _plausible(homography, source):
            best = (homography, mask.ravel().astype(bool))
    affine, mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=conf.max_iterations
    )
    if affine is not None and mask is not None:
        candidate = (np.vstack([affine, [0.0, 0.0, 1.0]]), mask.ravel().astype(bool))
        if best is None or candidate[1].sum() >= best[1].sum():
            best = candidate
    if best is None or best[1].sum() < conf.min_inliers:
        return None
    if _degenerate(source[best[1]]) or _degenerate(target[best[1]]):
        return None
    return best


def _plausible(homography: np.ndarray, source: np.ndarray) -> bool:
    """Reject homographies that fold, flip perspective or scale area by more than 10^4."""
    corners = np.array(_corners(bounding_box(source)), dtype=np.float64)
    mapped = cv2.perspectiveTransform(corners[None], homography)[0]
    area_before = _polygon_area(corners)
    area_after = _polygon_area(mapped)
    if area_before <= 0 or not np.isfinite(mapped).all():
        return False
    ratio = abs(area_after) / area_before
    return 1e-4 < ratio < 1e4 and _is_convex(mapped)


def _degenerate(points: np.ndarray) -> bool:
    """Inliers bunched into a line or a point cannot define a region."""
    if len(points) < 3:
        return True
    spread = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    return bool(spread[1] < 1.0)


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """One-to-one correspondences: each query and each candidate keypoint used once (first kept)."""
    pairs = pairs.astype(np.int32).reshape(-1, 2)
    _, first_query = np.unique(pairs[:, 0], return_index=True)
    pairs = pairs[np.sort(first_query)]
    _, first_candidate = np.unique(pairs[:, 1], return_index=True)
    return pairs[np.sort(first_candidate)]


def _inside(points: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return (points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)


def _corners(box: Box) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _is_convex(points: np.ndarray) -> bool:
    edges = np.roll(points, -1, axis=0) - points
    following = np.roll(edges, -1, axis=0)
    cross = edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]
    return bool((cross > 0).all() or (cross < 0).all())
