"""Compare on benign copies made unlike the calibration's: clipped highlights, rotation fill, coloured
pads; an edit next to a pad is still found; regions explain themselves; a cold compare stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from benchmarks.metrics import mask_iou
from imgprov.compare.calibration import packaged_calibration
from imgprov.compare.comparison import compare_images, run_alignment, working_heatmap
from imgprov.compare.conf import compare_preset
from imgprov.compare.difference import clipped_pixels
from imgprov.compare.evidence import EVIDENCE_NAMES
from tests.support import jpeg, photo, write_jpeg

PAD_COLOUR = (154, 27, 118)


@pytest.fixture(scope="module")
def conf():
    return compare_preset()


def brightened(rgb: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """Contrast x gain about mid-grey plus offset, clipped to [0, 255] as an editor's sliders do."""
    return np.clip((rgb.astype(np.float32) - 128.0) * gain + 128.0 + offset, 0, 255).astype(np.uint8)


def rotated_with_fill(rgb: np.ndarray, degrees: float, fill: tuple[int, int, int]) -> np.ndarray:
    """Rotated on a canvas grown to hold the whole picture, the corners filled with `fill`."""
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    cosine, sine = abs(matrix[0, 0]), abs(matrix[0, 1])
    size = (round(width * cosine + height * sine), round(width * sine + height * cosine))
    matrix[0, 2] += (size[0] - width) / 2
    matrix[1, 2] += (size[1] - height) / 2
    return cv2.warpAffine(
        rgb, matrix, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=fill
    )


