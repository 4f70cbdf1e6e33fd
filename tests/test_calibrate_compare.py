"""benchmarks/calibrate_compare.py: the choice of the verdict model's prior shift, identical pairs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmarks.calibrate_compare import (
    PhotoPart,
    best_prior_shift,
    identical_pairs,
    set_accuracies,
    shifted_verdicts,
)
from imgprov.compare.models import VERDICTS
from imgprov.demo import SKIMAGE_PHOTOS, skimage_data_dir

BENIGN, MANIPULATED, DISTINCT = (VERDICTS.index(name) for name in ("benign", "manipulated", "distinct"))


def log_probabilities(benign_margins: list[float]) -> np.ndarray:
    """Rows whose benign log-probability exceeds the manipulated one by each margin."""
    rows = np.full((len(benign_margins), len(VERDICTS)), -20.0)
    rows[:, BENIGN] = 0.0
    rows[:, MANIPULATED] = -np.asarray(benign_margins)
    return rows


def test_the_shift_rescues_faint_edits_without_costing_benign_copies():
    kinds = ["benign"] * 4 + ["manip+benign"] * 4 + ["distinct"]
    margins = [1.0, 1.2, 1.5, 2.0, 0.4, 0.3, 0.2, -0.5]
    positions = np.arange(8)
    assert best_prior_shift(kinds, positions, log_probabilities(margins), 1.5) == pytest.approx(0.45)
    assert best_prior_shift(kinds, positions, log_probabilities(margins), 0.0) == 0.0


def test_no_shift_is_kept_when_every_set_is_already_right():
    kinds = ["benign", "manip", "identical"]
    logs = log_probabilities([2.0, -2.0, 3.0])
    assert best_prior_shift(kinds, np.arange(3), logs, 1.5) == 0.0


def test_unaligned_pairs_answer_distinct_and_count_in_their_set():
    kinds = ["benign", "distinct", "manip+benign"]
    positions = np.array([0, 2])
    predicted = shifted_verdicts(3, positions, log_probabilities([1.0, 0.5]), 0.6)
    assert predicted.tolist() == [BENIGN, DISTINCT, MANIPULATED]
    assert set_accuracies(kinds, predicted) == {"benign": 1.0, "manip+benign": 1.0, "distinct": 1.0}


def test_identical_pairs_have_an_empty_mask_of_their_photo_size_whatever_the_count(tmp_path):
    """Counts draw different photos for the same pair numbers; a mask is never another photo's."""
    originals = {name: skimage_data_dir() / name for name in SKIMAGE_PHOTOS}
    part = PhotoPart(originals, {}, (), "scikit-image", {name: name for name in originals})
    for count in (2, 5, 3):
        for pair in identical_pairs(part, count, 0, tmp_path):
            with Image.open(pair.query_path) as image, Image.open(pair.mask_path) as mask:
                assert mask.size == image.size
                assert not np.asarray(mask).any()
