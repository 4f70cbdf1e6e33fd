"""Shared fixtures: the scikit-image photos of the benchmark corpus and an index built from them.

The store the shared collections live in comes from `IMGPROV_TEST_STORE`: `embedded` (the default,
an index directory) or `distributed` (Milvus + PostgreSQL, started once per session by
`tests.servers`), so the same tests run against both. Tests about the embedded store's own files
are marked `embedded_only` and skipped under the distributed store; `store_db` builds a new
collection in each store, for tests that always cover both.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgprov.demo import SKIMAGE_PHOTOS, skimage_data_dir
from imgprov.index import index_paths
from imgprov.storage import Store, open_store, store_writer
from tests.servers import Servers, missing, running_servers

STORES = ("embedded", "distributed")
TEST_STORE = os.environ.get("IMGPROV_TEST_STORE", "embedded")
if TEST_STORE not in STORES:
    raise pytest.UsageError(f"IMGPROV_TEST_STORE={TEST_STORE!r}; valid: {', '.join(STORES)}")
_names = itertools.count(1)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "embedded_only: about the embedded store's files; skipped for the other"
    )


def pytest_collection_modifyitems(config, items) -> None:
    if TEST_STORE == "embedded":
        return
    skip = pytest.mark.skip(reason=f"about the embedded store's own files (IMGPROV_TEST_STORE={TEST_STORE})")
    for item in items:
        if "embedded_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def servers(tmp_path_factory) -> Iterator[Servers]:
    """A Milvus and a PostgreSQL server on loopback for the whole session."""
    reason = missing()
    if reason:
        pytest.skip(f"the distributed store's servers cannot be started: {reason}")
    with running_servers(tmp_path_factory.mktemp("servers")) as running:
        yield running


def new_db_in(kind: str, request, tmp_path_factory) -> str:
    """The --db of a new, empty collection in store `kind`."""
    name = f"c{os.getpid()}_{next(_names)}"
    if kind == "embedded":
        return str(tmp_path_factory.mktemp(name) / "db")
    return request.getfixturevalue("servers").db(name)


@pytest.fixture
def new_db(request, tmp_path_factory) -> Callable[[], str]:
    """Makes new, empty collections in the store under test (`IMGPROV_TEST_STORE`)."""
    return lambda: new_db_in(TEST_STORE, request, tmp_path_factory)


@pytest.fixture(params=STORES)
def store_db(request, tmp_path_factory) -> str:
    """A new, empty collection in each store in turn."""
    return new_db_in(request.param, request, tmp_path_factory)


@pytest.fixture(scope="session")
def photo_paths() -> list[Path]:
    return [skimage_data_dir() / name for name in SKIMAGE_PHOTOS]


@pytest.fixture(scope="session")
def photo_db(request, tmp_path_factory, photo_paths) -> str:
    """An index of the 14 scikit-image photos in the store under test, built once per test session;
    tests must not modify it."""
    db = new_db_in(TEST_STORE, request, tmp_path_factory)
    with store_writer(db) as collection:
        report = index_paths(collection, photo_paths)
    assert not report.failed and len(report.added) == len(photo_paths)
    return db


@pytest.fixture(scope="session")
def photo_collection(photo_db) -> Store:
    return open_store(photo_db)
