"""A collection without the feature-level local index (`--vectors none`): the design past a few
million images per shard (docs/scaling.md). Local features are kept per image and verify the global
stage's shortlist; nothing votes over every descriptor. Run against both stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgprov import presets
from imgprov.errors import IndexStoreError, PresetError
from imgprov.indexing.pipeline import remove_paths
from imgprov.search.pipeline import search
from imgprov.storage import open_store, store_writer
from imgprov.storage.records import CollectionPresets
from tests.support import index_all, jpeg, photo

VERIFY_ONLY = CollectionPresets(local_index="none")


@pytest.fixture
def verify_only_db(store_db, photo_paths) -> str:
    return index_all(store_db, photo_paths, VERIFY_ONLY)


def test_copies_are_found_and_verified_without_a_local_index(verify_only_db):
    store = open_store(verify_only_db)
    try:
        assert store.local_index() is None
        assert [vector_set.name for vector_set in store.vector_sets] == ["global"]
        crop = jpeg(photo("coffee.png")[40:-60, 80:-30], 55)
        result = search(store, crop, presets.search())
        mirrored = search(store, jpeg(photo("chelsea.png")[:, ::-1], 70), presets.search())
        with pytest.raises(IndexStoreError, match="no local vector index"):
            search(store, crop, presets.search(), stage="local")
    finally:
        store.close()
    assert Path(result.matches[0].path).name == "coffee.png"
    assert result.matches[0].inliers >= 20, "the match was not verified with the stored local features"
    assert Path(mirrored.matches[0].path).name == "chelsea.png" and mirrored.matches[0].inliers >= 20


def test_check_info_and_removal_without_a_local_index(verify_only_db, photo_paths):
    with store_writer(verify_only_db) as collection:
        removed, _ = remove_paths(collection, [photo_paths[0]])
    assert len(removed) == 1
    store = open_store(verify_only_db)
    try:
        report = store.check(repair=False)
        info = store.describe()
    finally:
        store.close()
    assert report.ok and set(report.vectors) == {"global"}
    assert report.vectors["global"] == len(photo_paths) - 1
    assert info["local_index_preset"] == "none" and info["local_vectors"] == 0
    assert info["keypoints"] > 1000 * (len(photo_paths) - 1) // 2, "the local features are not kept"


def test_a_collection_needs_some_stage_that_finds_candidates(store_db):
    with (
        pytest.raises(PresetError, match="needs a global descriptor"),
        store_writer(store_db, presets=CollectionPresets(local_index="none", global_descriptor="none")),
    ):
        pass


def test_an_existing_collection_keeps_its_local_index_preset(verify_only_db):
    with (
        pytest.raises(PresetError, match="preset 'none'"),
        store_writer(verify_only_db, presets=CollectionPresets(local_index=presets.DEFAULT_LOCAL_INDEX)),
    ):
        pass


def test_an_unknown_local_index_preset_names_none_among_the_valid_ones(store_db):
    with (
        pytest.raises(PresetError, match=r"valid: .*exact50k-ivfpq32-probe16.*, none$"),
        store_writer(store_db, presets=CollectionPresets(local_index="nope")),
    ):
        pass
