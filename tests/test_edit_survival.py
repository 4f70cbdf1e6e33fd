"""The edit-survival oracle of the Manip+Benign pairs (benchmarks/edit_survival.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from benchmarks import queries
from benchmarks.edit_survival import BENIGN_FLOOR, edit_survival, pair_survival
from tests.support import photo

SEED = 7


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("originals")
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    return {name: folder / f"{name}.png" for name in ("astronaut", "coffee", "chelsea")}


def test_every_generated_pair_is_made_again_with_its_twin(originals, tmp_path):
    pairs = queries.generate_pairs(originals, {}, {}, [], "manip+benign", 6, SEED, tmp_path)
    for index, pair in enumerate(pairs):
        survival = pair_survival(pair, index, originals, {}, [], SEED)
        assert survival.edit > 0.0 and survival.benign >= 0.0
    with pytest.raises(ValueError, match="not Manip\\+Benign pair 1"):
        pair_survival(pairs[0], 1, originals, {}, [], SEED)


def test_twin_is_the_query_without_its_edit(originals):
    query, twin, _ = queries.manip_benign_twin(originals, {}, {}, [], SEED, 0)
    assert twin.image.shape == query.image.shape
    np.testing.assert_array_equal(twin.homography, query.homography)
    outside = query.valid & ~cv2.dilate(query.mask.astype(np.uint8), np.ones((17, 17), np.uint8)).astype(bool)
    difference = np.abs(query.image.astype(int) - twin.image.astype(int)).max(axis=2)
    assert np.median(difference[outside]) == 0, "away from the edit, little but JPEG blocks differ"
    assert difference[query.mask].mean() > 5 * difference[outside].mean()


def test_ratio_compares_the_edit_with_the_benign_change():
    original = photo("coffee.png")
    identity = np.eye(3)
    mask = np.zeros(original.shape[:2], bool)
    mask[100:200, 100:300] = True
    painted = original.copy()
    painted[mask] = 255
    assert edit_survival(original, original, original, identity, mask).ratio == 0.0
    strong = edit_survival(painted, original, original, identity, mask)
    assert strong.benign == 0.0 and strong.ratio == pytest.approx(strong.edit / BENIGN_FLOOR)
    darker = (original * 0.8).astype(np.uint8)
    darker_painted = darker.copy()
    darker_painted[mask] = darker[mask] // 2 + 1
    weak = edit_survival(darker_painted, darker, original, identity, mask)
    assert weak.benign > 10 and weak.ratio < strong.ratio
    with pytest.raises(ValueError, match="shape"):
        edit_survival(painted[:10], original, original, identity, mask)
