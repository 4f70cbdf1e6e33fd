"""The search cascade on real photos: a plain copy is settled at the first look with the answer of
every stage; what a first look cannot settle (a pasted donor, a meme's caption, a collage, an image
not in the collection) goes on to every stage and loses nothing; the explained-cells measure by hand.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imgprov import presets
from imgprov.demo import UNRELATED_PHOTO
from imgprov.geometry import CellCoverage, explained_cells
from imgprov.results import SearchPath
from imgprov.search.pipeline import search
from tests.support import jpeg, photo
from tests.test_search import BENIGN, paste


def matched_names(result) -> list[str]:
    return [match.path.rsplit("/", 1)[-1] for match in result.matches]


def test_explained_cells_counts_textured_cells_that_hold_an_inlier_and_the_largest_gap():
    # a 2 x 2 grid over 100 x 100: three textured cells (>= 2 keypoints), one of them explained twice
    keypoints = np.array([[10, 10], [20, 20], [60, 10], [70, 20], [10, 60], [20, 70], [60, 60]], np.float32)
    inliers = np.array([[10, 10], [20, 20], [70, 20]], np.float32)
    coverage = explained_cells(keypoints, inliers, (100, 100), grid=2, textured=2)
    assert coverage.share == pytest.approx(2 / 3)
    assert coverage.largest_gap == 1
    coverage = explained_cells(keypoints, inliers, (100, 100), grid=2, textured=1)
    assert coverage.share == pytest.approx(2 / 4)
    assert coverage.largest_gap == 2  # the two lower cells touch
    assert explained_cells(keypoints, keypoints, (100, 100), grid=2, textured=1) == CellCoverage(1.0, 0)


def test_a_pasted_patch_is_a_gap_that_a_share_hides():
    # 10 x 10 grid, every cell textured and explained except a 2 x 2 block: 96 % explained, gap 4
    centres = (np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2) * 10 + 5).astype(
        np.float32
    )
    keypoints = np.concatenate([centres, centres + 1])
    pasted = (centres[:, 0] >= 40) & (centres[:, 0] < 60) & (centres[:, 1] >= 20) & (centres[:, 1] < 40)
    coverage = explained_cells(keypoints, centres[~pasted], (100, 100), grid=10, textured=2)
    assert coverage == CellCoverage(0.96, 4)


def test_explained_cells_of_a_query_without_texture_and_points_outside_are_clipped():
    assert explained_cells(np.zeros((0, 2), np.float32), np.zeros((0, 2)), (50, 40), grid=4, textured=3) == (
        CellCoverage(1.0, 0)
    )
    outside = np.array([[-5, -5], [500, 500]], np.float32)
    coverage = explained_cells(outside, outside[:1], (50, 40), grid=2, textured=1)
    assert coverage == CellCoverage(0.5, 1)


@pytest.mark.parametrize(
    ("name", "transform"),
    [
        ("astronaut.png", "resized"),
        ("astronaut.png", "cropped"),
        ("astronaut.png", "rotated10"),
        ("astronaut.png", "flipped"),
        ("chelsea.png", "jpeg40"),
        ("chelsea.png", "resized"),
        ("coffee.png", "cropped"),
    ],
)
def test_a_plain_copy_is_settled_at_the_first_look_with_the_answer_of_every_stage(
    photo_collection, name, transform
):
    query = jpeg(BENIGN[transform](photo(name)), 85)
    conf = presets.search()
    cascade = search(photo_collection, query, conf)
    full = search(photo_collection, query, conf, stage="both")
    assert cascade.path == SearchPath.EARLY_EXIT
    assert cascade.steps == ("global", "first-look")
    assert matched_names(cascade)[:1] == [name]
    assert matched_names(cascade) == matched_names(full)
    assert full.path == SearchPath.BOTH and "os2os" in full.steps


def test_a_pasted_donor_sends_the_query_on_and_both_originals_are_found(photo_collection):
    donor = photo("astronaut.png")
    patch = cv2.resize(donor[30:260, 130:360], (180, 180), interpolation=cv2.INTER_AREA)
    composite, _ = paste(photo("coffee.png"), patch, (380, 120))
    result = search(photo_collection, jpeg(composite, 75), presets.search())
    assert result.path == SearchPath.ESCALATED
    assert result.steps[:3] == ("global", "first-look", "os2os")
    assert matched_names(result)[0] == "coffee.png"
    assert "astronaut.png" in matched_names(result)


def test_a_meme_caption_sends_the_query_on_and_its_original_is_still_found(photo_collection):
    original = photo("chelsea.png")
    height, width = original.shape[:2]
    band = np.full((height // 3, width, 3), 255, np.uint8)
    for row, text in enumerate(["WHEN THE CODE", "FINALLY COMPILES"]):
        cv2.putText(band, text, (12, 45 + 55 * row), cv2.FONT_HERSHEY_DUPLEX, 1.6, (0, 0, 0), 3)
    meme = np.vstack([band, original])
    result = search(photo_collection, jpeg(meme, 80), presets.search())
    assert result.path == SearchPath.ESCALATED
    assert matched_names(result)[0] == "chelsea.png"


def test_a_collage_of_two_originals_finds_both(photo_collection):
    left = cv2.resize(photo("astronaut.png"), (320, 320), interpolation=cv2.INTER_AREA)
    right = cv2.resize(photo("coffee.png"), (426, 320), interpolation=cv2.INTER_AREA)
    result = search(photo_collection, jpeg(np.hstack([left, right]), 85), presets.search())
    assert result.path == SearchPath.ESCALATED
    assert {"astronaut.png", "coffee.png"} <= set(matched_names(result))


def test_an_image_not_in_the_collection_runs_every_stage_and_gives_no_match(photo_collection):
    result = search(photo_collection, jpeg(photo(UNRELATED_PHOTO), 80), presets.search())
    assert result.path == SearchPath.ESCALATED
    assert result.matches == ()
    assert "os2os" in result.steps


@pytest.mark.parametrize("transform", sorted(BENIGN))
@pytest.mark.parametrize("name", ["astronaut.png", "coffee.png", "chelsea.png"])
def test_whichever_path_a_benign_copy_takes_its_original_comes_first(photo_collection, name, transform):
    query = jpeg(BENIGN[transform](photo(name)), 85)
    result = search(photo_collection, query, presets.search())
    assert matched_names(result)[:1] == [name]
    assert result.path in (SearchPath.EARLY_EXIT, SearchPath.ESCALATED)


def test_the_json_says_which_path_the_search_took(photo_collection):
    query = jpeg(cv2.resize(photo("chelsea.png"), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), 85)
    document = search(photo_collection, query, presets.search()).to_json()
    assert document["path"] == "early-exit"
    assert document["steps"] == ["global", "first-look"]
    assert set(document["timings"]) >= {"extract", "search", "verify"}
    for stage, path in (("both", "both"), ("local", "local"), ("global", "global")):
        assert search(photo_collection, query, presets.search(), stage=stage).to_json()["path"] == path


def test_a_search_preset_without_a_cascade_runs_every_stage(photo_collection):
    conf = presets.search()
    without = type(conf)(**{**conf.__dict__, "cascade": None})
    result = search(photo_collection, jpeg(photo("coffee.png"), 70), without)
    assert result.path == SearchPath.BOTH
    assert matched_names(result)[0] == "coffee.png"
