"""Pictures for the web page, as data URLs in the JSON (the server keeps no per-request state):
the query as analysed, the heatmap as a transparent layer, the aligned original, the vote map,
and the changed regions' outlines as polygons. Everything is in the query's frame, scaled down to
at most `PICTURE_SIDE` pixels on the long side."""

from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from imgprov.compare import Comparison
from imgprov.errors import ImageError
from imgprov.images import decoded_formats, open_regular_file, to_rgb_array
from imgprov.pictures.compare import aligned_original
from imgprov.pictures.raster import false_colour, jpeg_bytes, png_bytes
from imgprov.pictures.search import draw_vote_map
from imgprov.results import SearchResult
from imgprov.service.errors import OriginalUnavailable

PICTURE_SIDE = 1024
HEATMAP_SIDE = 512
"""Compare computes its heatmap at 512 pixels; the browser scales the layer onto the query."""
HEAT_LEVELS = 32
"""Heat is shown in 32 steps: the PNG shrinks about threefold and no one can read finer steps."""
HEAT_ALPHA_GAIN = 1.5
"""Heat 0.67 and above is opaque; the page's opacity slider scales the whole layer."""
OUTLINE_TOLERANCE = 1.0
"""Polygon simplification, in pixels of the scaled-down mask."""
MAX_OUTLINE_POINTS = 4000
THUMBNAIL_SIDE = 320
THUMBNAIL_CACHE = 256


def query_picture(pixels: np.ndarray) -> str:
    """The query as the server decoded it (EXIF orientation applied), as a JPEG data URL."""
    return jpeg_data_url(scaled_down(pixels))


def vote_map_picture(pixels: np.ndarray, result: SearchResult) -> str:
    """The OS2OS vote density over the query with the matched regions, as a JPEG data URL."""
    return jpeg_data_url(scaled_down(draw_vote_map(pixels, result)))


def heatmap_picture(comparison: Comparison) -> str:
    """The heatmap in false colour with transparency growing with heat, as a PNG data URL."""
    heatmap = np.round(scaled_down(comparison.heatmap, HEATMAP_SIDE) * HEAT_LEVELS) / HEAT_LEVELS
    alpha = np.clip(heatmap * HEAT_ALPHA_GAIN, 0.0, 1.0)
    rgba = np.dstack([false_colour(heatmap), np.rint(alpha * 255).astype(np.uint8)])
    return png_data_url(rgba)


def aligned_original_picture(original: np.ndarray, comparison: Comparison) -> str:
    """The original resampled onto the query's pixels, as a JPEG data URL."""
    return jpeg_data_url(scaled_down(aligned_original(original, comparison, comparison.heatmap.shape)))


def mask_outline(mask: np.ndarray) -> list[list[list[float]]]:
    """Outer contours of the changed-pixel mask (H, W) bool as polygons of [x, y] query pixels."""
    if not mask.any():
        return []
    small = scaled_down(mask.astype(np.uint8) * 255)
    scale = mask.shape[1] / small.shape[1]
    contours, _ = cv2.findContours((small > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    budget = MAX_OUTLINE_POINTS
    for contour in sorted(contours, key=cv2.contourArea, reverse=True):
        points = cv2.approxPolyDP(contour, OUTLINE_TOLERANCE, closed=True).reshape(-1, 2)
        if len(points) < 3 or len(points) > budget:
            continue
        budget -= len(points)
        polygons.append([[round(float(x) * scale, 1), round(float(y) * scale, 1)] for x, y in points])
    return polygons


@lru_cache(maxsize=THUMBNAIL_CACHE)
def thumbnail_jpeg(path: str, sha256: str, side: int = THUMBNAIL_SIDE) -> bytes:
    """JPEG bytes of an indexed original at most `side` pixels on its long side.

    The file's sha256 is part of the cache key, so a replaced file is never served stale. JPEGs are
    decoded at reduced size (Pillow's draft mode), which keeps large originals cheap.
    """
    try:
        with open_regular_file(Path(path)) as handle, Image.open(handle, formats=decoded_formats()) as image:
            image.draft("RGB", (side, side))
            image = ImageOps.exif_transpose(image)
            image.thumbnail((side, side), Image.Resampling.LANCZOS)
            return jpeg_bytes(to_rgb_array(image))
    except (ImageError, OSError, ValueError, Image.DecompressionBombError):
        raise OriginalUnavailable("the original's file cannot be read on the server") from None


def scaled_down(picture: np.ndarray, side: int = PICTURE_SIDE) -> np.ndarray:
    """`picture` (H, W[, C]) resized so that its long side is at most `side` pixels."""
    height, width = picture.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return picture
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


def jpeg_data_url(rgb: np.ndarray) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(rgb)).decode("ascii")


def png_data_url(rgba: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgba)).decode("ascii")