def test_clipped_highlights_copy_is_benign(conf):
    """Contrast x1.6: the motorcycle's chrome and the sky burn to white, their detail gone from the
    copy but not from the original; those pixels are not compared, and nothing is an edit."""
    original = photo("motorcycle_left.png")
    query = jpeg(brightened(original, 1.6, 20.0), 85)
    assert (query >= 250).all(axis=2).mean() > 0.03
    comparison = compare_images(query, original, conf)
    assert comparison.verdict == "benign" and not comparison.mask.any()
    burnt = cv2.erode((query >= 254).all(axis=2).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    detailed = cv2.GaussianBlur(original.mean(axis=2), (0, 0), 2.0) < 245
    assert not comparison.comparable[burnt & detailed].any()
    assert comparison.comparable.mean() > 0.5


def test_clipped_pixels_need_detail_lost_in_two_channels():
    """A saturated orange (red at 255, green and blue detailed) stays comparable; white does not;
    where the original was white already both agree and stay comparable."""
    original = np.full((8, 8, 3), 200.0, np.float32)
    original[:, 4:] = 255.0
    orange = np.array([255.0, 120.0, 40.0], np.float32)
    white = np.array([255.0, 255.0, 255.0], np.float32)
    for colour, expected in ((orange, False), (white, True)):
        query = np.broadcast_to(colour, original.shape).copy()
        matched = np.maximum(query - 5.0, 0.0)
        clipped = clipped_pixels(query, matched, original)
        assert clipped[:, :2].all() == expected
        if not expected:
            assert not clipped.any()
    assert not clipped_pixels(original.copy(), original.copy(), original)[:, 4:].any()


def test_rotated_copy_with_a_coloured_fill_is_benign_and_the_fill_is_not_comparable(conf):
    original = photo("chelsea.png")
    query = jpeg(rotated_with_fill(original[20:280, 30:420], 7.0, (40, 200, 90)), 70)
    comparison = compare_images(query, original, conf)
    assert comparison.verdict == "benign" and not comparison.mask.any()
    fill = (np.abs(query.astype(np.int16) - (40, 200, 90)).max(axis=2) < 30) & (query[:, :, 1] > 150)
    assert fill.mean() > 0.05
    # the tips of the fill's triangles, on the frame's outermost pixels, are JPEG-blended slivers
    assert not comparison.comparable[3:-3, 3:-3][fill[3:-3, 3:-3]].any()
    height, width = query.shape[:2]
    assert comparison.comparable[height // 4 : -height // 4, width // 4 : -width // 4].mean() > 0.95


def test_copy_with_a_narrow_coloured_pad_is_benign(conf):
    """7 pixels of magenta above a crop, JPEG 70 with subsampled chroma bleeding it into the picture:
    too narrow and too blended for the letterbox bands, flooded as a fill instead."""
    original = photo("motorcycle_left.png")
    small = cv2.resize(original[30:, 40:], None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    query = jpeg(cv2.copyMakeBorder(small, 7, 12, 60, 3, cv2.BORDER_CONSTANT, value=PAD_COLOUR), 70)
    comparison = compare_images(query, original, conf)
    assert comparison.verdict == "benign" and not comparison.mask.any()
    assert not comparison.comparable[:7].any() and not comparison.comparable[:, :60].any()
    assert comparison.comparable[30:-30, 80:-20].mean() > 0.95


def test_edit_next_to_a_pad_border_is_found(conf):
    """A piece of another photo pasted against the left edge, then a coloured pad added there: the
    pad and the band it bleeds into are not comparable, the paste beside them still is found."""
    original = photo("astronaut.png")
    donor = cv2.resize(photo("coffee.png"), (original.shape[1], original.shape[0]))
    changed = np.zeros(original.shape[:2], np.uint8)
    cv2.ellipse(changed, (60, 300), (55, 80), 0, 0, 360, 1, -1)
    edited = np.where(changed[:, :, None] > 0, donor, original)
    pad = 48
    query = jpeg(cv2.copyMakeBorder(edited, 0, 0, pad, 0, cv2.BORDER_CONSTANT, value=(230, 60, 30)), 85)
    truth = np.pad(changed > 0, ((0, 0), (pad, 0)))
    comparison = compare_images(query, original, conf)
    assert comparison.verdict == "manipulated"
    assert mask_iou(comparison.mask, truth) >= 0.7
    x0, _, _, _ = comparison.regions[0].box
    assert pad <= x0 <= pad + 20
    assert not comparison.comparable[:, :pad].any()


def test_regions_carry_their_evidence(conf):
    original = photo("astronaut.png")
    donor = cv2.resize(photo("coffee.png"), (original.shape[1], original.shape[0]))
    changed = np.zeros(original.shape[:2], np.uint8)
    cv2.ellipse(changed, (330, 170), (70, 50), 20, 0, 360, 1, -1)
    query = np.where(changed[:, :, None] > 0, donor, original)
    document = json.loads(json.dumps(compare_images(query, original, conf).to_json()))
    region = document["regions"][0]
    assert {"box", "score", "area"} <= set(region)
    assert set(region["evidence"]) == set(EVIDENCE_NAMES)
    assert region["evidence"]["ring_contrast"] > 0.2 and region["evidence"]["deep_contrast"] > 0.1
    assert region["evidence"]["border_share"] < 0.2
    assert region["strongest"] in ("residual", "chroma", "structure", "detail_loss", "detail_gain", "deep")


def test_clipped_pixels_leave_the_difference_channels(conf):
    """The maps' comparable pixels are the pair's without the clipped ones, and every channel is 0
    there (no statistics are taken over them)."""
    original = photo("motorcycle_left.png")
    query = brightened(original, 1.6, 20.0)
    pair = run_alignment(query, original, conf).pair
    _, maps = working_heatmap(pair, conf, packaged_calibration())
    removed = pair.comparable & ~maps.comparable
    assert removed.mean() > 0.02
    assert not (maps.comparable & ~pair.comparable).any()
    assert np.all(maps.channels[removed] == 0)


def test_cold_compare_imports_neither_onnx_nor_the_rest_of_the_cli():
    code = (
        "import sys; import imgprov.cli.compare, imgprov.compare.comparison; "
        "print(sorted(m for m in ('onnx', 'imgprov.storage', 'imgprov.search', 'faiss') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_imgprov_compare_runs_without_the_full_app(tmp_path):
    original = photo("chelsea.png")
    query_path = write_jpeg(tmp_path / "query.jpg", original[10:290, 20:430], quality=85)
    original_path = write_jpeg(tmp_path / "original.jpg", original, quality=95)
    code = (
        "import sys; from imgprov.cli import main; "
        f"sys.argv = ['imgprov', 'compare', {str(query_path)!r}, {str(original_path)!r}, '--json']; "
        "main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout.strip().splitlines()[-1])
    assert document["verdict"] == "benign"
    missing = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from imgprov.cli import main; "
            "sys.argv = ['imgprov', 'compare', 'nope.jpg', 'nope.jpg']; main()",
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and missing.stderr.startswith("imgprov: error:")
