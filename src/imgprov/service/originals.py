"""Adding and removing originals on behalf of clients.

Uploaded originals are stored by the server, byte for byte, in the collection's originals folder
(`imgprov.storage.originals`), named by their content: no client ever names a path. Each change
takes the index's writer lock for its own duration only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from imgprov.errors import ImgprovError
from imgprov.images import LoadedImage
from imgprov.indexing.pipeline import index_paths
from imgprov.service.errors import UnknownImage
from imgprov.service.uploads import Upload, file_suffix
from imgprov.storage import store_writer
from imgprov.storage.originals import originals_folder
from imgprov.storage.records import ImageRecord

STORED_NAME = re.compile(r"[0-9a-f]{64}\.[a-z]{3,4}")


@dataclass(frozen=True)
class Added:
    """The record of an uploaded original; created is False when its bytes were already indexed."""

    record: ImageRecord
    created: bool


def add_original(db: Path | str, upload: Upload, image: LoadedImage, *, wait_seconds: float) -> Added:
    """Store the upload under the index directory and index it, unless its bytes are indexed already."""
    with store_writer(db, create=False, wait_seconds=wait_seconds) as collection:
        existing = collection.catalogue.image_with_sha256(image.sha256)
        if existing is not None:
            return Added(existing, created=False)
        path = stored_path(db, image)
        write_file_atomically(path, upload.data)
        try:
            report = index_paths(collection, [path], workers=1)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        record = collection.catalogue.image_by_path(str(path))
        if report.failed or record is None:
            path.unlink(missing_ok=True)
            raise ImgprovError(f"{upload.name}: the image could not be indexed")
        return Added(record, created=True)


def remove_original(db: Path | str, image_id: int, *, wait_seconds: float) -> ImageRecord:
    """Remove one image from the index, and its file when the server stored it."""
    with store_writer(db, create=False, wait_seconds=wait_seconds) as collection:
        record = collection.images([image_id]).get(image_id)
        if record is None:
            raise UnknownImage(f"no image with id {image_id} in the collection")
        collection.apply(remove=[image_id])
    if is_stored_original(db, Path(record.path)):
        Path(record.path).unlink(missing_ok=True)
    return record


def stored_path(db: Path | str, image: LoadedImage) -> Path:
    """Where the server keeps an uploaded original: named by its content, never by the client."""
    return originals_folder(db) / f"{image.sha256}.{file_suffix(image.format)}"


def is_stored_original(db: Path | str, path: Path) -> bool:
    """Whether `path` is a file this server stored (and may therefore delete)."""
    return path.parent == originals_folder(db) and STORED_NAME.fullmatch(path.name) is not None


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".part")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
