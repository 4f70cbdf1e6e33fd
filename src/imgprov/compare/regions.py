"""From a heatmap to a mask and to boxes: thresholding, small-blob removal, connected regions."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ChangedRegion:
    """One connected edited region, in query pixels.

    box: (x0, y0, x1, y1), right and bottom exclusive; score: highest heatmap value inside, in
    [0, 1]; area: pixels of the mask inside.
    evidence: why the region was kept, as numbers (`imgprov.compare.evidence.EVIDENCE_NAMES`:
    its heat and contrast with its ring, the difference channels' medians inside it, its deep-feature
    distance over the image's, how much of its surroundings is not comparable); strongest: the
    difference channel that stands out most inside it. Empty when not computed.
    """

    box: Box
    score: float
    area: int
    evidence: Mapping[str, float] = field(default_factory=dict)
    strongest: str = ""

    def to_json(self) -> dict:
        document: dict = {"box": list(self.box), "score": round(self.score, 4), "area": self.area}
        if self.evidence:
            document["evidence"] = {name: round(float(v), 4) for name, v in self.evidence.items()}
            document["strongest"] = self.strongest
        return document


def threshold_mask(
    heatmap: np.ndarray, comparable: np.ndarray, threshold: float, min_area_fraction: float
) -> np.ndarray:
    """(H, W) bool: heatmap >= threshold on comparable pixels, without connected blobs smaller than
    min_area_fraction of the comparable area (isolated specks are noise, not edits)."""
    mask = (heatmap >= threshold) & comparable
    min_area = max(1, round(min_area_fraction * int(comparable.sum())))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < min_area)
    small = small[small > 0]
    if count <= 1 or small.size == 0:
        return mask
    return mask & ~np.isin(labels, small)


Explain = Callable[[np.ndarray], tuple[dict[str, float], str]]
"""From a region's (H, W) bool pixels to its evidence and strongest channel (`ChangedRegion`)."""


def changed_regions(
    mask: np.ndarray, heatmap: np.ndarray, explain: Explain | None = None
) -> tuple[ChangedRegion, ...]:
    """Connected regions of mask (H, W) bool, highest score first; heatmap (H, W) float32;
    explain: gives each region its evidence (none when None)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return ()
    peaks = np.zeros(count, np.float32)
    np.maximum.at(peaks, labels[mask], heatmap[mask])
    regions = []
    for label in range(1, count):
        x, y, width, height, area = (int(v) for v in stats[label])
        evidence, strongest = explain(labels == label) if explain is not None else ({}, "")
        box = (x, y, x + width, y + height)
        regions.append(ChangedRegion(box, float(peaks[label]), area, evidence, strongest))
    return tuple(sorted(regions, key=lambda region: (-region.score, -region.area)))
