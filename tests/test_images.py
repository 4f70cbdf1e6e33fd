"""Image loading: formats, orientation, modes, and a typed error for every kind of bad input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgprov.errors import EmptyImage, ImageNotFound, ImageTooLarge, NotAnImage, TruncatedImage
from imgprov.images import load_image
from tests.support import photo


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"])
def test_every_format_decodes_to_rgb(fmt):
    rgb = photo("coffee.png")
    loaded = load_image(_encode(Image.fromarray(rgb), fmt))
    assert loaded.pixels.shape == rgb.shape and loaded.pixels.dtype == np.uint8
    assert loaded.format == fmt
    if fmt in ("PNG", "TIFF", "BMP"):
        assert np.array_equal(loaded.pixels, rgb)


def test_heic_decodes_when_pillow_heif_is_installed():
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    rgb = photo("chelsea.png")
    loaded = load_image(_encode(Image.fromarray(rgb), "HEIF", quality=90))
    assert loaded.pixels.shape == rgb.shape
    assert np.abs(loaded.pixels.astype(int) - rgb).mean() < 6


def test_exif_orientation_is_applied():
    rgb = photo("rocket.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90 degrees clockwise
    loaded = load_image(_encode(Image.fromarray(rgb), "JPEG", exif=exif, quality=95))
    assert loaded.pixels.shape == (rgb.shape[1], rgb.shape[0], 3)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(loaded.pixels.astype(int) - expected).mean() < 4


def test_first_gif_frame_is_used():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    pixels = load_image(buffer.getvalue()).pixels
    assert tuple(pixels[4, 4]) == (255, 0, 0)


def test_alpha_is_composited_over_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255
    pixels = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG")).pixels
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    assert tuple(pixels[3, 3]) == (255, 255, 255)


def test_sixteen_bit_and_cmyk_and_palette_are_converted():
    gray16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    pixels = load_image(_encode(Image.fromarray(gray16), "PNG")).pixels
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 8, 3)
    assert pixels[7, 7, 0] == round(63000 / 257)
    cmyk = Image.fromarray(photo("chelsea.png")).convert("CMYK")
    assert load_image(_encode(cmyk, "JPEG")).pixels.shape == (300, 451, 3)
    palette = Image.fromarray(photo("chelsea.png")).convert("P")
    assert load_image(_encode(palette, "PNG")).pixels.shape == (300, 451, 3)


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(ImageNotFound):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageNotFound):
        load_image(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(EmptyImage):
        load_image(path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    with pytest.raises(NotAnImage):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    data = _encode(Image.fromarray(photo("astronaut.png")), "JPEG", quality=90)
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(TruncatedImage):
        load_image(path)


def huge_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels, with a few compressed rows of data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"".join(b"\x00" + bytes(width) for _ in range(8)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(30000, 30000), (12000, 12000)])
def test_decompression_bomb_is_refused_before_decoding(tmp_path, size):
    path = tmp_path / "huge.png"
    path.write_bytes(huge_png(*size))
    with pytest.raises(ImageTooLarge, match="megapixels"):
        load_image(path)


def test_byte_limit(tmp_path):
    path = Path(tmp_path) / "big.png"
    path.write_bytes(_encode(Image.fromarray(photo("coffee.png")), "PNG"))
    with pytest.raises(ImageTooLarge):
        load_image(path, max_bytes=1000)


def test_sha256_identifies_the_bytes():
    data = _encode(Image.fromarray(photo("coffee.png")), "PNG")
    assert load_image(data).sha256 == load_image(data).sha256
    assert load_image(data).size_bytes == len(data)
