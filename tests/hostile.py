"""Hostile and broken image inputs: small valid seeds in every format, mutations of them, and the named
cases of issue 8 (decompression bombs, 1x1 and 30000x30000 images, huge EXIF, non-images, zero bytes).

Used by tests/test_fuzz.py (through hypothesis) and by `benchmarks.stress` (a longer seeded run).
Run as a module it tries every named case and `--random N` seeded mutations in this process, under
an address-space limit, and prints one JSON line: how many inputs, their outcomes, the slowest
decode and the peak memory.

    python -m tests.hostile [--random 2000] [--seed 1] [--max-pixels 4000000] [--memory-mib 2048]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import struct
import sys
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from imgprov.errors import ImageError
from imgprov.images import load_image

SEED_HEIGHT, SEED_WIDTH = 24, 32
HUGE_SIDE = 30000
FUZZ_MAX_PIXELS = 4_000_000
"""Pixel limit of the random campaigns: any mutated size above it must be refused before decoding,
and everything below decodes in well under a second."""
MUTATION_KINDS = ("truncate", "flip", "insert", "overwrite-int", "duplicate", "splice")
EXTREME_INTS = (
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
    b"\x00\x01\x00\x00",
    b"\x80\x00",
)


@dataclass(frozen=True)
class Mutation:
    """One change to a byte string: `kind` (see MUTATION_KINDS) at `position` (0..1 of its length)."""

    kind: str
    position: float
    payload: bytes = b""


@dataclass
class Campaign:
    """Outcomes of the inputs tried so far: typed error class name (or "decoded") -> count."""

    outcomes: Counter = field(default_factory=Counter)
    slowest_seconds: float = 0.0
    slowest_input: str = ""

    @property
    def tried(self) -> int:
        return sum(self.outcomes.values())

    def record(self, label: str, data: bytes, max_pixels: int) -> str:
        """Decode `data`; count its outcome. Anything but a decoded image or an `ImageError` raises."""
        started = time.perf_counter()
        outcome = decode_outcome(data, max_pixels)
        seconds = time.perf_counter() - started
        if seconds > self.slowest_seconds:
            self.slowest_seconds, self.slowest_input = seconds, label
        self.outcomes[outcome] += 1
        return outcome


def decode_outcome(data: bytes, max_pixels: int) -> str:
    """ "decoded" or the name of the `ImageError` subclass `load_image` raised; any other exception
    (an untyped error, a crash of the decoder's Python side) propagates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            loaded = load_image(data, max_pixels=max_pixels)
        except ImageError as exc:
            return type(exc).__name__
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.ndim == 3 and loaded.pixels.shape[2] == 3
    assert loaded.width * loaded.height <= max_pixels
    return "decoded"


def seed_pixels() -> np.ndarray:
    """(24, 32, 3) uint8: a gradient with noise, so every encoder has real work to do."""
    rng = np.random.default_rng(8)
    ramp = np.linspace(0, 255, SEED_WIDTH)[None, :, None] * np.ones((SEED_HEIGHT, 1, 3))
    return np.clip(ramp + rng.normal(0, 30, ramp.shape), 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def animation(fmt: str) -> bytes:
    frames = [Image.fromarray(seed_pixels()), Image.fromarray(255 - seed_pixels())]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:])


def orientation_exif(text_bytes: int = 0) -> Image.Exif:
    """EXIF that rotates the image, with an ImageDescription of `text_bytes` characters."""
    exif = Image.Exif()
    exif[0x0112] = 6
    if text_bytes:
        exif[0x010E] = "x" * text_bytes
    return exif


