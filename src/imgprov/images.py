"""Image loading: every supported format to one RGB uint8 array, or a typed error.

Formats: JPEG, PNG, WebP, TIFF, BMP, GIF (first frame), and HEIC/HEIF/AVIF where pillow-heif is
installed. EXIF orientation is applied, so pixel coordinates everywhere in imgprov refer to the
image as a viewer shows it. CMYK, 16-bit, float, palette and alpha images are converted; alpha is
composited over white, which is what a browser or a re-encoding platform shows.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgprov.errors import EmptyImage, ImageNotFound, ImageTooLarge, NotAnImage, TruncatedImage

DEFAULT_MAX_PIXELS = 1 << 27
"""About 134 megapixels: above any camera in common use, far below a decompression bomb."""

DEFAULT_MAX_BYTES = 256 << 20

SUPPORTED_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif", ".avif"}
)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image and the identity of the bytes it came from.

    pixels: (H, W, 3) uint8, RGB, EXIF orientation applied.
    """

    pixels: np.ndarray
    sha256: str
    size_bytes: int
    format: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def load_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedImage:
    """Decode a file (or its bytes) to RGB; raise an `ImageError` subclass on any failure."""
    data = source if isinstance(source, bytes) else _read_file(Path(source), max_bytes)
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not data:
        raise EmptyImage(f"{name}: empty file (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{name}: {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    pixels, fmt = decode_rgb(data, name=name, max_pixels=max_pixels)
    return LoadedImage(
        pixels=pixels, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), format=fmt
    )


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def decode_rgb(data: bytes, *, name: str, max_pixels: int) -> tuple[np.ndarray, str]:
    """Decode image bytes to `(H, W, 3) uint8` RGB and the format name (e.g. "JPEG")."""
    _register_heif_opener()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            _check_pixel_count(image.size, name, max_pixels)
            image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb_array(image), fmt
    except UnidentifiedImageError:
        raise NotAnImage(f"{name}: not a supported image (JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC)") from None
    except Image.DecompressionBombError as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)) / 1e6:.0f} megapixels" if pixels else "the image"
        raise ImageTooLarge(
            f"{name}: {size} exceeds the limit of {max_pixels / 1e6:.0f} megapixels"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:
        raise TruncatedImage(f"{name}: truncated or corrupt image data ({_short(exc)})") from None


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to `(H, W, 3) uint8` RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _gray_to_rgb(_rescale_to_uint8(np.asarray(image, dtype=np.float64)))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def _read_file(path: Path, max_bytes: int) -> bytes:
    if not path.exists():
        raise ImageNotFound(f"{path}: no such file")
    if not path.is_file():
        raise ImageNotFound(f"{path}: not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageTooLarge(f"{path}: {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageNotFound(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_pixel_count(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise TruncatedImage(f"{name}: invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: {width}x{height} = {width * height / 1e6:.0f} megapixels exceeds the limit of "
            f"{max_pixels / 1e6:.0f} megapixels"
        )


def _rescale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map 16-bit, 32-bit or float samples to 8 bits the way a viewer shows them."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(values.shape[:2], dtype=np.uint8)
    low, high = float(finite.min()), float(finite.max())
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    if low >= 0 and high <= 1.0:
        scaled = values * 255.0
    elif low >= 0 and high <= 255:
        scaled = values
    elif low >= 0 and high <= 65535:
        scaled = values / 257.0
    else:
        scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


@cache
def _register_heif_opener() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True
