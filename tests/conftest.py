"""Shared fixtures: the scikit-image photos of the benchmark corpus and an index built from them.

The store the shared collections live in comes from `IMGPROV_TEST_STORE`: `embedded` (the default,
an index directory) or `distributed` (Milvus + PostgreSQL, started once per session by
`tests.servers`), so the same tests run against both. `new_db()` makes a new collection and
`photo_db` is the photo index, both in the store under test; `store_db` builds a new collection in
each store in turn, for tests that always cover both; `servers` gives tests of the distributed store
itself its servers. Tests about the embedded store's own files are marked `embedded_only` and
skipped under the distributed store.

Under `IMGPROV_TEST_STORE=distributed` only the tests that open the distributed store are
collected: those whose fixtures include `new_db`, `photo_db` (directly or through another fixture),
`servers` or `store_db`'s distributed case. Every other test (a pure unit test, or one whose
collection is an embedded directory whatever the variable says) is deselected: it ran in the
embedded pass, and running it again would test nothing new. `make test` runs both passes.

Tests that start the distributed store's servers are marked `slow` here; the other slow tests
(servers, browsers, Ray clusters, moto, killed processes) carry the marker in their modules.
`make check` runs the rest, `-m "not slow"`, on the embedded store.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imgprov.demo import SKIMAGE_PHOTOS, skimage_data_dir
from imgprov.indexing.pipeline import index_paths
from imgprov.storage import Store, open_store, store_writer
from tests.servers import Servers, missing, running_servers

STORES = ("embedded", "distributed")
TEST_STORE = os.environ.get("IMGPROV_TEST_STORE", "embedded")
if TEST_STORE not in STORES:
    raise pytest.UsageError(f"IMGPROV_TEST_STORE={TEST_STORE!r}; valid: {', '.join(STORES)}")
DISTRIBUTED_FIXTURES = frozenset({"new_db", "photo_db", "servers"})
"""Fixtures that open the distributed store under `IMGPROV_TEST_STORE=distributed`."""
_names = itertools.count(1)


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "embedded_only: about the embedded store's files; skipped for the other"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Marks `slow` the tests that start the distributed store's servers (before `-m` selects), and
    under `IMGPROV_TEST_STORE=distributed` keeps only the tests that open that store."""
    for item in items:
        if starts_the_servers(item):
            item.add_marker(pytest.mark.slow)
    if TEST_STORE == "embedded":
        return
    kept = [item for item in items if opens_the_distributed_store(item)]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    skip = pytest.mark.skip(reason=f"about the embedded store's own files (IMGPROV_TEST_STORE={TEST_STORE})")
    for item in items:
        if "embedded_only" in item.keywords:
            item.add_marker(skip)


def opens_the_distributed_store(item: pytest.Item) -> bool:
    """Whether the test's fixtures open the distributed store (run under `distributed`)."""
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(fixtures & DISTRIBUTED_FIXTURES) or is_distributed_store_db(item)


def is_distributed_store_db(item: pytest.Item) -> bool:
    """Whether the test is `store_db`'s distributed case."""
    callspec = getattr(item, "callspec", None)
    return (
        "store_db" in getattr(item, "fixturenames", ())
        and callspec is not None
        and callspec.params.get("store_db") == "distributed"
    )


def starts_the_servers(item: pytest.Item) -> bool:
    """Whether the test needs the Milvus and PostgreSQL servers of the distributed store."""
    if TEST_STORE == "distributed":
        return opens_the_distributed_store(item)
    return "servers" in getattr(item, "fixturenames", ()) or is_distributed_store_db(item)


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


@pytest.fixture(scope="session")
def new_db(request, tmp_path_factory) -> Callable[[], str]:
    """Makes new, empty collections in the store under test (`IMGPROV_TEST_STORE`); session-scoped
    so that module fixtures can use it."""
    return lambda: new_db_in(TEST_STORE, request, tmp_path_factory)


@pytest.fixture(params=STORES)
def store_db(request, tmp_path_factory) -> str:
    """A new, empty collection in each store in turn."""
    return new_db_in(request.param, request, tmp_path_factory)


@pytest.fixture(scope="session")
def photo_paths() -> list[Path]:
    return [skimage_data_dir() / name for name in SKIMAGE_PHOTOS]


@pytest.fixture(scope="session")
def photo_db(new_db, photo_paths) -> str:
    """An index of the 14 scikit-image photos in the store under test, built once per test session;
    tests must not modify it."""
    db = new_db()
    with store_writer(db) as collection:
        report = index_paths(collection, photo_paths)
    assert not report.failed and len(report.added) == len(photo_paths)
    return db


@pytest.fixture(scope="session")
def photo_collection(photo_db) -> Store:
    return open_store(photo_db)
