"""Regions of a query that its host does not explain (OE-SIR section 3.2, Eq. 9, at pixel level).

Once the host I*_d is retrieved and a transform T between the pair is known (here the verified
local-feature transform, which the paper estimates from the matched object boxes of Eq. 8), the
paper localizes the spliced region with Q = ||M_f(T(I_q)) - M_f(I*_d)||^2 (Eq. 9) and a threshold.
Here the difference is taken between pixels, after a Gaussian blur that absorbs recompression and
resampling noise: a pasted region replaces the host's pixels outright, and pixels place its boundary
more precisely than a stride-8 feature map. The boxes of the thresholded map are the query objects
that donor retrieval most needs: each is a tight box around one pasted region.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from imgprov.geometry import working_copy


@dataclass(frozen=True)
class LocalizeConf:
    """Splice localization against a host.

    working_side: the query is compared at this long side (pixels).
    blur_sigma: Gaussian sigma, in working pixels, applied to both images before differencing.
    threshold: smallest per-pixel difference (max over R, G, B, in [0, 1]) that is a change.
    min_area: connected changed regions smaller than this fraction of the compared area are noise.
    max_regions: most regions returned, largest first.
    border: working pixels along the edge of the host's footprint that are not compared (the warp's
        interpolation with the black outside).
    """

    working_side: int = 384
    blur_sigma: float = 1.5
    threshold: float = 0.12
    min_area: float = 0.004
    max_regions: int = 6
    border: int = 3


def splice_map(
    query: np.ndarray, host: np.ndarray, query_to_host: np.ndarray, conf: LocalizeConf
) -> tuple[np.ndarray, np.ndarray, float]:
    """The difference map Q between a query and its host warped onto the query's frame (Eq. 9).

    query: (H, W, 3) uint8 RGB; host: (H', W', 3) uint8 RGB; query_to_host: (3, 3) float64 mapping
    query pixels to host pixels. Returns the (h, w) float32 difference in [0, 1] at the working
    size, the (h, w) bool mask of pixels the host covers, and the working scale (working / query).
    """
    small, scale = working_copy(query, conf.working_side)
    host_small, host_scale = working_copy(host, max(64, round(conf.working_side * _host_ratio(query, host))))
    to_host = np.diag([host_scale, host_scale, 1.0]) @ query_to_host @ np.diag([1 / scale, 1 / scale, 1.0])
    size = (small.shape[1], small.shape[0])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(host_small, to_host, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    footprint = np.full(host_small.shape[:2], 255, np.uint8)
    covered = cv2.warpPerspective(footprint, to_host, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    kernel = np.ones((2 * conf.border + 1, 2 * conf.border + 1), np.uint8)
    covered = cv2.erode(covered, kernel) == 255
    blurred_query = cv2.GaussianBlur(small.astype(np.float32), (0, 0), conf.blur_sigma)
    blurred_host = cv2.GaussianBlur(warped.astype(np.float32), (0, 0), conf.blur_sigma)
    difference = np.abs(blurred_query - blurred_host).max(axis=2) / 255.0
    return np.where(covered, difference, 0.0).astype(np.float32), covered, scale


def _host_ratio(query: np.ndarray, host: np.ndarray) -> float:
    """Long side of the host over the query's: the host is shrunk by as much as the query."""
    return max(host.shape[:2]) / max(query.shape[:2])


def unexplained_regions(
    query: np.ndarray, host: np.ndarray, query_to_host: np.ndarray, conf: LocalizeConf = LocalizeConf()
) -> np.ndarray:
    """Boxes of the query regions its host does not explain, largest first.

    Returns (n, 4) float32 (x0, y0, x1, y1) in query pixels, n <= conf.max_regions (0 when the host
    explains everything it covers).
    """
    difference, covered, scale = splice_map(query, host, query_to_host, conf)
    changed = (difference > conf.threshold).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
    smallest = conf.min_area * max(1, int(covered.sum()))
    regions = [stats[label] for label in range(1, count) if stats[label, cv2.CC_STAT_AREA] >= smallest]
    regions.sort(key=lambda stat: -int(stat[cv2.CC_STAT_AREA]))
    boxes = [(x, y, x + w, y + h) for x, y, w, h, _ in regions[: conf.max_regions]]
    return (np.array(boxes, np.float64).reshape(-1, 4) / scale).astype(np.float32)