@cache
def seeds() -> dict[str, bytes]:
    """Small valid files in every format and flavour the loader handles, by name."""
    rgb = Image.fromarray(seed_pixels())
    found = {
        "jpeg": encode(rgb, "JPEG", quality=80),
        "jpeg-progressive": encode(rgb, "JPEG", progressive=True),
        "jpeg-exif": encode(rgb, "JPEG", exif=orientation_exif(200)),
        "jpeg-cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "png": encode(rgb, "PNG"),
        "png-palette": encode(rgb.convert("P"), "PNG"),
        "png-rgba": encode(rgb.convert("RGBA"), "PNG"),
        "png-16bit": encode(Image.fromarray(seed_pixels()[:, :, 0].astype(np.uint16) * 257), "PNG"),
        "png-exif": encode(rgb, "PNG", exif=orientation_exif()),
        "webp": encode(rgb, "WEBP"),
        "webp-lossless": encode(rgb, "WEBP", lossless=True),
        "webp-animated": animation("WEBP"),
        "gif": encode(rgb, "GIF"),
        "gif-animated": animation("GIF"),
        "tiff": encode(rgb, "TIFF"),
        "tiff-deflate": encode(rgb, "TIFF", compression="tiff_deflate"),
        "tiff-lzw": encode(rgb, "TIFF", compression="tiff_lzw"),
        "tiff-jpeg": encode(rgb, "TIFF", compression="jpeg"),
        "tiff-packbits": encode(rgb, "TIFF", compression="packbits"),
        "tiff-multipage": animation("TIFF"),
        "bmp": encode(rgb, "BMP"),
    }
    if heif_available():
        found["heic"] = encode(rgb, "HEIF", quality=80)
    return found


def heif_available() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    """Apply the mutations in turn."""
    changed = bytearray(data)
    for mutation in mutations:
        changed = MUTATORS[mutation.kind](changed, mutation)
    return bytes(changed)


def _at(data: bytearray, position: float) -> int:
    return min(len(data), int(position * len(data)))


def _truncate(data: bytearray, mutation: Mutation) -> bytearray:
    return data[: _at(data, mutation.position)]


def _flip(data: bytearray, mutation: Mutation) -> bytearray:
    start = _at(data, mutation.position)
    for offset, byte in enumerate(mutation.payload[:8] or b"\x01"):
        if start + offset < len(data):
            data[start + offset] ^= byte or 0x80
    return data


def _insert(data: bytearray, mutation: Mutation) -> bytearray:
    start = _at(data, mutation.position)
    return data[:start] + bytearray(mutation.payload) + data[start:]


def _overwrite_int(data: bytearray, mutation: Mutation) -> bytearray:
    """Write an extreme integer (sizes, offsets, counts are where parsers go wrong)."""
    value = EXTREME_INTS[sum(mutation.payload) % len(EXTREME_INTS)]
    start = _at(data, mutation.position)
    data[start : start + len(value)] = value
    return data


def _duplicate(data: bytearray, mutation: Mutation) -> bytearray:
    """Repeat a stretch of the file (chunks, segments, scans...) a few times."""
    start = _at(data, mutation.position)
    stretch = data[start : start + 16 + len(mutation.payload) * 8]
    return data[:start] + stretch * (2 + len(mutation.payload) % 6) + data[start:]


def _splice(data: bytearray, mutation: Mutation) -> bytearray:
    """Continue the file with the tail of another format's seed."""
    others = list(seeds().values())
    other = others[sum(mutation.payload) % len(others)]
    start = _at(data, mutation.position)
    return data[:start] + bytearray(other[start:])


MUTATORS: dict[str, Callable[[bytearray, Mutation], bytearray]] = {
    "truncate": _truncate,
    "flip": _flip,
    "insert": _insert,
    "overwrite-int": _overwrite_int,
    "duplicate": _duplicate,
    "splice": _splice,
}


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int, rows: int = 8) -> bytes:
    """A PNG header claiming width x height grey pixels, with `rows` rows of real data."""
    data = zlib.compress(b"".join(b"\x00" + bytes(width) for _ in range(rows)))
    return grey_png(width, height, data)


