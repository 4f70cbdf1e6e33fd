"""Both stores behind one interface: the embedded index directory and Milvus + PostgreSQL.

Every test here runs against each store (`store_db`), or compares them: indexing, search, removal
and re-adding, atomic writes, `imgprov migrate` both ways with identical search results, and one
clear line for a bad or unreachable `--db`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from imgprov import presets
from imgprov.errors import IndexStoreError
from imgprov.indexing.pipeline import discover_images, index_paths, remove_paths
from imgprov.presets import VectorIndexConf
from imgprov.search.pipeline import search
from imgprov.storage import LocationError, open_store, parse_location, store_writer
from imgprov.storage.distributed.milvus import HNSW_MAX_VECTORS, MilvusIndex, milvus_index_for, next_index
from imgprov.storage.migrate import MigrationError, migrate, source_presets, vector_counts
from imgprov.storage.records import CollectionPresets
from imgprov.storage.vector_sets import OBJECTS
from tests.conftest import new_db_in
from tests.support import jpeg, photo, write_jpeg

NAMES = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "moon.png"]


def imgprov(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgprov", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def originals(tmp_path, photo_paths) -> Path:
    folder = tmp_path / "originals"
    folder.mkdir()
    for source in photo_paths:
        if source.name in NAMES:
            shutil.copyfile(source, folder / source.name)
    return folder


def index(db: str, paths: list[Path], **preset_names):
    files, _ = discover_images(paths)
    with store_writer(db, presets=CollectionPresets(**preset_names)) as collection:
        return index_paths(collection, files, batch_size=2)


def spliced() -> np.ndarray:
    query = photo("coffee.png").copy()
    query[120:300, 380:560] = cv2.resize(photo("astronaut.png")[30:260, 130:360], (180, 180))
    return jpeg(query, 80)


QUERIES = {
    "jpeg": lambda: jpeg(photo("coffee.png"), 50),
    "mirrored": lambda: jpeg(np.ascontiguousarray(photo("chelsea.png")[:, ::-1]), 70),
    "cropped": lambda: jpeg(photo("astronaut.png")[40:400, 60:450], 80),
    "spliced": spliced,
    "unrelated": lambda: photo("page.png"),
}


def results(db: str, queries=QUERIES) -> dict[str, list[tuple]]:
    """Each query's matches as (id, path, rank, score, inliers, role), through the Python API."""
    store = open_store(db)
    try:
        found = {}
        for name, make in queries.items():
            result = search(store, make(), presets.search())
            found[name] = [
                (m.image_id, m.path, m.rank, m.score, m.inliers, m.role, m.cosine) for m in result.matches
            ]
        return found
    finally:
        store.close()


def assert_same_results(first: dict[str, list[tuple]], second: dict[str, list[tuple]]) -> None:
    assert first.keys() == second.keys()
    for name in first:
        a, b = first[name], second[name]
        assert [m[:3] + m[4:6] for m in a] == [m[:3] + m[4:6] for m in b], name
        for x, y in zip(a, b, strict=True):
            assert x[3] == pytest.approx(y[3], abs=1e-5), name
            assert (x[6] is None) == (y[6] is None) and (
                x[6] is None or x[6] == pytest.approx(y[6], abs=1e-5)
            )


def test_index_search_replace_remove_and_readd(store_db, originals):
    report = index(store_db, [originals])
    assert len(report.added) == len(NAMES) and not report.failed
    again = index(store_db, [originals])
    assert len(again.unchanged) == len(NAMES) and not again.added
    coffee = str((originals / "coffee.png").resolve())
    top = results(store_db, {"jpeg": QUERIES["jpeg"]})["jpeg"][0]
    assert top[1] == coffee and top[2] == 1
    write_jpeg(originals / "camera.png", photo("page.png"))
    replaced = index(store_db, [originals])
    assert replaced.replaced == [str((originals / "camera.png").resolve())]
    with store_writer(store_db, create=False) as collection:
        removed, not_found = remove_paths(collection, [originals / "coffee.png", originals / "nothing.png"])
        assert removed == [coffee] and not_found == [str(originals / "nothing.png")]
        assert collection.check(repair=False).ok
    assert results(store_db, {"jpeg": QUERIES["jpeg"]})["jpeg"] == []
    readded = index(store_db, [originals / "coffee.png"])
    assert readded.added == [coffee]
    store = open_store(store_db)
    assert store.catalogue.image_count() == len(NAMES)
    assert store.check(repair=False).ok
    assert results(store_db, {"jpeg": QUERIES["jpeg"]})["jpeg"][0][1] == coffee


