"""Pictures of a comparison: the heatmap and mask outline over the query beside the aligned original,
and the raw heatmap and mask as PNG files in the query's frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from imgprov.compare.comparison import Comparison
from imgprov.pictures.raster import false_colour, write_png

OUTLINE_COLOUR = (255, 255, 255)
BOX_COLOUR = (255, 230, 0)
NOT_COMPARABLE_DIMMING = 0.35
CAPTION_MIN_SCALE = 0.5
CAPTION_WIDTH_PER_SCALE = 1600
"""Overlay pixels of width per unit of caption font scale (a wide overlay gets a larger caption)."""
CAPTION_MARGIN = 6


def draw_overlay(query: np.ndarray, original: np.ndarray, comparison: Comparison) -> np.ndarray:
    """(H, 2W + gap, 3) uint8 RGB: left, the query with the heatmap in false colour, the mask outlined
    and the regions boxed; right, the original aligned onto the query's frame (black where the
    images share nothing). A caption line states the verdict and its probabilities.

    query: (H, W, 3) uint8; original: (H', W', 3) uint8, the images `comparison` was made from.
    """
    left = _heat_over_query(query, comparison)
    right = aligned_original(original, comparison, query.shape[:2])
    gap = np.full((query.shape[0], max(4, query.shape[1] // 100), 3), 255, np.uint8)
    picture = np.concatenate([left, gap, right], axis=1)
    return _with_caption(picture, _caption(comparison))


def aligned_original(original: np.ndarray, comparison: Comparison, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8: the original resampled on the query's pixels through the comparison's transform,
    dimmed where the query has no counterpart; black when there is no transform."""
    height, width = shape
    if comparison.transform is None:
        return np.zeros((height, width, 3), np.uint8)
    warped = cv2.warpPerspective(
        original,
        comparison.transform,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    dimming = np.where(comparison.comparable, 1.0, NOT_COMPARABLE_DIMMING)[:, :, None]
    return (warped * dimming).astype(np.uint8)


def _heat_over_query(query: np.ndarray, comparison: Comparison) -> np.ndarray:
    heat = false_colour(comparison.heatmap).astype(np.float32)
    alpha = (0.2 + 0.6 * np.clip(comparison.heatmap, 0.0, 1.0))[:, :, None]
    base = query.astype(np.float32) * np.where(comparison.comparable, 1.0, NOT_COMPARABLE_DIMMING)[:, :, None]
    picture = np.clip(base * (1 - alpha) + heat * alpha, 0, 255).astype(np.uint8)
    thickness = max(1, round(max(query.shape[:2]) / 400))
    contours, _ = cv2.findContours(
        comparison.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(picture, contours, -1, OUTLINE_COLOUR, thickness, cv2.LINE_AA)
    for region in comparison.regions:
        x0, y0, x1, y1 = region.box
        cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), BOX_COLOUR, thickness)
        cv2.putText(
            picture,
            f"{region.score:.2f}",
            (x0 + 2, max(12, y0 - 3)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            BOX_COLOUR,
            1,
            cv2.LINE_AA,
        )
    return picture


def _caption(comparison: Comparison) -> str:
    probabilities = ", ".join(f"{name} {value:.2f}" for name, value in comparison.probabilities.items())
    return f"{comparison.verdict} ({probabilities}); {len(comparison.regions)} changed regions"


def _with_caption(picture: np.ndarray, text: str) -> np.ndarray:
    """The picture under a white band holding `text`, in a size that grows with the picture and
    wrapped at its spaces into as many lines as its width needs."""
    width = picture.shape[1]
    scale = max(CAPTION_MIN_SCALE, width / CAPTION_WIDTH_PER_SCALE)
    thickness = max(1, round(scale))
    lines = _wrapped(text, width - 2 * CAPTION_MARGIN, scale, thickness)
    (_, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    line_height = text_height + baseline + CAPTION_MARGIN
    band = np.full((line_height * len(lines) + CAPTION_MARGIN, width, 3), 255, np.uint8)
    for index, line in enumerate(lines):
        origin = (CAPTION_MARGIN, CAPTION_MARGIN + text_height + index * line_height)
        cv2.putText(band, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return np.concatenate([band, picture], axis=0)


def _wrapped(text: str, width: int, scale: float, thickness: int) -> list[str]:
    """text cut at spaces into lines at most `width` pixels wide (a single word wider stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        fits = cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] <= width
        if lines and fits:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def write_overlay(path: Path, query: np.ndarray, original: np.ndarray, comparison: Comparison) -> None:
    write_png(path, draw_overlay(query, original, comparison))


def write_heatmap(path: Path, comparison: Comparison) -> None:
    """The raw heatmap as an 8-bit gray PNG in the query's frame (0 = unchanged, 255 = changed)."""
    write_png(path, np.rint(np.clip(comparison.heatmap, 0.0, 1.0) * 255).astype(np.uint8))


def write_mask(path: Path, comparison: Comparison) -> None:
    """The mask as an 8-bit PNG in the query's frame (255 = changed)."""
    write_png(path, comparison.mask.astype(np.uint8) * 255)
