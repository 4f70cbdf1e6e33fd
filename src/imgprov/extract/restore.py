"""Photometric restoration of a degraded query before its local features are extracted.

Two degradations leave a copy's SSCD embedding close enough to be shortlisted but take away the
keypoints that verification needs: impulse (salt-and-pepper) noise, whose isolated extreme pixels
become blob-like keypoints with random descriptors, and a strong loss of contrast, which pushes
most of the image's extrema below SIFT's absolute contrast threshold. Both have a cheap test and a
cheap remedy: a 3x3 median filter and a stretch of the luminance to the full range. Geometry is
unchanged, so keypoints of the restored image are in the query's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IMPULSE_DEVIATION = 64
"""Grey levels by which a pixel must differ from its 3x3 median to count as an impulse."""
IMPULSE_FRACTION = 0.02
"""Fraction of impulse pixels above which the query is median-filtered (photos: below 0.03)."""
LOW_CONTRAST_RANGE = 100.0
"""Luminance spread (1st to 99th percentile, of 255) below which the luminance is stretched."""


@dataclass(frozen=True)
class Restoration:
    """The restored query and what was done to it.

    pixels: (H, W, 3) uint8 RGB, same size as the query; steps: names of the remedies applied.
    """

    pixels: np.ndarray
    steps: tuple[str, ...]


def impulse_fraction(gray: np.ndarray) -> float:
    """Fraction of pixels of gray ((H, W) uint8) that stand out from their 3x3 median."""
    deviation = np.abs(gray.astype(np.int16) - cv2.medianBlur(gray, 3).astype(np.int16))
    return float(np.mean(deviation > IMPULSE_DEVIATION))


def luminance_range(gray: np.ndarray) -> float:
    """Spread of gray ((H, W) uint8) between its 1st and 99th percentiles."""
    low, high = np.percentile(gray, (1, 99))
    return float(high - low)


def restore_photometry(pixels: np.ndarray) -> Restoration | None:
    """The query with impulse noise removed and/or its contrast stretched; None when it shows
    neither degradation. pixels: (H, W, 3) uint8 RGB."""
    restored, steps = pixels, []
    if impulse_fraction(cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY)) > IMPULSE_FRACTION:
        restored, steps = cv2.medianBlur(restored, 3), [*steps, "median"]
    if luminance_range(cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY)) < LOW_CONTRAST_RANGE:
        restored, steps = _stretch_luminance(restored), [*steps, "stretch"]
    return Restoration(np.ascontiguousarray(restored), tuple(steps)) if steps else None


def _stretch_luminance(pixels: np.ndarray) -> np.ndarray:
    """Map the 1st..99th percentile of the L channel (CIELAB) to 0..255, colours unchanged."""
    lab = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)
    lightness = lab[:, :, 0].astype(np.float32)
    low, high = np.percentile(lightness, (1, 99))
    lab[:, :, 0] = np.clip((lightness - low) * (255.0 / max(high - low, 1.0)), 0, 255).astype(np.uint8)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