@pytest.mark.slow
def test_migrate_both_ways_gives_identical_search_results(photo_db, request, tmp_path_factory):
    """The session's photo collection copied to the other store and back: same ids, paths, ranks,
    roles, inliers, and scores and cosines to 1e-5, for benign copies, a splice and an unrelated image."""
    source = open_store(photo_db)
    other = "distributed" if parse_location(photo_db).embedded else "embedded"
    there = new_db_in(other, request, tmp_path_factory)
    back = new_db_in("embedded" if other == "distributed" else "distributed", request, tmp_path_factory)
    with store_writer(there, presets=source_presets(source)) as target:
        report = migrate(source, target, batch_size=5)
    assert (report.copied, report.already, report.images) == (14, 0, 14)
    with store_writer(back, presets=source_presets(open_store(there))) as target:
        migrate(open_store(there), target)
    before = results(photo_db)
    assert before["jpeg"][0][1].endswith("coffee.png") and len(before["spliced"]) == 2
    assert before["unrelated"] == []
    assert_same_results(before, results(there))
    assert_same_results(before, results(back))
    assert vector_counts(open_store(there)) == vector_counts(source) == vector_counts(open_store(back))


def test_interrupted_migration_resumes_without_duplicates(store_db, request, tmp_path_factory, photo_paths):
    source_db = new_db_in("embedded", request, tmp_path_factory)
    index(source_db, photo_paths[:5])
    source = open_store(source_db)

    def interrupt(copied: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), store_writer(store_db, presets=source_presets(source)) as target:
        migrate(source, target, batch_size=2, progress=interrupt)
    assert open_store(store_db).catalogue.image_count() == 2
    with store_writer(store_db, presets=source_presets(source)) as target:
        report = migrate(source, target, batch_size=2)
    assert (report.copied, report.already, report.images) == (3, 2, 5)
    assert open_store(store_db).check(repair=False).ok
    with store_writer(store_db, presets=source_presets(source)) as target:
        assert migrate(source, target).copied == 0
    other_db = new_db_in("embedded", request, tmp_path_factory)
    index(other_db, photo_paths[5:7])
    with (
        pytest.raises(MigrationError, match="not the source's"),
        store_writer(store_db, presets=source_presets(source)) as target,
    ):
        migrate(open_store(other_db), target)


def test_a_crashed_write_is_invisible_and_rolled_back(servers, originals, monkeypatch):
    """Vectors in Milvus, catalogue rows still pending, and the writer gone: readers see nothing of
    it, `check` says so, and the next writer removes it."""
    from imgprov.storage.distributed.store import DistributedStore

    db = servers.db("crashed")
    index(db, [originals / "astronaut.png", originals / "chelsea.png"])
    before = results(db, {"jpeg": QUERIES["jpeg"]})
    assert before["jpeg"] == []

    def crash(self, *, add=(), remove=()):
        """The first half of `apply` (pending rows and their vectors), then the process dies."""
        with self.catalogue.transaction() as sql:
            ids = self._new_ids(add)
            for image_id, image in zip(ids, add, strict=True):
                self._insert(sql, image_id, image)
        for vector_set in self.vector_sets:
            for vector_ids, vectors in self._vectors_of(vector_set.name, ids, add):
                vector_set.insert(vector_ids, vectors)
        raise SystemExit("killed")

    with monkeypatch.context() as patch:
        patch.setattr(DistributedStore, "apply", crash)
        with pytest.raises(SystemExit):
            index(db, [originals / "coffee.png"])
    assert results(db, {"jpeg": QUERIES["jpeg"]}) == before
    store = open_store(db)
    assert store.catalogue.image_count() == 2 and len(store.catalogue.hidden_ids()) == 1
    report = store.check(repair=False)
    assert report.ok and any("interrupted" in note for note in report.notes)
    with store_writer(db, create=False) as writer:
        assert writer.removed_leftovers == ["rolled back 1 images an interrupted write had begun to add"]
        assert writer.local.count() == writer.local.ntotal
    assert index(db, [originals / "coffee.png"]).added
    assert results(db, {"jpeg": QUERIES["jpeg"]})["jpeg"][0][1].endswith("coffee.png")


