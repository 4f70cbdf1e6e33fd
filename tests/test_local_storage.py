"""Compressed per-image local features (`imgprov index --local-storage rootsift-pq32`): 32-byte PQ
codes and 12 bytes of geometry per keypoint instead of 144, decoded for verification
(docs/scaling.md, "Local features at scale"). The scikit-image photos used here are not among the
photos the shipped codebook was trained on (scripts/train_local_pq.py)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from imgprov import presets
from imgprov.errors import IndexStoreError, PresetError
from imgprov.extract.local_codec import LocalCodec, local_codec
from imgprov.extract.rootsift import descriptors_as_float, extract_rootsift
from imgprov.images import load_image
from imgprov.indexing.pipeline import index_paths
from imgprov.search.pipeline import search
from imgprov.storage import open_store, store_writer
from imgprov.storage.embedded.catalogue import CATALOGUE
from imgprov.storage.records import CollectionPresets
from tests.support import index_all, jpeg, photo
from tests.test_cli import imgprov

COMPRESSED = "rootsift-pq32"
COMPRESSED_VERIFY_ONLY = CollectionPresets(local_index="none", local_storage=COMPRESSED)


@pytest.fixture(scope="module")
def coffee_features():
    return extract_rootsift(photo("coffee.png"), presets.local_features())


@pytest.fixture
def compressed_db(store_db, photo_paths) -> str:
    return index_all(store_db, photo_paths, COMPRESSED_VERIFY_ONLY)


def test_pq32_round_trip_keeps_positions_exact_and_descriptors_close(coffee_features):
    codec = local_codec(presets.local_storage(COMPRESSED))
    geometry, descriptors = codec.encode(coffee_features)
    decoded = codec.decode(geometry, descriptors, coffee_features.image_size)
    count = len(coffee_features)
    assert count > 500
    assert (len(geometry), len(descriptors)) == (12 * count, 32 * count)
    np.testing.assert_array_equal(decoded.keypoints, coffee_features.keypoints)
    np.testing.assert_allclose(decoded.scales, coffee_features.scales, rtol=1e-3)
    np.testing.assert_allclose(decoded.angles, coffee_features.angles, atol=4e-3)
    assert decoded.descriptors.dtype == np.uint8 and decoded.descriptors.shape == (count, 128)
    original = coffee_features.descriptors.astype(np.float32)
    error = np.linalg.norm(decoded.descriptors.astype(np.float32) - original, axis=1)
    assert np.mean(error / np.linalg.norm(original, axis=1)) < 0.2


def test_decoded_descriptors_stay_nearest_to_their_originals(coffee_features):
    """Each decoded descriptor is closer to its own original than to any other keypoint's, for
    nearly all keypoints: the codes keep what matching needs."""
    codec = local_codec(presets.local_storage(COMPRESSED))
    original = coffee_features.descriptors.astype(np.float32)
    decoded = codec.stored_descriptors(coffee_features.descriptors).astype(np.float32)
    distances = ((decoded[:, None, :] - original[None, :, :]) ** 2).sum(axis=2)
    own = np.argmin(distances, axis=1) == np.arange(len(original))
    assert own.mean() > 0.9


def test_the_default_storage_is_lossless(coffee_features):
    codec = local_codec(presets.local_storage())
    geometry, descriptors = codec.encode(coffee_features)
    decoded = codec.decode(geometry, descriptors, coffee_features.image_size)
    assert codec.lossless and len(geometry) + len(descriptors) == 144 * len(coffee_features)
    np.testing.assert_array_equal(decoded.geometry(), coffee_features.geometry())
    np.testing.assert_array_equal(decoded.descriptors, coffee_features.descriptors)


def test_an_image_without_keypoints_round_trips():
    codec = local_codec(presets.local_storage(COMPRESSED))
    empty = extract_rootsift(np.full((64, 64, 3), 128, np.uint8), presets.local_features())
    decoded = codec.decode(*codec.encode(empty), empty.image_size)
    assert len(empty) == 0 and len(decoded) == 0 and decoded.descriptors.shape == (0, 128)


def test_a_codebook_that_is_not_the_pinned_one_is_refused():
    conf = dataclasses.replace(presets.local_storage(COMPRESSED), codebook_sha256="0" * 64)
    with pytest.raises(IndexStoreError, match="expected 0000"):
        LocalCodec(conf)


def test_compressed_copies_are_found_and_verified_in_both_stores(compressed_db):
    store = open_store(compressed_db)
    try:
        resized = jpeg(photo("coffee.png")[40:-60, 80:-30], 55)
        half = photo("chelsea.png")[::2, ::2]
        results = [search(store, query, presets.search()) for query in (resized, jpeg(half, 70))]
        record = next(image for image in store.catalogue.all_images() if image.path.endswith("coffee.png"))
        stored = store.local_features(record.id)
        sizes = store.catalogue.connection.execute(
            "SELECT SUM(k.count), SUM(LENGTH(k.geometry)), SUM(LENGTH(d.data)) "
            "FROM keypoints k JOIN descriptors d ON d.image_id = k.image_id"
        ).fetchone()
        info, report = store.describe(), store.check(repair=False)
    finally:
        store.close()
    for result, name in zip(results, ("coffee.png", "chelsea.png"), strict=True):
        assert Path(result.matches[0].path).name == name
        assert result.matches[0].inliers >= 20, "the match was not verified with the decoded features"
    extracted = extract_rootsift(load_image(record.path).pixels, presets.local_features())
    np.testing.assert_array_equal(stored.keypoints, extracted.keypoints)
    keypoints, geometry_bytes, descriptor_bytes = (int(value) for value in sizes)
    assert (geometry_bytes, descriptor_bytes) == (12 * keypoints, 32 * keypoints)
    assert info["local_storage_preset"] == COMPRESSED and info["local_bytes_per_keypoint"] == 44
    assert report.ok, report.lines()


def test_a_local_index_over_compressed_features_holds_the_decoded_descriptors(store_db, photo_paths):
    """With a feature-level index too, the index holds the descriptors as the catalogue decodes
    them, on insertion and when rebuilt from the catalogue (OS2OS over them measured as good as
    over exact ones: docs/scaling.md), so voting and rebuilds agree."""
    with store_writer(store_db, presets=CollectionPresets(local_storage=COMPRESSED)) as collection:
        index_paths(collection, photo_paths[:3])
    assert _nearest_stored_distance(store_db) < 1e-6
    with store_writer(store_db) as collection:
        collection.rebuild_vectors()
    assert _nearest_stored_distance(store_db) < 1e-6
    store = open_store(store_db)
    try:
        result = search(
            store, jpeg(load_image(photo_paths[1]).pixels[::2, ::2], 60), presets.search(), stage="local"
        )
    finally:
        store.close()
    assert Path(result.matches[0].path).name == photo_paths[1].name and result.matches[0].inliers >= 20


def _nearest_stored_distance(db: str) -> float:
    """The largest squared L2 distance from one image's decoded descriptors to their nearest
    neighbour in the local index (0 when the index holds exactly what the catalogue decodes)."""
    store = open_store(db)
    try:
        image = store.catalogue.all_images()[0]
        decoded = store.local_features(image.id).descriptors
        distances, _ = store.local_index().search(descriptors_as_float(decoded), 1)
    finally:
        store.close()
    return float(distances.max())


def test_an_unknown_local_storage_preset_lists_the_valid_ones(store_db):
    with (
        pytest.raises(
            PresetError, match=r"unknown local-storage preset 'pq7'; valid: rootsift-pq32, rootsift-u8$"
        ),
        store_writer(store_db, presets=CollectionPresets(local_storage="pq7")),
    ):
        pass


def test_an_existing_collection_keeps_its_local_storage(compressed_db):
    with (
        pytest.raises(PresetError, match="local_storage preset 'rootsift-pq32', not 'rootsift-u8'"),
        store_writer(compressed_db, presets=CollectionPresets(local_storage="rootsift-u8")),
    ):
        pass
    with store_writer(compressed_db) as collection:
        assert collection.local_storage.name == COMPRESSED


@pytest.mark.slow
@pytest.mark.embedded_only
def test_the_cli_indexes_compressed_and_info_shows_the_encoding(tmp_path, photo_paths):
    db = str(tmp_path / "db")
    photos = [str(path) for path in photo_paths[:2]]
    done = imgprov("index", "--db", db, "--vectors", "none", "--local-storage", COMPRESSED, *photos)
    assert done.returncode == 0, done.stderr
    info = json.loads(imgprov("info", "--db", db, "--json").stdout)
    refused = imgprov("index", "--db", db, "--local-storage", "rootsift-u8", photos[0])
    unknown = imgprov("index", "--db", str(tmp_path / "other"), "--local-storage", "pq7", photos[0])
    assert info["local_storage_preset"] == COMPRESSED and info["local_bytes_per_keypoint"] == 44
    assert refused.returncode != 0 and "local_storage preset 'rootsift-pq32'" in refused.stderr
    assert unknown.returncode != 0 and "valid: rootsift-pq32, rootsift-u8" in unknown.stderr


@pytest.mark.embedded_only
def test_a_catalogue_from_before_the_preset_reads_as_exact_features(tmp_path, photo_paths):
    db = tmp_path / "db"
    with store_writer(str(db)) as collection:
        index_paths(collection, photo_paths[:2])
    with sqlite3.connect(db / CATALOGUE) as connection:
        connection.execute("DELETE FROM meta WHERE key = 'preset.local_storage'")
    store = open_store(str(db))
    try:
        assert store.local_storage.name == "rootsift-u8"
        assert len(store.local_features(1)) > 500
    finally:
        store.close()
    with (
        pytest.raises(PresetError, match="preset 'rootsift-u8', not 'rootsift-pq32'"),
        store_writer(str(db), presets=CollectionPresets(local_storage=COMPRESSED)),
    ):
        pass
