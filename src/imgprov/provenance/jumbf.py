"""Find the embedded C2PA manifest store (a JUMBF superbox) in an asset's bytes, without the c2pa SDK.

Used for two things the SDK does not offer: a cheap test of whether an asset can carry credentials at
all (so the SDK is not started for the many images without any), and the raw store bytes, kept with
an indexed image. The store's description box ("jumd" + the C2PA manifest store UUID) is written
uncompressed by every embedding the specification defines, so its absence means no embedded store.
JPEG splits the superbox over APP11 segments, each repeating the box header, which are joined here;
PNG (caBX chunk), WebP (C2PA chunk), TIFF and ISO BMFF (HEIF, AVIF) hold it in one piece. GIF splits
it into sub-blocks and is not extracted.
"""

from __future__ import annotations

import struct

C2PA_STORE_UUID = bytes.fromhex("6332706100110010800000aa00389b71")
STORE_DESCRIPTION = b"jumd" + C2PA_STORE_UUID
REMOTE_REFERENCE = b"dcterms:provenance"
"""The XMP property through which an asset points to a remote manifest store."""

Span = tuple[int, int]

_JPEG_APP11 = 0xEB
_JPEG_SOS = 0xDA
_JPEG_EOI = 0xD9
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})
_JPEG_JUMBF_HEADER = 8  # "JP", box instance number (2 bytes), packet sequence number (4 bytes)


def carries_credentials(data: bytes) -> bool:
    """True when the bytes embed a C2PA manifest store or reference a remote one."""
    return STORE_DESCRIPTION in data or REMOTE_REFERENCE in data


def manifest_store_spans(data: bytes) -> tuple[Span, ...]:
    """Byte ranges of the embedded manifest store in file order; joined they give the JUMBF superbox.

    Empty when there is no store or the container is not one the store is extracted from.
    """
    if data.startswith(b"\xff\xd8"):
        return _jpeg_spans(data)
    if _is_contiguous_container(data):
        return _contiguous_spans(data)
    return ()


def extract_manifest_store(data: bytes) -> bytes:
    """The embedded JUMBF manifest store, or b"" (see `manifest_store_spans`)."""
    return b"".join(data[start:end] for start, end in manifest_store_spans(data))


def _is_contiguous_container(data: bytes) -> bool:
    return (
        data.startswith(b"\x89PNG\r\n\x1a\n")
        or (data.startswith(b"RIFF") and data[8:12] == b"WEBP")
        or data[:4] in (b"II*\x00", b"MM\x00*")
        or data[4:8] == b"ftyp"
    )


def _contiguous_spans(data: bytes) -> tuple[Span, ...]:
    found = data.find(STORE_DESCRIPTION)
    if found < 0:
        return ()
    for header in (8, 16):  # LBox + TBox, or LBox = 1 + TBox + XLBox
        start = found - header - 4
        if start >= 0 and data[start + 4 : start + 8] == b"jumb":
            length = _box_length(data, start)
            if length is not None and start + length <= len(data):
                return ((start, start + length),)
    return ()


def _box_length(data: bytes, start: int) -> int | None:
    (length,) = struct.unpack_from(">I", data, start)
    if length == 0:
        return len(data) - start
    if length == 1:
        if start + 16 > len(data):
            return None
        (length,) = struct.unpack_from(">Q", data, start + 8)
    return length if length >= 8 else None


def _jpeg_spans(data: bytes) -> tuple[Span, ...]:
    groups: dict[bytes, list[tuple[int, Span]]] = {}
    for payload_start, payload_end in jpeg_app11_payloads(data):
        if data[payload_start : payload_start + 2] != b"JP" or payload_end - payload_start < 16:
            continue
        instance = data[payload_start + 2 : payload_start + 4]
        (sequence,) = struct.unpack_from(">I", data, payload_start + 4)
        groups.setdefault(instance, []).append((sequence, (payload_start + _JPEG_JUMBF_HEADER, payload_end)))
    for segments in groups.values():
        segments.sort()
        first_start, first_end = segments[0][1]
        if STORE_DESCRIPTION in data[first_start:first_end]:
            return _join_jpeg_segments(data, [span for _, span in segments])
    return ()


def _join_jpeg_segments(data: bytes, spans: list[Span]) -> tuple[Span, ...]:
    """Keep the first segment whole; later ones repeat the box header, which is dropped."""
    first_start = spans[0][0]
    repeated_header = 16 if struct.unpack_from(">I", data, first_start)[0] == 1 else 8
    continued = [(start + repeated_header, end) for start, end in spans[1:] if end - start > repeated_header]
    return (spans[0], *continued)


def jpeg_app11_payloads(data: bytes) -> list[Span]:
    """Payload ranges of every APP11 segment before the first scan."""
    payloads = []
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if marker in (_JPEG_SOS, _JPEG_EOI):
            break
        (length,) = struct.unpack_from(">H", data, position + 2)
        if length < 2:
            break
        if marker == _JPEG_APP11:
            payloads.append((position + 4, min(position + 2 + length, len(data))))
        position += 2 + length
    return payloads