def test_repair_rebuilds_lost_milvus_vectors(servers, originals):
    db = servers.db("repair")
    index(db, [originals / "astronaut.png", originals / "coffee.png"])
    with store_writer(db, create=False) as writer:
        writer.global_set.drop()
        writer.local.delete_images([writer.catalogue.all_images()[0].id])
    report = open_store(db).check(repair=False)
    assert not report.ok and len(report.problems) == 2
    done = imgprov("check", "--db", db, "--repair")
    assert done.returncode == 0 and "repaired: rebuilt local vectors" in done.stdout
    assert open_store(db).check(repair=False).ok
    assert results(db, {"jpeg": QUERIES["jpeg"]})["jpeg"][0][1].endswith("coffee.png")


@pytest.mark.slow
def test_cli_end_to_end_and_migrate_to_the_other_store(store_db, originals, request, tmp_path_factory):
    done = imgprov("index", "--db", store_db, str(originals))
    assert done.returncode == 0, done.stderr
    query = write_jpeg(originals.parent / "query.jpg", jpeg(photo("chelsea.png"), 60))
    searched = imgprov("search", "--db", store_db, "--json", str(query))
    assert searched.returncode == 0, searched.stderr
    first = json.loads(searched.stdout)
    assert first["matches"][0]["path"].endswith("chelsea.png")
    info = json.loads(imgprov("info", "--db", store_db, "--json").stdout)
    assert info["images"] == len(NAMES) and info["local_vectors"] > 1000
    assert imgprov("check", "--db", store_db).returncode == 0
    other_kind = "distributed" if parse_location(store_db).embedded else "embedded"
    other = new_db_in(other_kind, request, tmp_path_factory)
    moved = imgprov("migrate", "--from", store_db, "--to", other)
    assert moved.returncode == 0, moved.stderr
    assert f"both hold {len(NAMES)} images" in moved.stderr
    again = json.loads(imgprov("search", "--db", other, "--json", str(query)).stdout)
    assert [m["id"] for m in again["matches"]] == [m["id"] for m in first["matches"]]
    assert [m["score"] for m in again["matches"]] == pytest.approx([m["score"] for m in first["matches"]])
    removed = imgprov("remove", "--db", other, str(originals / "chelsea.png"))
    assert removed.returncode == 0, removed.stderr
    assert json.loads(imgprov("search", "--db", other, "--json", str(query)).stdout)["matches"] == []


def test_bad_locations_give_one_line(servers, tmp_path, photo_paths):
    unreachable_sql = servers.postgres_url.rsplit(":", 1)[0] + ":1/postgres"
    for db, message in (
        ("redis://localhost/x", "unknown store 'redis'"),
        ("milvus://localhost:19530/x", "?sql=postgresql://"),
        ("milvus://localhost:19530/9bad?sql=sqlite:///x.sqlite", "collection NAME"),
        ("milvus://localhost:port/x?sql=sqlite:///x.sqlite", "port is not a number"),
        (servers.db("nothing_here"), "no imgprov collection here"),
        (
            f"milvus://{servers.milvus_host}:{servers.milvus_port}/x?sql={unreachable_sql}",
            "connect to PostgreSQL",
        ),
        (f"milvus://127.0.0.1:1/x?sql={servers.postgres_url}", "cannot connect to Milvus"),
    ):
        command = "search" if "nothing_here" in db else "index"
        done = imgprov(command, "--db", db, str(photo_paths[0]))
        assert done.returncode != 0, db
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    with pytest.raises(LocationError, match="unknown store"):
        parse_location("s3://bucket/x")
    with pytest.raises(IndexStoreError, match="no imgprov catalogue"):
        open_store(f"milvus://127.0.0.1:1/x?sql=sqlite:///{tmp_path}/missing.sqlite")


