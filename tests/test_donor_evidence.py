"""The oracle of benchmarks/donor_evidence.py on real photos: a textured paste is identifiable, a
plain one is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from benchmarks.donor_evidence import donor_inliers
from benchmarks.queries import ROLE_DONOR, ROLE_HOST, Query, RelevantImage
from imgprov import presets


def _save(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def test_a_textured_paste_is_identifiable_and_a_plain_one_is_not(tmp_path):
    host = data.astronaut()
    textured = data.coffee()
    plain = np.full((300, 400, 3), 200, np.uint8)
    plain[:, :, 2] = np.linspace(150, 230, 400).astype(np.uint8)
    query = host.copy()
    query[40:200, 260:460] = textured[120:280, 200:400]
    query[300:420, 40:200] = plain[50:170, 100:260]
    textured_mask = np.zeros(host.shape[:2], np.uint8)
    textured_mask[40:200, 260:460] = 255
    plain_mask = np.zeros(host.shape[:2], np.uint8)
    plain_mask[300:420, 40:200] = 255
    paths = {
        name: _save(tmp_path / f"{name}.png", pixels)
        for name, pixels in [("coffee", textured), ("plain", plain)]
    }
    composite = Query(
        query_id="composite-0",
        kind="composite",
        image_path=_save(tmp_path / "query.png", query),
        source_id="astronaut",
        relevant=(
            RelevantImage("astronaut", ROLE_HOST),
            RelevantImage("coffee", ROLE_DONOR, mask_path=_save(tmp_path / "m1.png", textured_mask)),
            RelevantImage("plain", ROLE_DONOR, mask_path=_save(tmp_path / "m2.png", plain_mask)),
        ),
        related=(),
        ops=(),
        homography=None,
        mask_path=None,
        valid_path=None,
    )
    verify = presets.search().verify
    inliers = donor_inliers(composite, paths, presets.local_features(), verify)
    assert set(inliers) == {"coffee", "plain"}
    assert inliers["coffee"] >= 3 * verify.min_inliers
    assert inliers["plain"] < verify.min_inliers
