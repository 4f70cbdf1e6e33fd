"""The global stage: SSCD embeddings in a compressed index, two-stage search, index growth."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from imgprov import presets
from imgprov.extract.sscd import SSCDExtractor
from imgprov.indexing.pipeline import index_paths, remove_paths
from imgprov.presets import VectorIndexConf
from imgprov.search.pipeline import search
from imgprov.storage import open_store, store_writer
from imgprov.storage.embedded.vectors import VectorSet, layout_of
from imgprov.storage.ids import vector_ids
from imgprov.storage.records import VectorFileState
from tests.support import jpeg, photo
from tests.test_search import BENIGN

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

NAMES = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "moon.png", "coins.png"]


@pytest.fixture(scope="module")
def extractor() -> SSCDExtractor:
    return SSCDExtractor()


def distractors(real: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Unit vectors with the real embeddings' mean and covariance, standing in for other photos."""
    rng = np.random.default_rng(seed)
    covariance = np.cov(real, rowvar=False) + 1e-3 * np.eye(real.shape[1])
    block = rng.multivariate_normal(real.mean(axis=0), covariance, size=count, method="cholesky")
    return (block / np.linalg.norm(block, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.embedded_only
def test_compressed_index_finds_the_originals_of_benign_copies(tmp_path, extractor):
    originals = extractor.embed([photo(name) for name in NAMES])
    noise = distractors(originals, 12000)
    default = presets.global_index()
    conf = VectorIndexConf(
        name="test", exact_max_vectors=1000, pq_bytes=default.pq_bytes, nprobe=default.nprobe, metric="ip"
    )
    state = VectorFileState("global", None, 0, "none", 0)
    vector_set = VectorSet("global", tmp_path, conf, 512, state)
    added = [(vector_ids(i + 1, 1), originals[i : i + 1]) for i in range(len(NAMES))]
    added += [(vector_ids(1000 + i, 1), noise[i : i + 1]) for i in range(len(noise))]
    vector_set.stage(added, [], lambda: iter(added))
    index = vector_set.index()
    assert layout_of(index).describe().startswith("IVF")
    assert index.code_size == 16
    for number, name in enumerate(NAMES, start=1):
        for transform in ("jpeg40", "resized", "cropped", "padded"):
            copy = extractor.embed([jpeg(BENIGN[transform](photo(name)), 70)])
            _, ids = index.search(copy, 10)
            assert number in (ids[0] >> 16).tolist(), (name, transform)


@pytest.mark.slow
def test_two_stage_search_puts_the_original_first_and_rejects_unknown_images(photo_collection, extractor):
    conf = presets.search()
    for name in ("coffee.png", "rocket.jpg"):
        result = search(photo_collection, jpeg(photo(name)[:, ::-1], 50), conf, embedder=extractor)
        assert result.matches[0].path.endswith(name)
        assert result.matches[0].cosine is not None and result.matches[0].inliers > 0
    unknown = search(photo_collection, jpeg(photo("ihc.png"), 80), conf, embedder=extractor)
    assert unknown.matches == ()


@pytest.mark.parametrize("stage", ["global", "local"])
def test_single_stages(photo_collection, extractor, stage):
    result = search(
        photo_collection, jpeg(photo("chelsea.png"), 60), presets.search(), stage=stage, embedder=extractor
    )
    assert result.matches[0].path.endswith("chelsea.png")
    if stage == "global":
        assert result.matches[0].inliers == 0 and result.matches[0].regions == ()


def test_index_survives_add_remove_readd(tmp_path, photo_paths, extractor, new_db):
    folder = tmp_path / "originals"
    folder.mkdir()
    files = []
    for source in photo_paths[:5]:
        files.append(Path(shutil.copyfile(source, folder / source.name)))
    db = new_db()
    with store_writer(db) as collection:
        index_paths(collection, files)
    with store_writer(db, create=False) as collection:
        remove_paths(collection, [files[0]])
    with store_writer(db, create=False) as collection:
        report = index_paths(collection, files)
    assert len(report.added) == 1 and len(report.unchanged) == 4
    collection = open_store(db)
    assert collection.global_index().ntotal == 5
    assert collection.check(repair=False).problems == []
    query = jpeg(BENIGN["rotated10"](photo(files[0].name)), 60)
    assert search(collection, query, presets.search(), embedder=extractor).matches[0].path == str(files[0])
