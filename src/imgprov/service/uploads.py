"""Uploaded images: read in chunks up to a limit, identified by their bytes, decoded with limits.

The client's file name and Content-Type are never trusted: the first bytes must be one of the
formats imgprov reads, and the decoder must agree. This also keeps Pillow's other decoders (EPS,
PSD, ICO...) away from anything a client sends.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from imgprov.errors import EmptyImage, ImageTooLarge, NotAnImage
from imgprov.images import LoadedImage, decode_rgb

READ_CHUNK_BYTES = 1 << 20
MAX_NAME_LENGTH = 120
SUPPORTED = "JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC, AVIF"

HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)

DECODER_FORMATS: dict[str, frozenset[str]] = {
    "jpeg": frozenset({"JPEG", "MPO"}),
    "png": frozenset({"PNG"}),
    "gif": frozenset({"GIF"}),
    "webp": frozenset({"WEBP"}),
    "bmp": frozenset({"BMP", "DIB"}),
    "tiff": frozenset({"TIFF"}),
    "heif": frozenset({"HEIF", "AVIF"}),
}
"""The Pillow formats each sniffed kind may decode as."""

FILE_SUFFIXES = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "DIB": "bmp",
    "TIFF": "tif",
    "HEIF": "heic",
    "AVIF": "avif",
}


class UploadedFile(Protocol):
    """What reading an upload needs of FastAPI's `UploadFile`: its client-given name and `read`."""

    filename: str | None

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class Upload:
    """An uploaded file's bytes and the name to show for it (never used as a path)."""

    data: bytes
    name: str


async def read_upload(upload: UploadedFile, max_bytes: int) -> Upload:
    """Read an uploaded file chunk by chunk; `ImageTooLarge` as soon as it passes `max_bytes`."""
    chunks: list[bytes] = []
    received = 0
    while chunk := await upload.read(READ_CHUNK_BYTES):
        received += len(chunk)
        if received > max_bytes:
            raise ImageTooLarge(f"the upload exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    if received == 0:
        raise EmptyImage("the upload is empty (0 bytes)")
    return Upload(b"".join(chunks), display_name(upload.filename))


def decode_upload(upload: Upload, *, max_pixels: int, max_bytes: int) -> LoadedImage:
    """Decode an upload whose bytes are a supported image; typed `ImageError`s otherwise."""
    kind = sniff_image(upload.data)
    if kind is None:
        raise NotAnImage(f"{upload.name}: not a supported image ({SUPPORTED})")
    if len(upload.data) > max_bytes:
        raise ImageTooLarge(f"{upload.name}: the upload exceeds the limit of {max_bytes} bytes")
    pixels, pillow_format = decode_rgb(upload.data, name=upload.name, max_pixels=max_pixels)
    if pillow_format not in DECODER_FORMATS[kind]:
        raise NotAnImage(f"{upload.name}: not a supported image ({SUPPORTED})")
    return LoadedImage(
        pixels=pixels,
        sha256=hashlib.sha256(upload.data).hexdigest(),
        size_bytes=len(upload.data),
        format=pillow_format,
    )


def sniff_image(data: bytes) -> str | None:
    """The image format the leading bytes announce ("jpeg", "png"...), None for anything else."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "heif"
    return None


def file_suffix(pillow_format: str) -> str:
    """The file name suffix an image of this (decoded) format is stored with."""
    return FILE_SUFFIXES[pillow_format]


def display_name(filename: str | None) -> str:
    """The client's file name reduced to a short, printable base name, for display only."""
    base = re.split(r"[\\/]", filename or "")[-1]
    printable = "".join(character for character in base if character.isprintable())
    return printable[:MAX_NAME_LENGTH] or "upload"
