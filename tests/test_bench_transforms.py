"""Ground truth of the benchmark transforms and query generator (benchmarks.transforms / .queries)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from benchmarks import queries, transforms
from benchmarks.transforms import MANIP_KINDS, OUT_OF_PLACE_OPS


def shrink(image: np.ndarray, long_side: int = 200) -> np.ndarray:
    scale = long_side / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return shrink(data.astronaut())


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return shrink(data.coffee())


@pytest.fixture(scope="module")
def stamp() -> np.ndarray:
    return shrink(data.logo(), 120)


def marker_image() -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """A grey 160x240 image with four 9x9 coloured squares; returns it, their centres (4, 2) and colours."""
    image = np.full((160, 240, 3), 128, dtype=np.uint8)
    centres = np.array([[50.0, 40.0], [190.0, 40.0], [50.0, 120.0], [190.0, 120.0]])
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    for (x, y), colour in zip(centres.astype(int), colours, strict=True):
        image[y - 4 : y + 5, x - 4 : x + 5] = colour
    return image, centres, colours


def colour_centroid(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    near = np.all(np.abs(image.astype(int) - colour) < 60, axis=-1)
    ys, xs = np.nonzero(near)
    return np.array([xs.mean(), ys.mean()])


# --- manipulations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MANIP_KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_manipulation_mask_is_exactly_the_changed_pixels(kind, seed, astronaut, coffee, stamp):
    use_stamp = kind == "splice" and seed == 0
    edit = transforms.manipulate(
        astronaut, np.random.default_rng(seed), kind, donor=coffee, stamp=stamp if use_stamp else None
    )
    assert edit.image.shape == astronaut.shape and edit.image.dtype == np.uint8
    np.testing.assert_array_equal(edit.mask, (edit.image != astronaut).any(-1))
    assert 0.0 < edit.mask.mean() <= 0.3
    assert edit.op["kind"] == kind
    json.dumps(edit.op)


def test_edited_regions_span_the_requested_sizes(astronaut):
    fractions = [
        transforms.manipulate(astronaut, np.random.default_rng(seed), "blur").op["region"]["fraction"]
        for seed in range(40)
    ]
    assert 0.015 <= min(fractions) < 0.05
    assert 0.12 < max(fractions) <= 0.27


def test_photo_splice_records_where_the_donor_pixels_went(astronaut, coffee):
    edit = transforms.manipulate(astronaut, np.random.default_rng(5), "splice", donor=coffee)
    (paste,) = edit.pastes
    np.testing.assert_array_equal(paste.mask, edit.mask)
    assert_donor_pixels_align(edit.image, coffee, paste)


def assert_donor_pixels_align(query: np.ndarray, donor: np.ndarray, paste: transforms.DonorPaste) -> None:
    """The donor warped by the paste homography matches the query on the paste mask (interior)."""
    warped = cv2.warpPerspective(donor, paste.homography, (query.shape[1], query.shape[0]))
    interior = cv2.erode(paste.mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert interior.sum() > 20
    difference = np.abs(warped.astype(int) - query.astype(int))[interior]
    assert difference.mean() < 6


def test_composite_donor_masks_partition_the_change(astronaut, coffee):
    donors = [coffee, shrink(data.chelsea()), shrink(data.rocket())]
    edit = transforms.composite(astronaut, donors, np.random.default_rng(3))
    np.testing.assert_array_equal(edit.mask, (edit.image != astronaut).any(-1))
    stacked = np.stack([paste.mask for paste in edit.pastes])
    assert stacked.sum(axis=0).max() == 1
    np.testing.assert_array_equal(stacked.any(axis=0), edit.mask)
    for paste, donor in zip(edit.pastes, donors, strict=True):
        left, top, right, bottom = paste.source_box
        assert 0 <= left < right <= donor.shape[1] and 0 <= top < bottom <= donor.shape[0]
        assert_donor_pixels_align(edit.image, donor, paste)


# --- geometry --------------------------------------------------------------------------------------

EXPLICIT_STEPS = {
    "flip": lambda image: transforms.flip_horizontal(image),
    "rotate": lambda image: transforms.rotate(image, 13.0),
    "rotate_negative": lambda image: transforms.rotate(image, -15.0),
    "crop": lambda image: transforms.crop(image, 17, 9, 200, 140),
    "pad_reflect": lambda image: transforms.pad(image, (10, 20, 5, 7), True, (0, 0, 0)),
    "pad_solid": lambda image: transforms.pad(image, (3, 0, 12, 9), False, (128, 128, 128)),
    "resize": lambda image: transforms.resize_to(image, 180, 120),
}


@pytest.mark.parametrize("name", sorted(EXPLICIT_STEPS))
def test_homography_maps_original_points_to_where_they_are_in_the_query(name):
    image, centres, colours = marker_image()
    step = EXPLICIT_STEPS[name](image)
    expected = transforms.apply_homography(step.matrix, centres)
    found = np.array([colour_centroid(step.image, colour) for colour in colours])
    np.testing.assert_allclose(found, expected, atol=0.5)


def test_homography_maps_corners_of_the_image():
    image, _, _ = marker_image()
    width, height = image.shape[1], image.shape[0]
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], dtype=float)
    flipped = transforms.apply_homography(transforms.flip_horizontal(image).matrix, corners)
    np.testing.assert_allclose(flipped, corners[[1, 0, 3, 2]])
    padded = transforms.apply_homography(transforms.pad(image, (4, 6, 0, 0), True, (0, 0, 0)).matrix, corners)
    np.testing.assert_allclose(padded, corners + np.array([4, 6]))
    cropped = transforms.apply_homography(transforms.crop(image, 5, 7, 100, 100).matrix, corners)
    np.testing.assert_allclose(cropped, corners - np.array([5, 7]))
    half = transforms.resize_to(image, width // 2, height // 2).matrix
    edges = np.array([[-0.5, -0.5], [width - 0.5, height - 0.5]])
    np.testing.assert_allclose(
        transforms.apply_homography(half, edges), [[-0.5, -0.5], [width / 2 - 0.5, height / 2 - 0.5]]
    )


@pytest.mark.parametrize("name", ["flip", "crop", "pad_reflect", "pad_solid"])
def test_integer_warps_reproduce_the_query_exactly_on_valid_pixels(name, astronaut):
    step = EXPLICIT_STEPS[name](astronaut)
    height, width = step.image.shape[:2]
    warped = cv2.warpPerspective(astronaut, step.matrix, (width, height), flags=cv2.INTER_NEAREST)
    valid = transforms.warp_mask(np.ones(astronaut.shape[:2], dtype=bool), step.matrix, (height, width))
    np.testing.assert_array_equal(warped[valid], step.image[valid])


def test_valid_mask_excludes_padding_and_rotation_corners(astronaut):
    padded = transforms.pad(astronaut, (10, 20, 5, 7), True, (0, 0, 0))
    valid = transforms.warp_mask(
        np.ones(astronaut.shape[:2], dtype=bool), padded.matrix, padded.image.shape[:2]
    )
    expected = np.zeros(padded.image.shape[:2], dtype=bool)
    expected[20 : 20 + astronaut.shape[0], 10 : 10 + astronaut.shape[1]] = True
    np.testing.assert_array_equal(valid, expected)
    rotated = transforms.rotate(astronaut, 15.0)
    valid = transforms.warp_mask(
        np.ones(astronaut.shape[:2], dtype=bool), rotated.matrix, rotated.image.shape[:2]
    )
    assert not valid[0, 0] and not valid[-1, -1] and valid[100, 100]
    near_valid = cv2.dilate(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (rotated.image[~near_valid] == 0).all()


# --- benign transforms -----------------------------------------------------------------------------


@pytest.mark.parametrize("group", transforms.BENIGN_GROUPS)
def test_benign_transform_is_deterministic_and_has_no_edit(group, astronaut):
    first = transforms.benign_transform(astronaut, np.random.default_rng(11), group=group)
    again = transforms.benign_transform(astronaut, np.random.default_rng(11), group=group)
    assert first.image.tobytes() == again.image.tobytes()
    np.testing.assert_array_equal(first.homography, again.homography)
    assert first.ops == again.ops
    assert not first.mask.any()
    assert first.valid.shape == first.mask.shape == first.image.shape[:2]
    assert [op["op"] for op in first.ops[:3]] == ["benign", "resize", "jpeg"]
    assert 40 <= first.ops[2]["quality"] <= 90
    json.dumps(first.ops)


@pytest.mark.parametrize("name", OUT_OF_PLACE_OPS)
def test_benign_out_of_place_homography_aligns_the_original(name, astronaut):
    result = transforms.benign_transform(
        astronaut, np.random.default_rng(4), "out_of_place", out_of_place=name
    )
    height, width = result.image.shape[:2]
    warped = cv2.warpPerspective(astronaut, result.homography, (width, height), flags=cv2.INTER_LINEAR)
    interior = cv2.erode(result.valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    difference = np.abs(warped.astype(int) - result.image.astype(int))[interior]
    assert difference.mean() < 8
    assert result.ops[-1]["op"] == name


def test_every_available_corruption_runs_deterministically(coffee):
    corruptions = transforms.available_corruptions()
    assert {"gaussian_blur", "fog"} <= set(corruptions)
    for name in corruptions:
        for severity in (1, 5):
            first = transforms.corrupt(coffee, name, severity, seed=3)
            again = transforms.corrupt(coffee, name, severity, seed=3)
            assert first.image.shape == coffee.shape and first.image.dtype == np.uint8, name
            assert first.image.tobytes() == again.image.tobytes(), name
            assert not np.array_equal(first.image, coffee), name


def test_corruptions_leave_the_global_numpy_generator_alone(coffee):
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    for name in transforms.available_corruptions():
        transforms.corrupt(coffee, name, 3, seed=1)
    assert np.random.random() == expected


@pytest.mark.parametrize("seed", range(6))
def test_manip_then_benign_mask_is_carried_inside_valid(seed, astronaut):
    rng = np.random.default_rng(seed)
    edit = transforms.manipulate(astronaut, rng, "blur")
    benign = transforms.benign_transform(edit.image, rng, group="both")
    carried = transforms.carry_edit(edit, benign)
    assert carried.mask.any()
    assert not (carried.mask & ~carried.valid).any()
    expected = transforms.warp_mask(edit.mask, benign.homography, benign.image.shape[:2]) & benign.valid
    np.testing.assert_array_equal(carried.mask, expected)


def test_manip_then_flip_flips_the_mask(astronaut):
    edit = transforms.manipulate(astronaut, np.random.default_rng(0), "recolour")
    flipped = transforms.compose_steps(edit.image, [transforms.flip_horizontal(edit.image)], "out_of_place")
    carried = transforms.carry_edit(edit, flipped)
    np.testing.assert_array_equal(carried.mask, edit.mask[:, ::-1])
    np.testing.assert_array_equal(carried.mask, (carried.image != astronaut[:, ::-1]).any(-1))


# --- query sets ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat"):
        Image.fromarray(shrink(getattr(data, name)(), 160)).save(folder / f"{name}.png")
    Image.fromarray(shrink(data.logo(), 100)).save(folder / "logo.png")
    return folder


def collection(folder: Path) -> dict[str, dict[str, Path]]:
    return {
        "originals": {name: folder / f"{name}.png" for name in ("astronaut", "coffee", "chelsea")},
        "held_out": {"cat": folder / "cat.png"},
        "donors": {name: folder / f"{name}.png" for name in ("rocket", "immunohistochemistry")},
    }


SCENES = {"astronaut": "space", "coffee": "cup", "chelsea": "cat", "cat": "cat", "rocket": "space"}


def generate_all(folder: Path, out_dir: Path, stamps: list[Path]) -> list[queries.Query]:
    photos = collection(folder)
    generated = []
    for kind in queries.QUERY_KINDS:
        generated += queries.generate_query_set(
            photos["originals"], photos["held_out"], photos["donors"], stamps, kind, 4, 7, out_dir, SCENES
        )
    queries.save_query_set(generated, out_dir)
    return generated


def file_hashes(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_same_seed_writes_identical_files(photo_dir, tmp_path):
    generate_all(photo_dir, tmp_path / "first", [photo_dir / "logo.png"])
    generate_all(photo_dir, tmp_path / "second", [photo_dir / "logo.png"])
    first, second = file_hashes(tmp_path / "first"), file_hashes(tmp_path / "second")
    assert len(first) > 20 and "queries.json" in first
    assert first == second


def test_more_queries_keep_the_first_ones(photo_dir, tmp_path):
    photos = collection(photo_dir)
    few = queries.generate_query_set(
        photos["originals"], {}, photos["donors"], [], "manip", 2, 3, tmp_path / "a"
    )
    more = queries.generate_query_set(
        photos["originals"], {}, photos["donors"], [], "manip", 4, 3, tmp_path / "b"
    )
    assert [q.ops for q in few] == [q.ops for q in more[:2]]


def test_query_set_round_trips_through_json(photo_dir, tmp_path):
    generated = generate_all(photo_dir, tmp_path, [])
    assert queries.load_query_set(tmp_path) == generated
    assert queries.load_query_set(tmp_path / queries.QUERIES_FILE) == generated


def test_query_ground_truth_per_kind(photo_dir, tmp_path):
    generated = generate_all(photo_dir, tmp_path, [])
    originals = collection(photo_dir)["originals"]
    for query in generated:
        image = queries.load_rgb(query.image_path)
        if query.kind == "distinct":
            assert query.relevant == () and query.mask_path is None
            assert query.related == ("chelsea",)
            continue
        mask = queries.load_mask(query.mask_path)
        valid = queries.load_mask(query.valid_path)
        assert mask.shape == valid.shape == image.shape[:2]
        assert not (mask & ~valid).any()
        if query.kind in ("manip", "composite"):
            original = queries.load_rgb(originals[query.source_id])
            np.testing.assert_array_equal(mask, (image != original).any(-1))
        if query.kind == "benign":
            assert not mask.any()
            assert query.relevant_ids() == {query.source_id}
        if query.kind == "composite":
            assert query.relevant_ids(["host"]) == {query.source_id}
            donors = [r for r in query.relevant if r.role == "donor"]
            assert 1 <= len(donors) <= 2
            union = np.zeros_like(mask)
            for donor in donors:
                union |= queries.load_mask(donor.mask_path)
            np.testing.assert_array_equal(union, mask)
        if query.source_id == "astronaut":
            assert "rocket" in query.related or "rocket" in query.relevant_ids()


def test_pairs_have_labels_and_masks(photo_dir, tmp_path):
    photos = collection(photo_dir)
    pairs = []
    for kind in queries.PAIR_KINDS:
        pairs += queries.generate_pairs(
            photos["originals"], photos["held_out"], photos["donors"], [], kind, 3, 5, tmp_path
        )
    queries.save_pairs(pairs, tmp_path)
    assert queries.load_pairs(tmp_path) == pairs
    for pair in pairs:
        mask = queries.load_mask(pair.mask_path)
        assert pair.label == queries.PAIR_LABELS[pair.kind]
        assert mask.shape == queries.load_rgb(pair.query_path).shape[:2]
        if pair.label == "benign":
            assert not mask.any()
        elif pair.label == "manipulated":
            assert mask.any()
        else:
            assert mask.all() and pair.homography is None


def test_manipulated_pairs_of_a_greyscale_photo_change_pixels(photo_dir, tmp_path):
    grey = np.asarray(Image.open(photo_dir / "coffee.png").convert("L").convert("RGB"))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    originals = {"grey": tmp_path / "grey.png"}
    for kind in ("manip", "manip+benign"):
        pairs = queries.generate_pairs(originals, {}, {}, [], kind, 12, 2, tmp_path / kind)
        assert all(queries.load_mask(pair.mask_path).mean() >= 0.001 for pair in pairs)
