"""Compare on real photos: benign copies, a pasted object, unrelated photos, frames and outputs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from benchmarks.metrics import mask_iou
from imgprov.cli.compare import register
from imgprov.compare.align import estimate_transform, mirror_features
from imgprov.compare.calibration import Calibration, CalibrationMissing, packaged_calibration
from imgprov.compare.comparison import Comparison, compare_images, run_alignment, working_heatmap
from imgprov.compare.conf import COMPARES, compare_preset
from imgprov.compare.difference import (
    feature_count,
    masked_blur,
    matching_blur,
    photometric_match,
)
from imgprov.compare.regions import threshold_mask
from imgprov.compare.verdict import VERDICT_FEATURES, verdict_features
from imgprov.errors import PresetError
from imgprov.extract.rootsift import extract_rootsift
from imgprov.pictures.compare import draw_overlay
from imgprov.presets import local_features
from tests.support import jpeg, photo, write_jpeg

JSON_KEYS = {"verdict", "probabilities", "transform", "regions", "timings"}


@pytest.fixture(scope="module")
def conf():
    return compare_preset()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return photo("astronaut.png")


def rotate_and_pad(rgb: np.ndarray, degrees: float, pad: int) -> np.ndarray:
    """Rotate on a canvas grown to hold the whole image (black corners, as an editor's rotate does),
    then add a grey border of `pad` pixels."""
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    cosine, sine = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_width, new_height = round(width * cosine + height * sine), round(width * sine + height * cosine)
    matrix[0, 2] += (new_width - width) / 2
    matrix[1, 2] += (new_height - height) / 2
    rotated = cv2.warpAffine(rgb, matrix, (new_width, new_height), flags=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(rotated, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))


def pasted(host: np.ndarray, donor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """host with an elliptical piece of donor pasted in; returns the image and the changed pixels."""
    edited = host.copy()
    shape = np.zeros(host.shape[:2], np.uint8)
    cv2.ellipse(shape, (330, 170), (70, 50), 20, 0, 360, 1, -1)
    piece = cv2.resize(donor, (host.shape[1], host.shape[0]))
    region = shape > 0
    edited[region] = piece[region]
    return edited, np.any(edited != host, axis=2)


def assert_query_frame(comparison: Comparison, query: np.ndarray) -> None:
    shape = query.shape[:2]
    assert comparison.heatmap.shape == shape and comparison.heatmap.dtype == np.float32
    assert comparison.mask.shape == shape and comparison.mask.dtype == bool
    assert comparison.comparable.shape == shape and comparison.comparable.dtype == bool
    assert float(comparison.heatmap.min()) >= 0.0 and float(comparison.heatmap.max()) <= 1.0
    assert sum(comparison.probabilities.values()) == pytest.approx(1.0)


def test_identical_pair_is_benign_with_an_empty_mask(conf, astronaut):
    comparison = compare_images(astronaut, astronaut, conf)
    assert comparison.verdict == "benign"
    assert not comparison.mask.any() and comparison.regions == ()
    assert comparison.comparable.mean() > 0.95
    np.testing.assert_allclose(comparison.transform, np.eye(3), atol=0.02)


def test_jpeg40_rotated_padded_copy_is_benign_and_padding_is_not_comparable(conf, astronaut):
    pad = 40
    query = rotate_and_pad(jpeg(astronaut, 40), 10.0, pad)
    comparison = compare_images(query, astronaut, conf)
    assert comparison.verdict == "benign"
    assert not comparison.mask.any()
    assert_query_frame(comparison, query)
    assert not comparison.comparable[:pad].any() and not comparison.comparable[:, -pad:].any()
    assert comparison.comparable[250:450, 250:450].all()


def test_pasted_object_is_found(conf, astronaut):
    query, changed = pasted(astronaut, photo("coffee.png"))
    comparison = compare_images(query, astronaut, conf)
    assert comparison.verdict == "manipulated"
    assert mask_iou(comparison.mask, changed) >= 0.5
    x0, y0, x1, y1 = comparison.regions[0].box
    assert x0 < 330 < x1 and y0 < 170 < y1


def test_pasted_object_survives_recompression_and_resizing(conf, astronaut):
    edited, changed = pasted(astronaut, photo("coffee.png"))
    query = jpeg(cv2.resize(edited, (384, 384), interpolation=cv2.INTER_AREA), 70)
    truth = cv2.resize(changed.astype(np.uint8), (384, 384), interpolation=cv2.INTER_NEAREST) > 0
    comparison = compare_images(query, astronaut, conf)
    assert comparison.verdict == "manipulated"
    assert mask_iou(comparison.mask, truth) >= 0.5


def test_unrelated_photos_are_distinct(conf, astronaut):
    comparison = compare_images(photo("coffee.png"), astronaut, conf)
    assert comparison.verdict == "distinct"
    assert not comparison.mask.any()


def test_crop_and_pad_are_not_edits(conf):
    original = photo("chelsea.png")
    cropped = jpeg(original[30:270, 40:400], 85)
    comparison = compare_images(cropped, original, conf)
    assert comparison.verdict == "benign" and not comparison.mask.any()
    assert comparison.comparable.mean() > 0.95
    padded = cv2.copyMakeBorder(original, 0, 0, 60, 60, cv2.BORDER_REFLECT_101)
    comparison = compare_images(padded, original, conf)
    assert comparison.verdict == "benign" and not comparison.mask.any()
    assert not comparison.comparable[:, :55].any() and not comparison.comparable[:, -55:].any()
    assert comparison.comparable[:, 70:-70].mean() > 0.95


def test_picture_next_to_a_pad_stays_aligned(conf):
    """A photo with a dark frame of its own (as some cameras leave), resized, recompressed and padded
    in a light colour: the comparable rows and columns next to the pad are aligned like the rest."""
    frame = 4
    original = cv2.copyMakeBorder(
        photo("motorcycle_left.png")[frame:, frame:], frame, 0, frame, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )
    small = jpeg(cv2.resize(original, None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA), 80)
    query = cv2.copyMakeBorder(small, 11, 8, 35, 6, cv2.BORDER_CONSTANT, value=(195, 183, 146))
    pair = run_alignment(query, original, conf).pair
    error = np.abs(pair.query.astype(np.float32) - pair.original.astype(np.float32)).mean(axis=2)
    error[~pair.comparable] = np.nan
    first_row = int(np.flatnonzero(pair.comparable.any(axis=1))[0])
    first_column = int(np.flatnonzero(pair.comparable.any(axis=0))[0])
    edge_rows = np.nanmedian(error[first_row : first_row + 3], axis=1)
    edge_columns = np.nanmedian(error[:, first_column : first_column + 3], axis=0)
    assert max(edge_rows.max(), edge_columns.max()) <= np.nanmedian(error) + 3.0


def test_letterboxed_crop_is_benign_and_its_bands_are_not_comparable(conf):
    original = photo("chelsea.png")
    band = 30
    cropped = original[40:260, 20:440]
    query = jpeg(cv2.copyMakeBorder(cropped, band, band, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0)), 85)
    comparison = compare_images(query, original, conf)
    assert comparison.verdict == "benign" and not comparison.mask.any()
    assert not comparison.comparable[: band - 2].any() and not comparison.comparable[-band + 2 :].any()
    assert comparison.comparable[band + 10 : -band - 10, 10:-10].mean() > 0.95


def test_faded_copy_stays_comparable(conf):
    original = photo("chelsea.png").astype(np.float32)
    faded = jpeg(np.clip((original - original.mean()) * 0.1 + original.mean(), 0, 255).astype(np.uint8), 85)
    comparison = compare_images(faded, photo("chelsea.png"), conf)
    assert comparison.comparable.mean() > 0.95


def faded(rgb: np.ndarray, contrast: float) -> np.ndarray:
    """ImageNet-C's contrast corruption: every channel pulled towards its mean."""
    pixels = rgb.astype(np.float32)
    means = pixels.mean(axis=(0, 1), keepdims=True)
    return np.clip((pixels - means) * contrast + means, 0, 255).astype(np.uint8)


def test_tone_curve_follows_a_faded_copy_into_its_shadows_and_highlights():
    original = photo("motorcycle_left.png")
    query = faded(original, 0.3)
    mapped = photometric_match(
        query.astype(np.float32), original.astype(np.float32), np.ones(query.shape[:2], bool)
    )
    assert np.abs(mapped - query).max() < 3.0


def test_photometric_match_follows_a_brightness_change_made_in_hsv():
    original = photo("astronaut.png")
    hsv = cv2.cvtColor(original.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + 0.3, 0.0, 1.0)
    query = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    mapped = photometric_match(query, original.astype(np.float32), np.ones(query.shape[:2], bool))
    assert np.percentile(np.abs(mapped - query).sum(axis=2), 99) < 3.0


def test_faded_copy_is_benign_in_its_shadows_too(conf):
    original = photo("motorcycle_left.png")
    comparison = compare_images(jpeg(faded(original, 0.3), 60), original, conf)
    assert comparison.verdict == "benign"
    assert not comparison.mask.any()


def test_flat_background_the_original_shares_stays_comparable(conf):
    """A product shot: white all round, a thin dark handle reaching the top edge (most of each top
    row is white, so the top rows look like a flat band; the original shows the same there)."""
    shot = np.full((420, 560, 3), 255, np.uint8)
    shot[150:420, 130:430] = cv2.resize(photo("coffee.png"), (300, 270))
    cv2.line(shot, (300, 150), (340, 20), (40, 30, 20), 6)
    comparison = compare_images(jpeg(shot, 90), shot, conf)
    assert comparison.verdict == "benign"
    assert comparison.comparable.mean() > 0.95


def test_small_copy_under_impulse_noise_is_aligned_by_keypoints(conf):
    original = photo("chelsea.png")
    small = cv2.resize(original, (128, 85), interpolation=cv2.INTER_AREA)
    speckle = np.random.default_rng(0).random(small.shape[:2])
    noisy = small.copy()
    noisy[speckle < 0.135] = 0
    noisy[speckle > 0.865] = 255
    fit = estimate_transform(noisy, original, conf.align)
    assert fit is not None and fit.matcher == "rootsift"
    np.testing.assert_allclose(fit.transform[:2, :2], (451 / 128) * np.eye(2), atol=0.1)


def test_small_copy_under_gaussian_noise_is_aligned_by_smoothed_keypoints(conf):
    original = photo("chelsea.png")
    small = cv2.resize(original, (160, 106), interpolation=cv2.INTER_AREA)
    noise = np.random.default_rng(0).normal(0.0, 97.0, small.shape)
    noisy = np.clip(small + noise, 0, 255).astype(np.uint8)
    fit = estimate_transform(noisy, original, conf.align)
    assert fit is not None and fit.matcher == "rootsift"
    np.testing.assert_allclose(fit.transform[:2, :2], (451 / 160) * np.eye(2), atol=0.05)


def _full_size_masked_blur(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    window = np.maximum(cv2.GaussianBlur(weights, (0, 0), sigma), 1e-3)
    return cv2.GaussianBlur(values * weights[:, :, None], (0, 0), sigma) / window[:, :, None]


@pytest.mark.parametrize("sigma", [4.0, 6.0, 8.0, 12.0, 16.0])
def test_wide_masked_blur_matches_the_full_size_blur_and_ignores_what_is_masked(sigma):
    values = photo("chelsea.png").astype(np.float32)
    height, width = values.shape[:2]
    weights = np.zeros((height, width), np.float32)
    corners = np.array([[40, 10], [width - 20, 60], [width - 70, height - 5], [5, height - 50]], np.int32)
    cv2.fillConvexPoly(weights, corners, 1.0)
    inside = weights > 0
    garbage = np.where(inside[:, :, None], values, 1e6).astype(np.float32)
    blurred = masked_blur(garbage, weights, sigma)
    error = np.abs(blurred - _full_size_masked_blur(values, weights, sigma))[inside]
    assert float(blurred[inside].max()) <= 255.0 + 1e-3, "masked pixels leaked in"
    assert float(error.mean()) < 0.005 * float(values[inside].std())
    assert float(np.percentile(error, 99)) < 0.025 * float(values[inside].std())


@pytest.mark.parametrize("sigma", [0.0, 1.0, 2.0, 4.0])
def test_matching_blur_recovers_the_blur_of_a_copy(conf, sigma):
    original = photo("chelsea.png")
    copy = jpeg(cv2.GaussianBlur(original, (0, 0), sigma) if sigma else original, 80)
    comparable = np.ones(original.shape[:2], bool)
    found = matching_blur(
        copy.astype(np.float32), original.astype(np.float32), comparable, conf.difference.blur_sigmas
    )
    assert found == pytest.approx(sigma, abs=0.5)


def test_defocused_copy_is_benign(conf, astronaut):
    comparison = compare_images(jpeg(cv2.GaussianBlur(astronaut, (0, 0), 2.0), 70), astronaut, conf)
    assert comparison.verdict == "benign"
    assert comparison.heatmap.max() < 0.75 * comparison.threshold


def test_pasted_object_is_found_in_a_defocused_copy(conf, astronaut):
    query, changed = pasted(astronaut, photo("coffee.png"))
    comparison = compare_images(jpeg(cv2.GaussianBlur(query, (0, 0), 3.0), 70), astronaut, conf)
    assert comparison.verdict == "manipulated"
    assert mask_iou(comparison.mask, changed) >= 0.5


def test_blurred_thumbnail_is_aligned_by_deep_features(conf, astronaut):
    thumbnail = cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)
    query = cv2.GaussianBlur(thumbnail, (0, 0), 4.0)
    fit = estimate_transform(query, astronaut, conf.align)
    assert fit is not None and fit.matcher == "effnet"
    np.testing.assert_allclose(fit.transform[:2, :2], 2.56 * np.eye(2), atol=0.08)
    np.testing.assert_allclose(fit.transform[:2, 2], 0.0, atol=3.0)


def verdict_features_of(query: np.ndarray, original: np.ndarray, conf) -> dict[str, float]:
    """The verdict features compare computes for a pair, by name."""
    alignment = run_alignment(query, original, conf)
    calibration = packaged_calibration()
    heatmap, maps = working_heatmap(alignment.pair, conf, calibration)
    comparable = alignment.pair.comparable
    mask = threshold_mask(heatmap, comparable, calibration.threshold, conf.min_region_fraction)
    values = verdict_features(alignment.fit, alignment.pair, maps, heatmap, mask)
    return dict(zip(VERDICT_FEATURES, values, strict=True))


def test_a_pasted_object_stands_out_from_its_ring_and_in_deep_features(conf, astronaut):
    query, _ = pasted(astronaut, photo("coffee.png"))
    features = verdict_features_of(jpeg(query, 85), astronaut, conf)
    assert features["region_edge_contrast"] > 0.3
    assert features["region_deep_contrast"] > 0.3


def test_an_unchanged_copy_has_no_region_contrast(conf, astronaut):
    features = verdict_features_of(jpeg(astronaut, 85), astronaut, conf)
    assert features["region_edge_contrast"] == 0.0 and features["region_deep_contrast"] == 0.0


def test_features_from_search_are_reused(conf, astronaut):
    query, changed = pasted(astronaut, photo("coffee.png"))
    search_conf = local_features()
    comparison = compare_images(
        query,
        astronaut,
        conf,
        query_features=extract_rootsift(query, search_conf),
        original_features=extract_rootsift(astronaut, search_conf),
    )
    assert comparison.verdict == "manipulated"
    assert mask_iou(comparison.mask, changed) >= 0.5


def test_packaged_calibration_matches_the_code(conf):
    calibration = packaged_calibration()
    assert calibration.pixel_model.feature_count == feature_count(conf.difference)
    document = calibration.to_json()
    document["verdict_model"]["feature_names"] = document["verdict_model"]["feature_names"][:-1]
    with pytest.raises(CalibrationMissing):
        Calibration.from_json(document)


def test_mirrored_copy_is_aligned_through_the_flip(conf, astronaut):
    query = jpeg(cv2.resize(astronaut[:, ::-1], (300, 300), interpolation=cv2.INTER_AREA), 80)
    comparison = compare_images(query, astronaut, conf)
    assert comparison.verdict == "benign"
    corner = comparison.transform @ np.array([0.0, 0.0, 1.0])
    assert corner[0] / corner[2] == pytest.approx(511, abs=3)


def test_outputs_are_in_the_query_frame_of_a_smaller_query(conf, astronaut):
    query = jpeg(cv2.resize(astronaut, (200, 260)), 90)
    comparison = compare_images(query, astronaut, conf)
    assert_query_frame(comparison, query)
    overlay = draw_overlay(query, astronaut, comparison)
    assert overlay.shape[0] > 260 and overlay.shape[1] > 400


def test_overlay_caption_wraps_within_a_narrow_picture(conf):
    query = photo("coffee.png")[:150, :150]
    comparison = compare_images(query, photo("coffee.png"), conf)
    overlay = draw_overlay(query, photo("coffee.png"), comparison)
    band = overlay[: overlay.shape[0] - query.shape[0]]
    assert band.shape[0] > 40, "the caption should take several lines"
    assert (band[:, -4:] == 255).all(), "no caption text may run off the right edge"


def test_mirror_features_match_features_of_the_mirrored_image(astronaut):
    features_conf = local_features("rootsift-1k-768")
    mirrored = mirror_features(extract_rootsift(astronaut, features_conf))
    direct = extract_rootsift(np.ascontiguousarray(astronaut[:, ::-1]), features_conf)
    distances = np.linalg.norm(
        mirrored.descriptors[:200, None].astype(np.float32) - direct.descriptors[None].astype(np.float32),
        axis=2,
    )
    nearest = distances.argmin(axis=1)
    offsets = np.linalg.norm(mirrored.keypoints[:200] - direct.keypoints[nearest], axis=1)
    assert np.mean(offsets < 1.0) > 0.8


def test_json_holds_the_documented_keys(conf, astronaut):
    query, _ = pasted(astronaut, photo("coffee.png"))
    document = json.loads(json.dumps(compare_images(query, astronaut, conf).to_json()))
    assert set(document) >= JSON_KEYS
    assert set(document["probabilities"]) == {"benign", "manipulated", "distinct"}
    assert len(document["transform"]) == 3 and all(len(row) == 3 for row in document["transform"])
    assert document["regions"] and set(document["regions"][0]) >= {"box", "score", "area", "evidence"}
    assert {"match", "total"} <= set(document["timings"])


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(PresetError) as error:
        compare_preset("nope")
    assert all(name in str(error.value) for name in COMPARES)


def test_compare_command_writes_json_and_pictures(tmp_path, astronaut):
    query, _ = pasted(astronaut, photo("coffee.png"))
    query_path = write_jpeg(tmp_path / "query.jpg", query, quality=92)
    original_path = write_jpeg(tmp_path / "original.jpg", astronaut, quality=92)
    app = typer.Typer()
    register(app)
    app.command(name="noop")(lambda: None)
    outputs = {name: tmp_path / f"{name}.png" for name in ("mask", "heatmap", "overlay")}
    options = [item for name, path in outputs.items() for item in (f"--{name}", str(path))]
    result = CliRunner().invoke(app, ["compare", str(query_path), str(original_path), "--json", *options])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output.strip().splitlines()[-1])
    assert set(document) >= JSON_KEYS and document["verdict"] == "manipulated"
    mask = cv2.imread(str(outputs["mask"]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == query.shape[:2] and mask.max() == 255
    assert cv2.imread(str(outputs["heatmap"]), cv2.IMREAD_UNCHANGED).shape == query.shape[:2]
    assert cv2.imread(str(outputs["overlay"])).shape[1] > 2 * query.shape[1]
