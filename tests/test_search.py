"""Search on real photos: the original comes first for benign copies, composites give host and donor,
and an image that is not in the collection gives no match."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from imgprov import presets
from imgprov.geometry import query_coverage
from imgprov.results import Match, MatchRegion, Role
from imgprov.search.pipeline import search
from imgprov.search.ranking import assign_roles
from tests.support import jpeg, photo

ORIGINALS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]


def resized(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)


def cropped(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    dy, dx = round(height * 0.05), round(width * 0.05)
    return rgb[dy + 3 : height - dy + 3, dx - 4 : width - dx - 4].copy()


def padded(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    top, side = round(height * 0.1), round(width * 0.1)
    return cv2.copyMakeBorder(rgb, top, top, side, side, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def rotated(rgb: np.ndarray, degrees: float = 10.0) -> np.ndarray:
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(rgb, matrix, (width, height))


def flipped(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


BENIGN = {
    "jpeg40": lambda rgb: jpeg(rgb, 40),
    "resized": resized,
    "cropped": cropped,
    "padded": padded,
    "rotated10": rotated,
    "flipped": flipped,
}


@pytest.mark.parametrize("transform", sorted(BENIGN))
@pytest.mark.parametrize("name", ORIGINALS)
def test_original_is_first_for_benign_copies(photo_collection, name, transform):
    query = jpeg(BENIGN[transform](photo(name)), 85)
    result = search(photo_collection, query, presets.search(), stage="local")
    assert result.matches, f"no match for {transform} {name}"
    assert result.matches[0].path.endswith(name)
    assert result.matches[0].rank == 1
    assert result.matches[0].inliers >= 3 * presets.search().verify.min_inliers


def paste(host: np.ndarray, donor_patch: np.ndarray, top_left: tuple[int, int]) -> tuple[np.ndarray, tuple]:
    composite = host.copy()
    x, y = top_left
    height, width = donor_patch.shape[:2]
    composite[y : y + height, x : x + width] = donor_patch
    return composite, (x, y, x + width, y + height)


def box_iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_composite_returns_host_and_donor_with_the_donor_region(photo_collection):
    donor = photo("astronaut.png")
    patch = cv2.resize(donor[30:260, 130:360], (180, 180), interpolation=cv2.INTER_AREA)
    composite, pasted_box = paste(photo("coffee.png"), patch, (380, 120))
    result = search(photo_collection, jpeg(composite, 75), presets.search(), stage="local")
    found = {match.path.rsplit("/", 1)[-1]: match for match in result.matches}
    assert result.matches[0].path.endswith("coffee.png")
    assert "astronaut.png" in found
    assert box_iou(found["astronaut.png"].regions[0].query_box, pasted_box) > 0.5


def test_image_not_in_the_collection_gives_no_match(photo_collection):
    from imgprov.demo import UNRELATED_PHOTO

    result = search(photo_collection, jpeg(photo(UNRELATED_PHOTO), 80), presets.search(), stage="local")
    assert result.matches == ()


def test_region_transform_maps_query_to_original(photo_collection):
    original = photo("chelsea.png")
    query = jpeg(resized(original), 90)
    match = search(photo_collection, query, presets.search(), stage="local").matches[0]
    corner = np.array([[[100.0, 60.0]]])
    mapped = cv2.perspectiveTransform(corner, match.transform)[0, 0]
    assert np.allclose(mapped, [200.5, 120.5], atol=3.0)


def test_roles_follow_coverage_not_rank():
    def match(image_id: int, rank: int, box: tuple[float, float, float, float]) -> Match:
        region = MatchRegion(query_box=box, match_box=box, score=0.9, inliers=50)
        coverage = query_coverage([box], (200, 100), keypoint_boxes=True)
        return Match(image_id, f"/{image_id}.png", rank, 0.9, 50, 1.0, (region,), coverage=coverage)

    donor_first = [match(7, 1, (10, 10, 60, 60)), match(3, 2, (0, 0, 199, 99))]
    assert [m.role for m in assign_roles(donor_first)] == [Role.DONOR, Role.HOST]
    assert [m.role for m in assign_roles(donor_first, min_host_coverage=1.5)] == [Role.DONOR, Role.DONOR]
    assert assign_roles([]) == []
