"""Reader for Qt binary resource files (``.rcc``), as produced by ``rcc -binary``.

Layout (all integers big-endian), following Qt's ``rcc.cpp`` / ``qresource.cpp``::

    header   "qres" | u32 version | u32 tree_offset | u32 data_offset | u32 names_offset
             [| u32 overall_flags  when version >= 3]
    tree     array of fixed-size nodes; node 0 is the root directory
             node = u32 name_offset | u16 flags |
                    (directory: u32 child_count | u32 first_child_index)
                    (file:      u16 territory | u16 language | u32 data_offset)
                    [| u64 last_modified_ms  when version >= 2]
             so a node is 14 bytes in version 1 and 22 bytes otherwise; the children of a
             directory are the ``child_count`` consecutive nodes from ``first_child_index``.
    names    u16 length_in_utf16_units | u32 qt_hash | UTF-16-BE characters
    data     u32 size | payload
             flag 0x01 (zlib):  payload = u32 uncompressed_size | zlib stream   (qCompress format)
             flag 0x04 (zstd):  payload = zstd frame
             flag 0x02 marks a directory.

Only reading is supported; zstd payloads need the optional ``zstandard`` package.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"qres"
FLAG_ZLIB = 0x01
FLAG_DIRECTORY = 0x02
FLAG_ZSTD = 0x04


class RccError(ValueError):
    """The bytes are not a readable Qt resource file."""


@dataclass(frozen=True)
class RccHeader:
    version: int
    tree_offset: int
    data_offset: int
    names_offset: int
    overall_flags: int

    @property
    def node_size(self) -> int:
        return 14 if self.version == 1 else 22


@dataclass(frozen=True)
class RccEntry:
    """One file inside the resource tree; ``path`` uses ``/`` and has no leading slash."""

    path: str
    flags: int
    data_offset: int

    @property
    def compression(self) -> str:
        if self.flags & FLAG_ZSTD:
            return "zstd"
        if self.flags & FLAG_ZLIB:
            return "zlib"
        return "none"


def parse_header(blob: bytes) -> RccHeader:
    if len(blob) < 20 or blob[:4] != MAGIC:
        raise RccError("not a Qt resource file (missing 'qres' magic)")
    version, tree_offset, data_offset, names_offset = struct.unpack_from(">IIII", blob, 4)
    if version not in (1, 2, 3):
        raise RccError(f"unsupported rcc format version {version}")
    overall_flags = struct.unpack_from(">I", blob, 20)[0] if version >= 3 else 0
    return RccHeader(version, tree_offset, data_offset, names_offset, overall_flags)


def _read_name(blob: bytes, header: RccHeader, name_offset: int) -> str:
    start = header.names_offset + name_offset
    (length,) = struct.unpack_from(">H", blob, start)
    text_start = start + 2 + 4  # skip the length and the 4-byte Qt hash
    return blob[text_start : text_start + 2 * length].decode("utf-16-be")


def _iter_children(blob: bytes, header: RccHeader, node_index: int, prefix: str) -> Iterator[RccEntry]:
    node_start = header.tree_offset + node_index * header.node_size
    (flags,) = struct.unpack_from(">H", blob, node_start + 4)
    if not flags & FLAG_DIRECTORY:
        raise RccError(f"tree node {node_index} is not a directory")
    child_count, first_child = struct.unpack_from(">II", blob, node_start + 6)
    for child_index in range(first_child, first_child + child_count):
        yield from _iter_node(blob, header, child_index, prefix)


def _iter_node(blob: bytes, header: RccHeader, node_index: int, prefix: str) -> Iterator[RccEntry]:
    node_start = header.tree_offset + node_index * header.node_size
    name_offset, flags = struct.unpack_from(">IH", blob, node_start)
    path = prefix + _read_name(blob, header, name_offset)
    if flags & FLAG_DIRECTORY:
        yield from _iter_children(blob, header, node_index, path + "/")
    else:
        (data_offset,) = struct.unpack_from(">I", blob, node_start + 10)
        yield RccEntry(path, flags, data_offset)


def list_entries(blob: bytes) -> list[RccEntry]:
    """All files of the resource, depth first in tree order."""
    header = parse_header(blob)
    try:
        return list(_iter_children(blob, header, 0, ""))
    except (struct.error, UnicodeDecodeError) as exc:
        raise RccError(f"corrupt resource tree: {exc}") from exc


def _decompress_zstd(payload: bytes) -> bytes:
    try:
        import zstandard
    except ImportError as exc:
        raise RccError("entry is zstd-compressed; install the 'zstandard' package") from exc
    return zstandard.ZstdDecompressor().decompress(payload, max_output_size=1 << 30)


def read_entry(blob: bytes, entry: RccEntry) -> bytes:
    """The stored file bytes of ``entry``, decompressed if the resource compressed them."""
    header = parse_header(blob)
    start = header.data_offset + entry.data_offset
    (size,) = struct.unpack_from(">I", blob, start)
    payload = blob[start + 4 : start + 4 + size]
    if len(payload) != size:
        raise RccError(f"data of {entry.path!r} runs past the end of the file")
    if entry.flags & FLAG_ZSTD:
        return _decompress_zstd(payload)
    if entry.flags & FLAG_ZLIB:
        (expected,) = struct.unpack_from(">I", payload, 0)
        data = zlib.decompress(payload[4:])
        if len(data) != expected:
            raise RccError(f"{entry.path!r}: zlib gave {len(data)} bytes, header says {expected}")
        return data
    return payload


class RccFile:
    """A resource file loaded into memory, addressable by path inside the resource."""

    def __init__(self, blob: bytes) -> None:
        self._blob = blob
        self.header = parse_header(blob)
        self._entries = {entry.path: entry for entry in list_entries(blob)}

    @classmethod
    def open(cls, path: Path) -> RccFile:
        return cls(path.read_bytes())

    def paths(self) -> list[str]:
        return list(self._entries)

    def entry(self, path: str) -> RccEntry:
        key = path.lstrip("/")
        if key not in self._entries:
            raise KeyError(f"{path!r} is not in the resource")
        return self._entries[key]

    def read(self, path: str) -> bytes:
        return read_entry(self._blob, self.entry(path))


def qt_hash(name: str) -> int:
    """Qt's ``qt_hash`` of a resource name (stored next to each name; used when building files)."""
    h = 0
    for unit in struct.unpack(f">{len(name.encode('utf-16-be')) // 2}H", name.encode("utf-16-be")):
        h = ((h << 4) + unit) & 0xFFFFFFFF
        h ^= (h & 0xF0000000) >> 23
        h &= 0x0FFFFFFF
    return h