def png_zlib_bomb(side: int) -> bytes:
    """A complete PNG of side x side black pixels: a few hundred KB that inflate to side**2 bytes."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(side)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return grey_png(side, side, data)


def grey_png(width: int, height: int, compressed_rows: bytes) -> bytes:
    """A PNG file of 8-bit grey pixels around already compressed image data."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    data = png_chunk(b"IDAT", compressed_rows)
    return b"\x89PNG\r\n\x1a\n" + header + data + png_chunk(b"IEND", b"")


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame claim width x height pixels."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def tiff_claiming(width: int, height: int) -> bytes:
    """A little-endian TIFF whose one strip claims width x height 8-bit grey pixels."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 8 + 4),
        (278, 4, 1, height),
        (279, 4, 1, width * height),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00" + bytes(64)


def jpeg_claiming(width: int, height: int) -> bytes:
    """The small JPEG seed with its frame header (SOF) edited to claim width x height pixels."""
    data = bytearray(seeds()["jpeg"])
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """An extended WebP (VP8X) whose canvas claims width x height, around the small seed's frame."""
    frame = seeds()["webp"][12:]
    canvas = struct.pack("<I", width - 1)[:3] + struct.pack("<I", height - 1)[:3]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + canvas
    body = b"WEBP" + vp8x + frame
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bmp_claiming(width: int, height: int) -> bytes:
    """A 24-bit BMP header claiming width x height pixels, followed by a few bytes."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 14 + 40) + info + bytes(64)


def jpeg_with_many_scans(scans: int) -> bytes:
    """A progressive JPEG whose last scan is repeated: each costs a pass over the whole image."""
    data = seeds()["jpeg-progressive"]
    last = data.rindex(b"\xff\xda")
    final_scan = data[last:-2]
    return data[:-2] + final_scan * scans + b"\xff\xd9"


def jpeg_with_huge_exif() -> bytes:
    """The JPEG seed with a maximal (64 KB) EXIF segment whose IFD claims 65,535 entries."""
    ifd = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0xFFFF)
    ifd += struct.pack("<HHII", 0x010E, 2, 0x7FFFFFFF, 0x7FFFFFF0) * 5000
    segment = b"Exif\x00\x00" + ifd
    segment = segment[: 0xFFFF - 2]
    app1 = b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment
    data = seeds()["jpeg"]
    return data[:2] + app1 * 16 + data[2:]


def png_with_huge_exif(size: int = 8 << 20) -> bytes:
    """The PNG seed with an 8 MB eXIf chunk of garbage before its image data."""
    data = seeds()["png"]
    header_end = 8 + 25
    exif = png_chunk(b"eXIf", b"MM\x00*" + bytes(size))
    return data[:header_end] + exif + data[header_end:]


def tiff_with_ifd_loop() -> bytes:
    """The TIFF seed whose first IFD's next-IFD offset points back to itself."""
    data = bytearray(seeds()["tiff"])
    first = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[first : first + 2])[0]
    next_offset = first + 2 + count * 12
    data[next_offset : next_offset + 4] = struct.pack("<I", first)
    return bytes(data)


NON_IMAGES = {
    "zero-bytes": b"",
    "one-byte": b"\xff",
    "text": b"these are not pixels, whatever the file is called\n" * 20,
    "html": b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="30000" height="30000"/>',
    "pdf": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    "psd": b"8BPS\x00\x01" + bytes(6) + struct.pack(">HIIHH", 3, 30000, 30000, 8, 3) + bytes(64),
    "ico": b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x01\x00\x20\x00" + bytes(64),
    "zip": b"PK\x03\x04" + bytes(26) + b"image.jpg",
    "elf": b"\x7fELF\x02\x01\x01" + bytes(57),
    "jpeg-signature-only": b"\xff\xd8\xff",
    "png-signature-only": b"\x89PNG\r\n\x1a\n",
    "riff-signature-only": b"RIFF\x00\x00\x00\x00WEBP",
}


def one_pixel_images() -> dict[str, bytes]:
    pixel = Image.new("RGB", (1, 1), (200, 30, 90))
    formats = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "tiff": "TIFF", "bmp": "BMP"}
    return {f"1x1-{name}": encode(pixel, fmt) for name, fmt in formats.items()}