def test_sqlite_catalogue_with_milvus(servers, originals, tmp_path):
    """The catalogue in one SQLite file instead of PostgreSQL, the vectors in Milvus."""
    db = f"milvus://{servers.milvus_host}:{servers.milvus_port}/lite?sql=sqlite:///{tmp_path}/lite.sqlite"
    index(db, [originals / "coffee.png", originals / "moon.png"])
    assert results(db, {"jpeg": QUERIES["jpeg"]})["jpeg"][0][1].endswith("coffee.png")
    assert open_store(db).check(repair=False).ok


def test_index_type_follows_the_set_size(servers):
    """FLAT while small, HNSW, then IVF_PQ with the preset's codes; a real server builds and searches
    each, and the approximate ones find most exact neighbours."""
    from imgprov.storage.distributed.milvus import MilvusVectors, connect

    conf = VectorIndexConf(name="test", exact_max_vectors=1000, pq_bytes=16, nprobe=16)
    assert milvus_index_for(1000, conf).kind == "FLAT"
    assert milvus_index_for(1001, conf).kind == "HNSW"
    ivfpq = milvus_index_for(HNSW_MAX_VECTORS + 1, conf)
    assert ivfpq.kind == "IVF_PQ" and ivfpq.build["m"] == 16 and ivfpq.search["nprobe"] == 16
    flat, hnsw = milvus_index_for(0, conf), milvus_index_for(1001, conf)
    assert next_index(flat, 1001, conf) == hnsw and next_index(hnsw, 1500, conf) is None
    assert next_index(hnsw, 999, conf) is None and next_index(hnsw, 500, conf) == flat
    assert next_index(hnsw, HNSW_MAX_VECTORS + 1, conf) == ivfpq
    assert next_index(ivfpq, 4 * HNSW_MAX_VECTORS, conf).build["nlist"] == 2 * ivfpq.build["nlist"]
    rng = np.random.default_rng(3)
    vectors = rng.random((4000, 128), dtype=np.float32)
    ids = (np.arange(4000, dtype=np.int64) // 100 + 1) << 16 | np.arange(4000) % 100
    exact_set = MilvusVectors(
        "local",
        connect(servers.milvus_host, servers.milvus_port),
        "sizes_local",
        128,
        conf,
        4000,
        milvus_index_for(0, conf),
        list,
    )
    exact_set.create()
    exact_set.insert(ids, vectors)
    queries = vectors[:50] + rng.normal(0, 0.01, (50, 128)).astype(np.float32)
    _, exact = exact_set.search(queries, 10)
    assert (exact[:, 0] == ids[:50]).all()
    small_ivfpq = MilvusIndex("IVF_PQ", "L2", build={"nlist": 64, "m": 16, "nbits": 8}, search={"nprobe": 16})
    for index in (milvus_index_for(4000, conf), small_ivfpq):
        exact_set.set_index(index)
        _, found = exact_set.search(queries, 10)
        assert np.mean(found[:, 0] == ids[:50]) > 0.8, index.kind
    exact_set.drop()


def test_locations():
    embedded = parse_location("data/db")
    assert embedded.embedded and embedded.path == Path("data/db")
    url = "milvus://milvus.example:19531/photos?sql=postgresql://imgprov:secret@pg.example:5432/imgprov"
    distributed = parse_location(url)
    assert (distributed.host, distributed.port, distributed.name) == ("milvus.example", 19531, "photos")
    assert distributed.sql == "postgresql://imgprov:secret@pg.example:5432/imgprov"
    assert "secret" not in distributed.describe() and "***" in distributed.describe()
    assert parse_location("milvus://localhost/x?sql=sqlite:///x.sqlite").port == 19530
    with pytest.raises(LocationError, match="use a directory"):
        parse_location("file:///tmp/db")


def test_object_vectors_give_the_same_host_and_donor(servers, request, tmp_path_factory, photo_paths):
    """An index with objects (OE-SIR, raw vectors) copied to Milvus: the splice's host and donor,
    their regions and scores are the same."""
    embedded = new_db_in("embedded", request, tmp_path_factory)
    names = {"coffee.png", "astronaut.png", "chelsea.png", "rocket.jpg"}
    index(
        embedded, [path for path in photo_paths if path.name in names], objects="oesir-grid-k8-mnv4c224-raw"
    )
    distributed = servers.db("objects")
    source = open_store(embedded)
    with store_writer(distributed, presets=source_presets(source)) as target:
        assert migrate(source, target).vectors["objects"] == 8 * len(names)

    def matches(db: str) -> list[tuple]:
        result = search(open_store(db), spliced(), presets.search())
        return [(m.image_id, m.role, m.inliers, round(m.score, 5), m.regions) for m in result.matches]

    found = matches(embedded)
    assert [role for _, role, *_ in found] == ["host", "donor"]
    assert matches(distributed) == found


WHITENED = "oesir-grid-k8-effnet512-w256"
SPLICE_NAMES = ("coffee.png", "astronaut.png", "chelsea.png", "rocket.jpg")


def index_one_by_one(db: str, paths: list[Path]) -> None:
    """One write per image: the object whitening is learned after the first (8 objects) and again
    after the third (24 > 2 x 8)."""
    with store_writer(db, presets=CollectionPresets(objects=WHITENED)) as collection:
        index_paths(collection, paths, batch_size=1)


def spliced_matches(db: str) -> list[tuple]:
    store = open_store(db)
    try:
        result = search(store, spliced(), presets.search())
        return [(m.image_id, m.role, m.inliers, round(m.score, 4)) for m in result.matches]
    finally:
        store.close()


def object_collections(db: str) -> tuple[str, list[str]]:
    """The Milvus collection the objects are searched in, and every object collection there is."""
    with store_writer(db, create=False) as writer:
        current = writer.object_set.collection_name
        prefix = current.split(f"_{OBJECTS}")[0] + f"_{OBJECTS}"
        return current, sorted(n for n in writer.object_set.server_collections() if n.startswith(prefix))


def test_whitened_objects_are_learned_alike_in_both_stores(servers, request, tmp_path_factory, photo_paths):
    """A preset that PCA-whitens object vectors on the collection: the same whitening, learned at
    the same writes, gives the same splice answer; each new whitening writes the objects into a new
    Milvus collection, the previous one is kept for open readers and older ones are dropped."""
    paths = [path for name in SPLICE_NAMES for path in photo_paths if path.name == name]
    embedded, distributed = new_db_in("embedded", request, tmp_path_factory), servers.db("whitened")
    index_one_by_one(embedded, paths)
    index_one_by_one(distributed, paths)
    store = open_store(distributed)
    assert store.catalogue.meta("objects.whitening.trained_on") == "24"
    assert store.object_set.dim == 256 and store.object_index().ntotal == 32
    np.testing.assert_array_equal(
        store.object_whitening.projection, open_store(embedded).object_whitening.projection
    )
    assert store.check(repair=False).ok
    found = spliced_matches(embedded)
    assert [role for _, role, *_ in found[:2]] == ["host", "donor"]
    assert spliced_matches(distributed) == found
    current, every = object_collections(distributed)
    previous = store.catalogue.meta("vectors.objects.previous")
    assert current.endswith("_g3") and previous.endswith("_g1") and every == sorted([current, previous])
    copy = servers.db("whitened_copy")
    with store_writer(copy, presets=source_presets(store)) as target:
        migrate(store, target, batch_size=1)
    assert spliced_matches(copy) == found


def test_a_failed_rewhitening_leaves_the_collection_as_it_was(servers, photo_paths, monkeypatch):
    from imgprov.storage.distributed.milvus import MilvusVectors

    paths = [path for name in SPLICE_NAMES for path in photo_paths if path.name == name]
    db = servers.db("rewhitening")
    index_one_by_one(db, paths[:2])
    before = (spliced_matches(db), object_collections(db))
    insert = MilvusVectors.insert

    def fail_in_new_collections(self, ids, vectors):
        if "_g" in self.collection_name:
            raise SystemExit("killed")
        insert(self, ids, vectors)

    with monkeypatch.context() as patch:
        patch.setattr(MilvusVectors, "insert", fail_in_new_collections)
        with pytest.raises(SystemExit):
            index_one_by_one(db, paths[2:3])
    assert (spliced_matches(db), object_collections(db)) == before
    assert open_store(db).check(repair=False).ok
    index_one_by_one(db, paths[2:])
    assert open_store(db).catalogue.meta("objects.whitening.trained_on") == "24"
