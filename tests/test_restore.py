"""Photometric restoration of degraded queries (imgprov.extract.restore) and its use by search."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from imgprov import presets
from imgprov.extract.restore import impulse_fraction, luminance_range, restore_photometry
from imgprov.search.pipeline import search
from tests.support import jpeg, photo


def salt_and_pepper(rgb: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """rgb with `fraction` of its pixels set to black or white, half each."""
    noisy = rgb.copy()
    draw = np.random.default_rng(seed).random(rgb.shape[:2])
    noisy[draw < fraction / 2] = 0
    noisy[draw > 1 - fraction / 2] = 255
    return noisy


def faded(rgb: np.ndarray, contrast: float = 0.3) -> np.ndarray:
    """rgb with its contrast reduced about mid-grey."""
    return (rgb.astype(np.float32) * contrast + 128 * (1 - contrast)).astype(np.uint8)


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"])
def test_clean_photos_are_left_alone(name):
    assert restore_photometry(jpeg(photo(name), 75)) is None


def test_impulse_noise_is_filtered_out():
    noisy = salt_and_pepper(photo("coffee.png"), 0.1)
    restored = restore_photometry(noisy)
    assert restored is not None and restored.steps == ("median",)
    assert restored.pixels.shape == noisy.shape and restored.pixels.dtype == np.uint8
    gray = restored.pixels.mean(axis=2).astype(np.uint8)
    assert impulse_fraction(gray) < 0.1 * impulse_fraction(noisy.mean(axis=2).astype(np.uint8))


def test_low_contrast_is_stretched():
    low = faded(photo("chelsea.png"))
    restored = restore_photometry(low)
    assert restored is not None and restored.steps == ("stretch",)
    assert luminance_range(low.mean(axis=2).astype(np.uint8)) < 80
    assert luminance_range(restored.pixels.mean(axis=2).astype(np.uint8)) > 200


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png"])
def test_search_finds_the_original_of_a_noisy_faded_copy(photo_collection, name):
    query = salt_and_pepper(faded(photo(name), 0.3), 0.1, seed=3)
    plain = dataclasses.replace(presets.search(), restore_degraded=False)
    restoring = presets.search()
    assert restoring.restore_degraded
    unrestored = search(photo_collection, query, plain, stage="local")
    restored = search(photo_collection, query, restoring, stage="local")
    assert restored.matches and Path(restored.matches[0].path).name == name
    assert restored.matches[0].inliers > 5 * max((m.inliers for m in unrestored.matches), default=1)
