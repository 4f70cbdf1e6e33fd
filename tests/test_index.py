"""Indexing into the store under test: incremental indexing, removal, replacement, the switch to an
approximate index, the writer lock and preset mismatches; and the embedded index directory's atomic
writes and repair of its files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imgprov import presets
from imgprov.errors import IndexBusy, IndexUnwritable, PresetError
from imgprov.indexing.pipeline import discover_images, index_paths, remove_paths
from imgprov.presets import VectorIndexConf
from imgprov.search.pipeline import search
from imgprov.storage import Store, open_store, store_writer
from imgprov.storage.embedded.catalogue import Catalogue
from imgprov.storage.embedded.collection import Collection
from imgprov.storage.records import CollectionPresets
from tests.support import jpeg, photo, write_jpeg

NAMES = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "moon.png"]


@pytest.fixture
def originals(tmp_path, photo_paths) -> Path:
    folder = tmp_path / "originals"
    (folder / "nested").mkdir(parents=True)
    for source in photo_paths:
        if source.name in NAMES[:3]:
            shutil.copyfile(source, folder / source.name)
        elif source.name in NAMES[3:]:
            shutil.copyfile(source, folder / "nested" / source.name)
    return folder


def index(db: str | Path, paths: list[Path], **preset_names):
    files, missing = discover_images(paths)
    with store_writer(db, presets=CollectionPresets(**preset_names)) as collection:
        return index_paths(collection, files, batch_size=2), missing


def test_folders_are_indexed_recursively_and_reindexing_skips_unchanged(new_db, originals):
    db = new_db()
    report, _ = index(db, [originals])
    assert len(report.added) == len(NAMES) and not report.failed
    again, _ = index(db, [originals])
    assert len(again.unchanged) == len(NAMES) and not again.added and not again.replaced
    collection = open_store(db)
    assert collection.catalogue.image_count() == len(NAMES)
    assert collection.check(repair=False).ok


def test_changed_file_is_replaced_and_a_copy_reuses_features(new_db, originals):
    db = new_db()
    index(db, [originals])
    write_jpeg(originals / "coffee.png", photo("chelsea.png"))
    shutil.copyfile(originals / "astronaut.png", originals / "astronaut-copy.png")
    report, _ = index(db, [originals])
    assert report.replaced == [str((originals / "coffee.png").resolve())]
    assert report.added == [str((originals / "astronaut-copy.png").resolve())]
    collection = open_store(db)
    first = collection.catalogue.image_by_path(str((originals / "astronaut.png").resolve()))
    copy = collection.catalogue.image_by_path(str((originals / "astronaut-copy.png").resolve()))
    assert len(collection.local_features(first.id)) == len(collection.local_features(copy.id))
    assert collection.check(repair=False).ok


def test_remove_deletes_images_and_their_vectors(new_db, tmp_path, originals):
    db = new_db()
    index(db, [originals])
    with store_writer(db, create=False) as collection:
        removed, not_found = remove_paths(collection, [originals / "nested", tmp_path / "nothing.jpg"])
    assert len(removed) == 3 and not_found == [str(tmp_path / "nothing.jpg")]
    collection = open_store(db)
    assert collection.catalogue.image_count() == 3
    assert collection.check(repair=False).ok
    result = search(collection, jpeg(photo("rocket.jpg"), 70), presets.search(), stage="local")
    assert result.matches == ()


@pytest.mark.embedded_only
def test_failed_transaction_leaves_the_previous_index_readable(tmp_path, originals, monkeypatch):
    db = tmp_path / "db"
    index(db, [originals / "astronaut.png"])
    before = [vector_set.state for vector_set in Collection.open(db).vector_sets]

    def crash(self, state):
        raise OSError("disk full (simulated after the vector file was written)")

    monkeypatch.setattr(Catalogue, "record_vector_state", crash)
    with pytest.raises(OSError):
        index(db, [originals / "coffee.png"])
    monkeypatch.undo()
    collection = Collection.open(db)
    assert [vector_set.state for vector_set in collection.vector_sets] == before
    assert collection.catalogue.image_count() == 1
    assert sorted(path.name for path in db.glob("*.faiss*")) == sorted(state.file for state in before)
    assert collection.check(repair=False).ok
    assert search(collection, photo("astronaut.png"), presets.search(), stage="local").matches


@pytest.mark.slow
def test_exact_index_becomes_approximate_when_large_and_it_is_recorded(new_db, originals, monkeypatch):
    small = VectorIndexConf(name="test-exact3k", exact_max_vectors=3000, pq_bytes=16, nprobe=8)
    monkeypatch.setitem(presets.LOCAL_INDEXES, small.name, small)
    db = new_db()
    index(db, [originals], local_index=small.name)
    collection = open_store(db)
    changes = local_layout_changes(collection)
    assert changes and changes[-1]["trained_on"] > 3000
    assert changes[0]["from"].lower().startswith("flat") and not changes[-1]["to"].lower().startswith("flat")
    assert collection.describe()["local_index_layout"] == changes[-1]["to"]
    assert collection.check(repair=False).ok
    best = search(collection, jpeg(photo("chelsea.png"), 60), presets.search(), stage="local").matches[0]
    assert best.path.endswith("chelsea.png")


def local_layout_changes(collection: Store) -> list[dict]:
    """The local vectors' layout changes the collection logged, oldest first."""
    events = reversed(collection.catalogue.events(limit=1000))
    return [detail for _, kind, detail in events if kind == "vector-layout" and detail["vectors"] == "local"]


@pytest.mark.embedded_only
def test_repair_rebuilds_a_lost_vector_file(tmp_path, originals):
    db = tmp_path / "db"
    index(db, [originals])
    (db / Collection.open(db).local.state.file).unlink()
    (db / "local-dead.faiss.tmp").write_bytes(b"partial")
    report = Collection.open(db).check(repair=False)
    assert not report.ok and any("missing" in problem for problem in report.problems)
    with Collection.writer(db, create=False) as collection:
        repaired = collection.check(repair=True)
    assert repaired.ok and repaired.repaired
    assert Collection.open(db).check(repair=False).problems == []
    assert not (db / "local-dead.faiss.tmp").exists()


def test_second_writer_fails_with_a_clear_message(new_db):
    db = new_db()
    with (
        store_writer(db, wait_seconds=0),
        pytest.raises(IndexBusy, match="another imgprov process"),
        store_writer(db, wait_seconds=0.2),
    ):
        pass
    with store_writer(db, wait_seconds=0, create=False):
        pass


@pytest.mark.embedded_only
def test_unwritable_index_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(IndexUnwritable), Collection.writer(blocker / "db"):
        pass


def test_preset_mismatch(new_db, originals):
    db = new_db()
    index(db, [originals / "coffee.png"])
    with pytest.raises(PresetError, match="rootsift-2k-1024"):
        index(db, [originals / "coffee.png"], local_features="rootsift-1k-768")
    with pytest.raises(PresetError, match="valid:"):
        presets.local_features("sift-huge")
