"""Plane geometry shared by search, the object stage and compare: (3, 3) transforms of points,
the mirror transform, and (x0, y0, x1, y1) boxes in pixels (pixel k spanning [k, k + 1)), with the
one measure of how much of a query a set of boxes covers."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[float, float, float, float]
COVERAGE_GRID_SIDE = 256
"""The union of several area boxes is counted on a grid of at most this many cells a side."""


def flip_matrix(width: int) -> np.ndarray:
    """(3, 3) float64 left-right mirror of an image `width` pixels wide (its own inverse)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) float64: (N, 2) points under the affine part of a (3, 3) matrix."""
    return points.astype(np.float64) @ matrix[:2, :2].T + matrix[:2, 2]


def bounding_box(points: np.ndarray) -> Box:
    """The smallest box holding (N, 2) points, N >= 1."""
    low, high = points.min(axis=0), points.max(axis=0)
    return (float(low[0]), float(low[1]), float(high[0]), float(high[1]))


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


@dataclass(frozen=True)
class CellCoverage:
    """How a match's points cover a query's textured cells (`explained_cells`).

    share: the fraction, in [0, 1], of textured cells that hold an explained point (1.0 when no
    cell is textured); largest_gap: the cells of the largest 4-connected patch of textured cells
    without one, the trace of a pasted object, a caption or a frame.
    """

    share: float
    largest_gap: int


def explained_cells(
    keypoints: np.ndarray,
    explained: np.ndarray,
    size: tuple[int, int],
    *,
    grid: int,
    textured: int,
) -> CellCoverage:
    """Which of a (width, height) query's textured cells hold an explained point.

    keypoints: (N, 2) float32, the query's keypoints; explained: (M, 2) float32, the points a match
    explains (its verified inliers); both in query pixels. The query is cut into grid x grid cells;
    a cell is textured when it holds at least `textured` keypoints. Unlike `query_coverage`, a
    pasted patch inside a match's region shows: its keypoints have no inliers.
    """
    counts = np.bincount(_grid_cells(keypoints, size, grid), minlength=grid * grid)
    textured_cells = counts >= textured
    hit = np.zeros(grid * grid, bool)
    hit[_grid_cells(explained, size, grid)] = True
    gaps = (textured_cells & ~hit).reshape(grid, grid).astype(np.uint8)
    found, _, stats, _ = cv2.connectedComponentsWithStats(gaps, connectivity=4)
    largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if found > 1 else 0
    if not textured_cells.any():
        return CellCoverage(share=1.0, largest_gap=0)
    return CellCoverage(float((hit & textured_cells).sum() / textured_cells.sum()), largest)


def _grid_cells(points: np.ndarray, size: tuple[int, int], grid: int) -> np.ndarray:
    """(N,) int64 index of the grid x grid cell of each (N, 2) point of a (width, height) image."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    width, height = size
    columns = np.clip((points[:, 0] * grid / max(width, 1)).astype(np.int64), 0, grid - 1)
    rows = np.clip((points[:, 1] * grid / max(height, 1)).astype(np.int64), 0, grid - 1)
    return rows * grid + columns


def query_coverage(
    boxes: np.ndarray | list[Box],
    size: tuple[int, int],
    *,
    keypoint_boxes: bool = False,
    when_empty: float = 0.0,
) -> float:
    """Fraction, in [0, 1], of a (width, height) query covered by the union of (N, 4) boxes.

    Area boxes (the default; object boxes, the whole query): clipped to the query; one box counts
    its exact area, a union is counted on a grid of at most `COVERAGE_GRID_SIDE` cells a side.
    keypoint_boxes: the boxes bound keypoint positions (verified regions): every full-resolution
    pixel from round(x0) to round(x1) inclusive is covered. Each search decision keeps the
    convention it was calibrated with. when_empty: the value for no boxes.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return when_empty
    width, height = size
    if keypoint_boxes:
        cells = np.rint(boxes) + np.array([0.0, 0.0, 1.0, 1.0])
        grid = (height, width)
    else:
        boxes = clip_boxes(boxes, size)
        if len(boxes) == 1:
            return float(box_areas(boxes)[0] / (width * height))
        scale = min(1.0, COVERAGE_GRID_SIDE / max(width, height))
        cells = np.rint(boxes * scale)
        grid = (max(1, round(height * scale)), max(1, round(width * scale)))
    covered = np.zeros(grid, bool)
    for x0, y0, x1, y1 in np.maximum(cells, 0.0).astype(int):
        covered[y0:y1, x0:x1] = True
    return float(covered.mean())
