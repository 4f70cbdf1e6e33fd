"""What every picture shares: the false-colour map, and the one PNG/JPEG encoder and file writer."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from imgprov.errors import ImgprovError

JPEG_QUALITY = 85


def false_colour(values: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB jet colours of (H, W) values in [0, 1] (clipped): blue low, red high."""
    levels = np.rint(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels, cv2.COLORMAP_JET)[:, :, ::-1]


def write_png(path: Path, picture: np.ndarray) -> None:
    """Write (H, W) gray or (H, W, 3) RGB uint8 as a PNG; a one-line error if that fails."""
    ok = False
    try:
        ok = cv2.imwrite(str(path), _opencv_order(picture))
    except cv2.error:
        ok = False
    if not ok:
        raise ImgprovError(f"{path}: cannot write image (does the folder exist and is it writable?)")


def png_bytes(picture: np.ndarray) -> bytes:
    """(H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA uint8 encoded as PNG."""
    return _encoded(".png", picture, [])


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB encoded as JPEG at `JPEG_QUALITY`."""
    return _encoded(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


def _encoded(suffix: str, picture: np.ndarray, params: list[int]) -> bytes:
    ok, encoded = cv2.imencode(suffix, _opencv_order(picture), params)
    if not ok:
        raise ImgprovError(f"cannot encode a {suffix.removeprefix('.').upper()} picture")
    return encoded.tobytes()


def _opencv_order(picture: np.ndarray) -> np.ndarray:
    """The channels in OpenCV's order (BGR, BGRA), contiguous; gray as it is."""
    if picture.ndim == 2:
        return np.ascontiguousarray(picture)
    order = [2, 1, 0, 3][: picture.shape[2]]
    return np.ascontiguousarray(picture[:, :, order])
