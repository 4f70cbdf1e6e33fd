"""Helpers for tests: real photos and the recompression a shared image goes through."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from imgprov.demo import skimage_data_dir
from imgprov.images import load_image
from imgprov.indexing.pipeline import index_paths
from imgprov.storage import parse_location, store_writer
from imgprov.storage.records import CollectionPresets


def distributed(db: str | Path) -> bool:
    """Whether `db` names a distributed store (not an index directory)."""
    return parse_location(db).path is None


def photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of one scikit-image photo."""
    return load_image(skimage_data_dir() / name).pixels


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at `quality`."""
    ok, data = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> Path:
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def index_all(db: str, paths: list[Path], collection_presets: CollectionPresets) -> str:
    """Index every path into a new collection `db` created with the presets; returns `db`."""
    with store_writer(db, presets=collection_presets) as collection:
        report = index_paths(collection, paths)
    assert len(report.added) == len(paths) and not report.failed
    return db


def private_copy(db: str, new_db) -> str:
    """A new collection (from the `new_db` fixture) holding a copy of `db`, made by `imgprov
    migrate` (ids and all), for tests that add and remove originals."""
    from imgprov.storage import open_store
    from imgprov.storage.migrate import migrate, source_presets

    copy = new_db()
    source = open_store(db)
    with store_writer(copy, presets=source_presets(source)) as target:
        migrate(source, target)
    return copy
