"""The ICN's 3-way verdict (paper 004 Eq. 8-9): benign, manipulated or distinct, with probabilities.

The ICN learns its classifier end to end; here a multinomial logistic regression reads pair features
a person can check (`VERDICT_FEATURES`), in four groups:

* F_A: how well one transform explains the matches, how alike the aligned images are, how much of
  the query is comparable;
* heat: how high the heatmap goes;
* shape: an editor changes a compact part with a sharp edge, a degradation spreads false alarms
  that fade out (the largest region, the heat around and outside it, the number of regions);
* degradation: how degraded the pair is, which says how much heat a copy produces without any edit.

Its "manipulated" bias carries the calibration's prior shift (benchmarks/calibrate_compare.py).
Distinct means the alignment itself fails: with no plausible transform at all, the probabilities
are the frequencies calibrated for that case.
"""

from __future__ import annotations

import cv2
import numpy as np

from imgprov.compare.align import AlignedPair, GlobalFit
from imgprov.compare.difference import IMAGE_STAT_NAMES, RAW_CHANNELS, DifferenceMaps

VERDICT_FEATURES = (
    "log_inliers",
    "inlier_ratio",
    "residual_permille",
    "spread",
    "deep_fit",
    "correlation",
    "comparable_fraction",
    "heat_peak",
    "heat_top_percent",
    "heat_top_permille",
    "heat_mean",
    "changed_fraction",
    "region_count",
    "largest_region",
    "region_heat",
    "region_fill",
    "heat_concentration",
    "background_heat",
    "region_edge_contrast",
    "region_deep_contrast",
    "log_noise",
    "structure_median",
    "deep_median",
)
HEAT_FLOOR = 0.3
"""Heat below this counts as no evidence when the heat mass is shared out."""
REGION_SURROUND = 4
"""Working pixels around the largest region that still count as part of it."""


def verdict_features(
    fit: GlobalFit, pair: AlignedPair, maps: DifferenceMaps, heatmap: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """(len(VERDICT_FEATURES),) float64 features of one aligned pair.

    maps: the pair's difference channels; heatmap: (h, w) float32 and mask: (h, w) bool, both in the
    working frame of `pair`.
    """
    comparable = pair.comparable
    comparable_area = max(int(comparable.sum()), 1)
    values = np.sort(heatmap[comparable]) if comparable.any() else np.zeros(1, np.float32)
    stats = dict(zip(IMAGE_STAT_NAMES, maps.image_stats, strict=True))
    deep_map = maps.raw[:, :, RAW_CHANNELS.index("deep_16")]
    deep = deep_map[comparable]
    deep_median = float(np.median(deep)) if deep.size else 0.0
    return np.array(
        [
            np.log(fit.inliers),
            fit.inlier_ratio,
            1000.0 * fit.residual,
            fit.spread,
            float(fit.matcher != "rootsift"),
            pair.correlation,
            comparable_area / comparable.size,
            float(values[-1]),
            _top_mean(values, 100),
            _top_mean(values, 1000),
            float(values.mean()),
            int(mask.sum()) / comparable_area,
            *_shape_features(heatmap, mask, comparable, deep_map, deep_median),
            float(stats["log_noise"]),
            float(stats["structure_median"]),
            deep_median,
        ],
        np.float64,
    )


def _top_mean(sorted_values: np.ndarray, fraction: int) -> float:
    """Mean of the highest 1/fraction of sorted_values (at least one)."""
    return float(sorted_values[-max(1, sorted_values.size // fraction) :].mean())


def _shape_features(
    heatmap: np.ndarray, mask: np.ndarray, comparable: np.ndarray, deep: np.ndarray, deep_median: float
) -> list[float]:
    """region_count, largest_region, region_heat, region_fill, heat_concentration, background_heat,
    region_edge_contrast, region_deep_contrast. deep: (h, w) float32, the deep_16 distance map;
    deep_median: its median over the comparable pixels."""
    comparable_area = max(int(comparable.sum()), 1)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    evidence = np.where(comparable & (heatmap > HEAT_FLOOR), heatmap, 0.0)
    if count <= 1:
        background = heatmap[comparable]
        background_heat = float(np.percentile(background, 95)) if background.size else 0.0
        return [0.0, 0.0, 0.0, 0.0, 0.0, background_heat, 0.0, 0.0]
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = labels == largest
    area = int(stats[largest, cv2.CC_STAT_AREA])
    box_area = int(stats[largest, cv2.CC_STAT_WIDTH]) * int(stats[largest, cv2.CC_STAT_HEIGHT])
    size = 2 * REGION_SURROUND + 1
    surround = cv2.dilate(region.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
    outside = heatmap[comparable & ~surround]
    ring = heatmap[comparable & surround & ~region]
    region_heat = float(heatmap[region].mean())
    return [
        float(np.log1p(count - 1)),
        area / comparable_area,
        region_heat,
        area / max(box_area, 1),
        float(evidence[surround].sum()) / max(float(evidence.sum()), 1e-6),
        float(np.percentile(outside, 95)) if outside.size else 0.0,
        region_heat - float(ring.mean()) if ring.size else 0.0,
        float(np.median(deep[region])) - deep_median,
    ]
