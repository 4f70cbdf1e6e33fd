"""Work proportional to content: the align fallbacks' bounded working size, and blank images."""

from __future__ import annotations

import numpy as np
import pytest

from imgprov.compare.align import FALLBACK_MAX_SIDE, bounded_features, stretch_contrast
from imgprov.compare.conf import ROOTSIFT_SMALL
from imgprov.extract.rootsift import extract_rootsift
from imgprov.images import is_near_constant


def textured(side: int, seed: int = 0) -> np.ndarray:
    """(side, side, 3) uint8 blocks of random grey levels, upsampled so SIFT finds corners."""
    blocks = np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)
    cells = np.kron(blocks, np.ones((side // 16, side // 16), np.uint8))
    return np.repeat(cells[:, :, None], 3, axis=2)


def test_bounded_features_are_unchanged_under_the_bound():
    image = textured(512)
    bounded = bounded_features(image, stretch_contrast, ROOTSIFT_SMALL)
    direct = extract_rootsift(stretch_contrast(image), ROOTSIFT_SMALL)
    np.testing.assert_array_equal(bounded.keypoints, direct.keypoints)
    np.testing.assert_array_equal(bounded.descriptors, direct.descriptors)


def test_bounded_features_of_a_large_image_are_in_its_own_pixels():
    side = 2 * FALLBACK_MAX_SIDE
    small, large = textured(FALLBACK_MAX_SIDE), textured(side)
    features = bounded_features(large, stretch_contrast, ROOTSIFT_SMALL)
    reference = bounded_features(small, stretch_contrast, ROOTSIFT_SMALL)
    assert features.image_size == (side, side)
    assert len(features) == len(reference) > 0
    np.testing.assert_allclose(features.keypoints, (reference.keypoints + 0.5) * 2 - 0.5, atol=1e-3)
    np.testing.assert_allclose(features.scales, reference.scales * 2, rtol=1e-5)


@pytest.mark.parametrize(
    ("pixels", "blank"),
    [
        (np.zeros((3000, 2000, 3), np.uint8), True),
        (np.full((40, 30, 3), (250, 10, 128), np.uint8), True),
        (np.random.default_rng(1).integers(120, 123, (50, 40, 3), dtype=np.uint8), True),
        (np.random.default_rng(1).integers(120, 124, (50, 40, 3), dtype=np.uint8), False),
        (np.zeros((0, 10, 3), np.uint8), True),
    ],
)
def test_near_constant_images(pixels, blank):
    assert is_near_constant(pixels) is blank


def test_detail_larger_than_a_cell_of_the_shrunk_copy_is_content():
    pixels = np.zeros((4000, 4000, 3), np.uint8)
    pixels[1000:1100, 2000:2100, 1] = 40
    assert not is_near_constant(pixels)
    pixels[1000:1100, 2000:2100, 1] = 0
    pixels[:16, :16] = 20
    assert is_near_constant(pixels), "a faint 16-pixel corner of a 4000-pixel image does not count"
