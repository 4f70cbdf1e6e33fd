"""RootSIFT local features with their geometry, in original-image pixels.

RootSIFT (Arandjelovic & Zisserman 2012) is SIFT L1-normalized then square-rooted, so that the
Euclidean distance between descriptors approximates the Hellinger kernel. Descriptors are stored as
uint8 (value * DESCRIPTOR_SCALE), which keeps 128 bytes per keypoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from imgprov.presets import LocalFeatureConf

DESCRIPTOR_SCALE = 512.0
"""RootSIFT components stay below about 0.35, so 1/512 steps use most of the uint8 range."""

DESCRIPTOR_DIM = 128


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints of one image, all coordinates in that image's original pixels.

    keypoints: (N, 2) float32, x and y of each keypoint centre.
    scales: (N,) float32, keypoint diameter in pixels.
    angles: (N,) float32, orientation in radians, counter-clockwise in image axes (y down).
    descriptors: (N, 128) uint8, quantized RootSIFT (see `descriptors_as_float`).
    image_size: (width, height) of the image the keypoints refer to.
    """

    keypoints: np.ndarray
    scales: np.ndarray
    angles: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def geometry(self) -> np.ndarray:
        """(N, 4) float32 rows of x, y, scale, angle."""
        return np.column_stack([self.keypoints, self.scales, self.angles]).astype(np.float32)

    @classmethod
    def from_arrays(cls, geometry: np.ndarray, descriptors: np.ndarray, image_size: tuple[int, int]):
        """Rebuild from `geometry()` (N, 4) float32 and descriptors (N, 128) uint8."""
        geometry = geometry.reshape(-1, 4)
        return cls(
            keypoints=np.ascontiguousarray(geometry[:, :2]),
            scales=np.ascontiguousarray(geometry[:, 2]),
            angles=np.ascontiguousarray(geometry[:, 3]),
            descriptors=descriptors.reshape(-1, DESCRIPTOR_DIM),
            image_size=image_size,
        )


def descriptors_as_float(descriptors: np.ndarray) -> np.ndarray:
    """(N, 128) uint8 quantized RootSIFT to (N, 128) float32 with unit L2 norm (approximately)."""
    return descriptors.astype(np.float32) * np.float32(1.0 / DESCRIPTOR_SCALE)


def extract_rootsift(pixels: np.ndarray, conf: LocalFeatureConf) -> LocalFeatures:
    """Detect up to `conf.max_keypoints` RootSIFT features.

    pixels: (H, W, 3) uint8 RGB or (H, W) uint8 gray, in original resolution.
    """
    gray = pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    working, factor = _resize_to_working(gray, conf.max_side)
    sift = cv2.SIFT_create(
        nfeatures=conf.max_keypoints,
        nOctaveLayers=conf.n_octave_layers,
        contrastThreshold=conf.contrast_threshold,
        edgeThreshold=conf.edge_threshold,
    )
    cv_keypoints, sift_descriptors = sift.detectAndCompute(working, None)
    if not cv_keypoints or sift_descriptors is None:
        return _empty(width, height)
    order = np.argsort([-kp.response for kp in cv_keypoints], kind="stable")[: conf.max_keypoints]
    cv_keypoints = [cv_keypoints[i] for i in order]
    sift_descriptors = sift_descriptors[order]
    points = np.array([kp.pt for kp in cv_keypoints], dtype=np.float32)
    return LocalFeatures(
        keypoints=((points + 0.5) * factor - 0.5).astype(np.float32),
        scales=np.array([kp.size * factor for kp in cv_keypoints], dtype=np.float32),
        angles=np.deg2rad(np.array([kp.angle for kp in cv_keypoints], dtype=np.float32)),
        descriptors=quantize_rootsift(sift_descriptors),
        image_size=(width, height),
    )


def quantize_rootsift(sift_descriptors: np.ndarray) -> np.ndarray:
    """(N, 128) float32 SIFT to (N, 128) uint8 quantized RootSIFT."""
    l1 = np.maximum(np.abs(sift_descriptors).sum(axis=1, keepdims=True), 1e-7)
    root = np.sqrt(np.abs(sift_descriptors) / l1)
    return np.clip(np.rint(root * DESCRIPTOR_SCALE), 0, 255).astype(np.uint8)


def _resize_to_working(gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    height, width = gray.shape
    longest = max(height, width)
    if longest <= max_side:
        return gray, 1.0
    factor = longest / max_side
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    resized = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return resized, width / size[0]


def _empty(width: int, height: int) -> LocalFeatures:
    return LocalFeatures(
        keypoints=np.zeros((0, 2), np.float32),
        scales=np.zeros(0, np.float32),
        angles=np.zeros(0, np.float32),
        descriptors=np.zeros((0, DESCRIPTOR_DIM), np.uint8),
        image_size=(width, height),
    )
