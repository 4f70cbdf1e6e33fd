"""Image loading: every supported format to one RGB uint8 array, or a typed error.

Formats: JPEG, PNG, WebP, TIFF, BMP, GIF (first frame), and HEIC/HEIF/AVIF where pillow-heif is
installed. EXIF orientation is applied, so pixel coordinates everywhere in imgprov refer to the
image as a viewer shows it. CMYK, 16-bit, float, palette and alpha images are converted; alpha is
composited over white, which is what a browser or a re-encoding platform shows.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from imgprov.errors import EmptyImage, ImageNotFound, ImageTooLarge, NotAnImage, TruncatedImage

DEFAULT_MAX_PIXELS = 1 << 27
"""About 134 megapixels: above any camera in common use, far below a decompression bomb."""

DEFAULT_MAX_BYTES = 256 << 20

MAX_JPEG_SCANS = 100
"""Progressive JPEGs take one pass over the whole image per scan, and an empty scan costs a few bytes:
a 60 KB file of 2,000 scans keeps a decoder busy for minutes. Encoders write at most a few dozen."""

DECODED_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "DIB", "GIF", "HEIF", "AVIF")
"""The Pillow decoders imgprov lets see any bytes; Pillow's others (EPS, which runs Ghostscript, PSD,
ICO, FITS...) are never tried, whatever a file is named."""

SCAN_MARKER = b"\xff\xda"

NEAR_CONSTANT_LEVELS = 2
"""An image whose shrunk copy spans at most this many levels in every channel shows nothing to
search or compare (blank, or flat up to encoder noise)."""
NEAR_CONSTANT_SIDE = 64
"""Longest side of the area-averaged copy `is_near_constant` looks at: detail smaller than about
1/64 of the image's side, or fainter, does not count as content."""

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


def is_near_constant(pixels: np.ndarray) -> bool:
    """Whether an (H, W, 3) or (H, W) uint8 image is blank or flat: its copy area-averaged to at most
    `NEAR_CONSTANT_SIDE` pixels spans at most `NEAR_CONSTANT_LEVELS` levels in every channel. Costs one
    pass over the pixels, whatever the image shows."""
    if pixels.size == 0:
        return True
    height, width = pixels.shape[:2]
    scale = max(1.0, max(height, width) / NEAR_CONSTANT_SIDE)
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA) if scale > 1.0 else pixels
    channels = small.reshape(-1, small.shape[2] if small.ndim == 3 else 1).astype(np.int16)
    return int((channels.max(axis=0) - channels.min(axis=0)).max()) <= NEAR_CONSTANT_LEVELS


def load_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    name: str | None = None,
) -> LoadedImage:
    """Decode a file (or its bytes) to RGB; raise an `ImageError` subclass on any failure.

    name: what error messages call the image (default: the path, or "<bytes>").
    """
    data = source if isinstance(source, bytes) else read_image_bytes(Path(source), max_bytes)
    name = name or ("<bytes>" if isinstance(source, bytes) else str(source))
    if not data:
        raise EmptyImage(f"{name}: empty file (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{name}: {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    pixels, fmt = decode_rgb(data, name=name, max_pixels=max_pixels)
    return LoadedImage(
        pixels=pixels, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), format=fmt
    )


def file_sha256(path: Path, chunk: int = 1 << 20, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Hex sha256 of a regular file's bytes, read in chunks (see `open_regular_file`)."""
    digest = hashlib.sha256()
    with open_regular_file(path, max_bytes) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def decode_rgb(data: bytes, *, name: str, max_pixels: int) -> tuple[np.ndarray, str]:
    """Decode image bytes to `(H, W, 3) uint8` RGB and the format name (e.g. "JPEG")."""
    _register_heif_opener()
    _check_jpeg_scans(data, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=decoded_formats())
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
    except RuntimeError as exc:
        # libheif's own limits (pillow-heif reports them as RuntimeError), or its decoding errors.
        if "security limit" in str(exc).lower():
            raise ImageTooLarge(f"{name}: exceeds the HEIF decoder's size limits") from None
        raise TruncatedImage(f"{name}: truncated or corrupt image data ({_short(exc)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error) as exc:
        raise TruncatedImage(f"{name}: truncated or corrupt image data ({_short(exc)})") from None


HEADER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, RuntimeError)
"""What Pillow and its plugins raise on bytes whose header they cannot read."""


def declared_pixels(data: bytes) -> int:
    """The pixel count an image's header declares, read without decoding it; 0 when the bytes are no
    image imgprov reads (the decoder then says why), `DEFAULT_MAX_PIXELS` + 1 beyond Pillow's own
    bomb limit."""
    _register_heif_opener()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=decoded_formats()) as image:
                return image.width * image.height
    except Image.DecompressionBombError:
        return DEFAULT_MAX_PIXELS + 1
    except (*HEADER_ERRORS, struct.error):
        return 0


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to `(H, W, 3) uint8` RGB (an RGB image without a converted copy: a large
    image's decoding then peaks at about twice its pixels' size, not three times)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _gray_to_rgb(_rescale_to_uint8(np.asarray(image, dtype=np.float64)))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def read_image_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A file's bytes, or `ImageNotFound` / `ImageTooLarge` with a one-line reason."""
    with open_regular_file(path, max_bytes) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ImageNotFound(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{path}: more than the limit of {max_bytes} bytes")
    return data


def open_regular_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> BinaryIO:
    """Open a regular file for reading; `ImageNotFound` for anything else, `ImageTooLarge` when large.

    The file is opened without blocking and checked once open, so a FIFO, a device or a file
    swapped for one after a check is refused instead of hanging or streaming forever.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageNotFound(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageNotFound(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        details = os.fstat(descriptor)
        if not stat.S_ISREG(details.st_mode):
            raise ImageNotFound(f"{path}: not a regular file")
        if details.st_size > max_bytes:
            raise ImageTooLarge(f"{path}: {details.st_size} bytes exceeds the limit of {max_bytes} bytes")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _check_jpeg_scans(data: bytes, name: str) -> None:
    """Refuse a JPEG with more scans than any encoder writes (see `MAX_JPEG_SCANS`).

    Counting the scan marker anywhere in the file over-counts only markers inside metadata, such as
    an EXIF thumbnail's own few scans; entropy-coded data never contains it.
    """
    if not data.startswith(b"\xff\xd8"):
        return
    scans = data.count(SCAN_MARKER)
    if scans > MAX_JPEG_SCANS:
        raise ImageTooLarge(f"{name}: a JPEG of {scans} scans exceeds the limit of {MAX_JPEG_SCANS}")


@cache
def decoded_formats() -> tuple[str, ...]:
    """`DECODED_FORMATS` that this Pillow has decoders for (HEIF needs pillow-heif)."""
    _register_heif_opener()
    Image.init()
    return tuple(name for name in DECODED_FORMATS if name in Image.OPEN)


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
