"""Box geometry shared by the object stage: (x0, y0, x1, y1) boxes in pixels, pixel k spanning [k, k + 1)."""

from __future__ import annotations

import cv2
import numpy as np


def working_copy(image: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk (never enlarged) to `long_side` pixels on its long side, and the scale used."""
    height, width = image.shape[:2]
    scale = min(1.0, long_side / max(width, height))
    if scale == 1.0:
        return np.ascontiguousarray(image), 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA), scale


def clip_boxes(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, 4) boxes clipped to a (width, height) image, each at least one pixel wide and high."""
    width, height = size
    clipped = np.asarray(boxes, np.float64).copy()
    clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0.0, width)
    clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0.0, height)
    clipped[:, 2] = np.maximum(clipped[:, 2], np.minimum(clipped[:, 0] + 1.0, width))
    clipped[:, 3] = np.maximum(clipped[:, 3], np.minimum(clipped[:, 1] + 1.0, height))
    clipped[:, 0] = np.minimum(clipped[:, 0], clipped[:, 2] - 1.0)
    clipped[:, 1] = np.minimum(clipped[:, 1], clipped[:, 3] - 1.0)
    return clipped


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """(N,) areas of (N, 4) boxes."""
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of (N, 4) and (M, 4) boxes."""
    low = np.maximum(first[:, None, :2], second[None, :, :2])
    high = np.minimum(first[:, None, 2:], second[None, :, 2:])
    overlap = np.prod(np.clip(high - low, 0, None), axis=2)
    union = box_areas(first)[:, None] + box_areas(second)[None, :] - overlap
    return overlap / np.maximum(union, 1e-12)


def box_fraction(box: tuple[float, float, float, float] | np.ndarray, size: tuple[int, int]) -> float:
    """Fraction of a (width, height) image's area that a box covers (after clipping)."""
    width, height = size
    clipped = clip_boxes(np.asarray(box, np.float64).reshape(1, 4), size)
    return float(box_areas(clipped)[0] / max(1.0, float(width * height)))
