"""The evaluation-only benign family (benchmarks.transforms_eval) and bench_compare's per-transform
false-alarm table."""

from __future__ import annotations

import inspect
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import calibrate_compare, transforms_eval
from benchmarks.bench_compare import PairScores, false_alarms_per_transform
from benchmarks.queries import Pair
from benchmarks.transforms import apply_homography, warp_mask
from benchmarks.transforms_eval import EVAL_TRANSFORMS, OPERATIONS, eval_benign_transform, transforms_present
from tests.support import photo


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return photo("chelsea.png")


def test_copies_are_deterministic_from_the_seed(chelsea):
    first = eval_benign_transform(chelsea, np.random.default_rng(7))
    again = eval_benign_transform(chelsea, np.random.default_rng(7))
    other = eval_benign_transform(chelsea, np.random.default_rng(8))
    assert np.array_equal(first.image, again.image) and first.ops == again.ops
    assert first.ops != other.ops
    assert set(transforms_present(first.ops)) <= set(EVAL_TRANSFORMS)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_operation_maps_original_pixels_where_they_went(chelsea, name):
    """A bright square of the input lands where the step's matrix says (photometric steps move
    nothing)."""
    image = chelsea.copy()
    image[100:140, 200:240] = (255, 0, 255)
    step = OPERATIONS[name](image, np.random.default_rng(3))
    assert step.op["transform"] == name
    centre = apply_homography(step.matrix, np.array([[219.5, 119.5]]))[0]
    x, y = (round(float(v)) for v in centre)
    height, width = step.image.shape[:2]
    if not (8 <= x < width - 8 and 8 <= y < height - 8):
        pytest.skip("the square was cropped away by this draw")
    colour = step.image[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).mean(axis=0)
    assert colour[1] < colour[0] and colour[1] < colour[2]


def test_expanded_rotation_keeps_the_whole_picture_and_fills_the_corners(chelsea):
    step = transforms_eval.rotate_expanded(chelsea, np.random.default_rng(1))
    valid = warp_mask(np.ones(chelsea.shape[:2], bool), step.matrix, step.image.shape[:2])
    assert valid.sum() == pytest.approx(chelsea.shape[0] * chelsea.shape[1], rel=0.03)
    fill = np.array(step.op["fill"])
    corners = step.image[[0, 0, -1, -1], [0, -1, 0, -1]].astype(int)
    assert np.abs(corners - fill).max() <= 2


def test_false_alarms_are_counted_per_transform_present(tmp_path):
    def pair(index: int, kind: str, ops: tuple[dict, ...]) -> Pair:
        path = Path(tmp_path / f"{index}.png")
        return Pair(f"p{index}", kind, "benign", path, "o", path, path, None, None, ops)

    def scores(verdict: str) -> PairScores:
        return PairScores("benign", np.zeros(1), 0.0, 0.0, verdict, 0.0, 0.0, 0.0)

    pairs = [
        pair(0, "benign", ({"op": "pad", "transform": "pad"}, {"op": "jpeg", "transform": "jpeg"})),
        pair(1, "benign", ({"op": "jpeg", "transform": "jpeg"},)),
        pair(2, "benign", ({"op": "resize"}, {"op": "corruption", "name": "fog"}, {"op": "flip"})),
        pair(3, "manip", ({"op": "pad", "transform": "pad"},)),
    ]
    verdicts = [scores("manipulated"), scores("benign"), scores("distinct"), scores("benign")]
    table = false_alarms_per_transform(pairs, verdicts)
    assert table["pad"] == {"pairs": 1, "false_alarms": 1, "rate": 1.0}
    assert table["jpeg"] == {"pairs": 2, "false_alarms": 1, "rate": 0.5}
    assert table["fog"]["rate"] == 1.0 and table["mirror"]["pairs"] == 1
    assert "splice" not in table


def test_chroma_subsampling_changes_colour_only(chelsea):
    sub = transforms_eval.chroma(chelsea, np.random.default_rng(2)).image
    before = cv2.cvtColor(chelsea, cv2.COLOR_RGB2YCrCb).astype(int)
    after = cv2.cvtColor(sub, cv2.COLOR_RGB2YCrCb).astype(int)
    assert np.abs(before[:, :, 0] - after[:, :, 0]).mean() < 3
    assert np.abs(before[:, :, 1:] - after[:, :, 1:]).mean() > 0.5


def test_the_calibration_never_sees_the_evaluation_family():
    """calibrate_compare draws its pairs from the training family's generator only."""
    source = inspect.getsource(calibrate_compare)
    assert "transforms_eval" not in source and "generate_eval_pairs" not in source
    assert "generate_pairs" in source