def huge_headers() -> dict[str, bytes]:
    """Headers claiming 30000 x 30000 pixels (900 megapixels) in every format, and WebP's maximum."""
    side = HUGE_SIDE
    return {
        "30000x30000-png": png_claiming(side, side),
        "30000x30000-gif": gif_claiming(side, side),
        "30000x30000-tiff": tiff_claiming(side, side),
        "30000x30000-jpeg": jpeg_claiming(side, side),
        "30000x30000-bmp": bmp_claiming(side, side),
        "16384x16384-webp": webp_claiming(16384, 16384),
        "65535x65535-gif": gif_claiming(65535, 65535),
        "4294967295x1-png": png_claiming(0xFFFFFFFF, 1, rows=0),
    }


def broken_seeds() -> dict[str, bytes]:
    """Every seed truncated to half, to its header only, and with its middle overwritten."""
    broken = {}
    for name, data in seeds().items():
        middle = len(data) // 2
        broken[f"truncated-half-{name}"] = data[:middle]
        broken[f"truncated-header-{name}"] = data[:40]
        broken[f"corrupted-{name}"] = data[:middle] + bytes(255 - byte for byte in data[middle : middle + 64])
    return broken


def named_cases() -> dict[str, bytes]:
    """Every named hostile case, by name (the bomb of real data is built here: about a second)."""
    return {
        **NON_IMAGES,
        **one_pixel_images(),
        **huge_headers(),
        **broken_seeds(),
        "png-zlib-bomb-12000x12000": png_zlib_bomb(12000),
        "jpeg-2000-scans": jpeg_with_many_scans(2000),
        "jpeg-huge-exif": jpeg_with_huge_exif(),
        "png-huge-exif": png_with_huge_exif(),
        "tiff-ifd-loop": tiff_with_ifd_loop(),
    }


def random_mutations(rng: random.Random) -> list[Mutation]:
    """One to four random mutations (the seeded counterpart of test_fuzz's hypothesis strategy)."""
    return [
        Mutation(
            kind=rng.choice(MUTATION_KINDS),
            position=rng.random(),
            payload=bytes(rng.randrange(256) for _ in range(rng.randint(0, 16))),
        )
        for _ in range(rng.randint(1, 4))
    ]


def run_campaign(random_inputs: int, seed: int, max_pixels: int) -> Campaign:
    """Every named case at the default limits, then `random_inputs` seeded mutations of the seeds."""
    campaign = Campaign()
    for name, data in named_cases().items():
        campaign.record(name, data, max_pixels=max_pixels)
    rng = random.Random(seed)
    names = sorted(seeds())
    for number in range(random_inputs):
        name = rng.choice(names)
        campaign.record(f"random-{number}-{name}", mutate(seeds()[name], random_mutations(rng)), max_pixels)
    return campaign


def limit_memory(mebibytes: int) -> None:
    """Cap this process's address space: an allocation past it fails instead of swapping the machine."""
    limit = mebibytes << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def peak_resident_mib() -> float:
    """This process's peak resident memory since it started running this program.

    VmHWM, not `ru_maxrss`: Linux carries the latter over from before `exec`, when the forked child
    still counted the parent's pages (a test process of 700 MB would look like a 700 MB child).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=2000, help="seeded random mutations to try")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-pixels", type=int, default=FUZZ_MAX_PIXELS)
    parser.add_argument("--memory-mib", type=int, default=2048, help="address-space limit of this process")
    args = parser.parse_args(argv)
    limit_memory(args.memory_mib)
    started = time.perf_counter()
    campaign = run_campaign(args.random, args.seed, args.max_pixels)
    summary = {
        "tried": campaign.tried,
        "named": len(named_cases()),
        "outcomes": dict(campaign.outcomes),
        "slowest_seconds": round(campaign.slowest_seconds, 3),
        "slowest_input": campaign.slowest_input,
        "peak_rss_mib": peak_resident_mib(),
        "memory_limit_mib": args.memory_mib,
        "max_pixels": args.max_pixels,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
