"""Shared fixtures: the scikit-image photos of the benchmark corpus and an index built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgprov.collection import Collection
from imgprov.demo import SKIMAGE_PHOTOS, skimage_data_dir
from imgprov.index import index_paths


@pytest.fixture(scope="session")
def photo_paths() -> list[Path]:
    return [skimage_data_dir() / name for name in SKIMAGE_PHOTOS]


@pytest.fixture(scope="session")
def photo_db(tmp_path_factory, photo_paths) -> Path:
    """An index of the 14 scikit-image photos, built once per test session; tests must not modify it."""
    db = tmp_path_factory.mktemp("photo-db") / "db"
    with Collection.writer(db) as collection:
        report = index_paths(collection, photo_paths)
    assert not report.failed and len(report.added) == len(photo_paths)
    return db


@pytest.fixture(scope="session")
def photo_collection(photo_db) -> Collection:
    return Collection.open(photo_db)
