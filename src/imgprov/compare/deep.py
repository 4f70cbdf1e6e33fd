"""EfficientNet-Lite0 feature maps in compare: a dense matcher for F_A and a feature-difference channel.

Deep features survive what defeats SIFT on small or badly degraded copies (heavy noise, blur, snow,
fog, a contrast collapse): mutual nearest neighbours of the stride-16 cells of the query and of the
original, fitted by a similarity transform, align most such pairs, while unrelated photos get only
a handful of consistent cells. The same network compares an aligned pair cell by cell (cosine
distance of the stride-8 and stride-16 features), a difference that JPEG, noise and blur move less
than they move pixels (the papers' "ResNet/EfficientNet feature difference").

The extractor is loaded at first use (never at import) by `imgprov.extract.models`, shared by the process.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from imgprov.extract.effnet import FeatureMapConf, FeatureMaps
from imgprov.extract.models import effnet_features

DEEP_MAPS = FeatureMapConf(name="effnet-lite0-512", input_long_side=512)
MATCH_STRIDE = 16
DIFFERENCE_STRIDES = (8, 16)


def feature_maps(image: np.ndarray) -> FeatureMaps:
    """EfficientNet-Lite0 maps of an (H, W, 3) uint8 RGB image, its long side resized to 512."""
    return effnet_features(DEEP_MAPS).feature_maps(np.ascontiguousarray(image))


@dataclass(frozen=True)
class CellMatches:
    """Mutual nearest neighbours between the cells of two feature maps.

    query_points, original_points: (M, 2) float32 cell centres in each image's own pixels.
    cell_size: (float) width in original pixels of one cell of the original's map.
    """

    query_points: np.ndarray
    original_points: np.ndarray
    cell_size: float


def cell_matches(query: FeatureMaps, original: FeatureMaps, stride: int = MATCH_STRIDE) -> CellMatches:
    """Cells of `query` and `original` that are each other's most similar (cosine) at `stride`."""
    query_descriptors, query_points = _cells(query, stride)
    original_descriptors, original_points = _cells(original, stride)
    similarity = query_descriptors @ original_descriptors.T
    forward = similarity.argmax(axis=1)
    backward = similarity.argmax(axis=0)
    mutual = np.flatnonzero(backward[forward] == np.arange(len(forward)))
    return CellMatches(
        query_points=query_points[mutual],
        original_points=original_points[forward[mutual]],
        cell_size=float(original.cell_size(stride)[0]),
    )


def _cells(maps: FeatureMaps, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) float32 L2-normalized descriptors of the cells on the image and their (N, 2) float32
    centres in image pixels."""
    columns, rows = maps.valid_cells(stride)
    level = maps.level(stride)[:, :rows, :columns]
    descriptors = level.reshape(level.shape[0], -1).T
    descriptors = descriptors / np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-6)
    ys, xs = np.mgrid[0:rows, 0:columns]
    centres = np.column_stack([xs.ravel() + 0.5, ys.ravel() + 0.5])
    return descriptors.astype(np.float32), maps.map_to_image(centres, stride).astype(np.float32)


def cosine_distance_map(query: FeatureMaps, original: FeatureMaps, stride: int) -> np.ndarray:
    """(h, w) float32 1 - cosine similarity of the two maps' cells at `stride`, resampled onto the
    pixels of the images (both maps must come from images of the same (w, h))."""
    first, second = query.level(stride), original.level(stride)
    dot = (first * second).sum(axis=0)
    norms = np.linalg.norm(first, axis=0) * np.linalg.norm(second, axis=0)
    distance = 1.0 - dot / np.maximum(norms, 1e-6)
    return on_image(distance.astype(np.float32), query, stride)


def on_image(cells: np.ndarray, maps: FeatureMaps, stride: int) -> np.ndarray:
    """A (H/stride, W/stride) map of values per cell as (h, w) float32 on the image's pixels: cell i
    covers canvas pixels [stride i, stride (i + 1)), and the image fills the canvas's top-left
    valid_size."""
    rows, columns = cells.shape
    canvas = cv2.resize(cells, (columns * stride, rows * stride), interpolation=cv2.INTER_LINEAR)
    valid_width, valid_height = maps.valid_size
    width, height = maps.image_size
    return cv2.resize(canvas[:valid_height, :valid_width], (width, height), interpolation=cv2.INTER_LINEAR)
