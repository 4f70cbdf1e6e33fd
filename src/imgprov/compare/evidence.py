"""Why a changed region was kept: its evidence, in numbers a person can check (`EVIDENCE_NAMES`).

A false alarm is diagnosed from these: a band next to a pad shows a high `border_share`, a clipped
highlight a `structure` and `detail_loss` without `residual` or `deep`, a real paste stands out in
`ring_contrast`, the residual and the deep features alike.
"""

from __future__ import annotations

import cv2
import numpy as np

from imgprov.compare.difference import CHANNEL_NAMES, RAW_CHANNELS, DifferenceMaps

EVIDENCE_NAMES = (
    "heat",
    "ring_contrast",
    "residual",
    "chroma",
    "structure",
    "detail_loss",
    "detail_gain",
    "deep",
    "deep_contrast",
    "border_share",
)
"""heat: mean heatmap inside (working frame); ring_contrast: that minus the mean heat of a ring of
RING working pixels around it; residual, chroma, structure (structure_2), detail_loss, detail_gain,
deep (deep_16): median robust z-score of that difference channel inside (robust deviations above
the image's typical difference); deep_contrast: median deep_16 cosine distance inside minus its
median over the comparable pixels; border_share: share of the ring that is not comparable (a
pad, rotation fill, crop edge or clipped patch next to the region)."""
RING = 4
STRONGEST_OF = ("residual", "chroma", "structure", "detail_loss", "detail_gain", "deep")
CHANNEL_OF = {
    "residual": "residual",
    "chroma": "chroma",
    "structure": "structure_2",
    "detail_loss": "detail_loss",
    "detail_gain": "detail_gain",
    "deep": "deep_16",
}


def region_evidence(
    region: np.ndarray, heatmap: np.ndarray, maps: DifferenceMaps
) -> tuple[dict[str, float], str]:
    """The evidence of one region and its strongest channel.

    region: (H, W) bool in the query frame; heatmap: (h, w) float32 and maps: the difference
    channels, both in the working frame, where the region is looked at (every working pixel it
    touches).
    """
    height, width = heatmap.shape
    small = cv2.resize(region.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0
    comparable = maps.comparable
    inside = small & comparable
    if not inside.any():
        return {}, ""
    size = 2 * RING + 1
    grown = cv2.dilate(small.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
    ring = grown & ~small
    ring_heat = heatmap[ring & comparable]
    deep_map = maps.raw[:, :, RAW_CHANNELS.index("deep_16")]
    deep_median = float(np.median(deep_map[comparable]))
    heat = float(heatmap[inside].mean())
    evidence = {
        "heat": heat,
        "ring_contrast": heat - float(ring_heat.mean()) if ring_heat.size else heat,
        **{
            name: float(np.median(maps.channels[:, :, CHANNEL_NAMES.index(channel)][inside]))
            for name, channel in CHANNEL_OF.items()
        },
        "deep_contrast": float(np.median(deep_map[inside])) - deep_median,
        "border_share": float((ring & ~comparable).sum()) / max(int(ring.sum()), 1),
    }
    strongest = max(STRONGEST_OF, key=lambda name: evidence[name])
    return {name: evidence[name] for name in EVIDENCE_NAMES}, strongest
