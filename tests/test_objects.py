"""The object stage (OE-SIR): ROIAlign, GeM, whitening, Eq. 7/8, proposals, splice localization,
fusion and roles, and a composite of two real photos found through its objects."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np
import pytest

from imgprov import presets
from imgprov.errors import IndexCorrupt, PresetError
from imgprov.extract.objects.conf import (
    DEFAULT_OBJECTS,
    FusionWeights,
    ProposalConf,
    RetrievalConf,
    WhiteningConf,
    object_preset,
)
from imgprov.extract.objects.detector import Detector, decode_detections, model_path
from imgprov.extract.objects.embed import ObjectWhitening, gem, roi_align
from imgprov.extract.objects.localize import unexplained_regions
from imgprov.extract.objects.proposals import grid_boxes, propose
from imgprov.extract.objects.stage import HostAlignment, ObjectStage, pick_host, searchable
from imgprov.extract.sscd import SSCDExtractor
from imgprov.geometry import box_iou
from imgprov.images import load_image
from imgprov.indexing.pipeline import index_paths, remove_paths
from imgprov.results import Match, Role
from imgprov.search.fusion import (
    Evidence,
    ExplainedRegion,
    FusionScoring,
    ObjectHit,
    image_hits,
    search_objects,
)
from imgprov.search.pipeline import find_candidates, search
from imgprov.search.ranking import ranked_matches
from imgprov.storage import Store, open_store, store_writer
from imgprov.storage.ids import split_ids, vector_ids
from imgprov.storage.records import CollectionPresets
from imgprov.verify import VerifiedRegion
from tests.support import jpeg, photo, write_jpeg


def test_roi_align_matches_a_hand_computed_case():
    # f(row, column) = 4 row + column; bilinear sampling reproduces a linear function exactly.
    ramp = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    # The whole map in 2 x 2 bins, one sample per bin: samples at map coordinates 1 and 3, which are
    # array positions 0.5 and 2.5 (cell i's value sits at i + 0.5).
    whole = roi_align(ramp, np.array([[0, 0, 4, 4]]), output_size=2, sampling_ratio=1)
    np.testing.assert_allclose(whole[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    # Box [1, 3] x [1, 3], 2 x 2 samples per bin: bin means at array positions 1 and 2.
    inner = roi_align(ramp, np.array([[1, 1, 3, 3]]), output_size=2, sampling_ratio=2)
    np.testing.assert_allclose(inner[0, 0], [[5.0, 6.0], [9.0, 10.0]])
    # Cells past the valid 2 x 2 corner are padding: samples clamp to the last valid cell.
    clamped = roi_align(ramp, np.array([[0, 0, 4, 4]]), output_size=1, sampling_ratio=1, valid_cells=(2, 2))
    assert clamped[0, 0, 0, 0] == pytest.approx(5.0)


def test_gem_between_mean_and_max_and_clamps_negatives():
    bins = np.array([[[[1.0, 3.0], [-2.0, 0.0]]]], np.float32)
    pooled = gem(bins, p=3.0)
    positive = np.array([1.0, 3.0, 1e-6, 1e-6])
    assert pooled.shape == (1, 1)
    assert pooled[0, 0] == pytest.approx(np.mean(positive**3) ** (1 / 3), rel=1e-5)
    assert gem(bins, p=1.0)[0, 0] == pytest.approx(positive.mean(), rel=1e-5)


def test_whitening_round_trip_and_whitens_its_sample():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(500, 32)) * np.linspace(0.1, 5.0, 32)
    whitening = ObjectWhitening.fit(sample, WhiteningConf(dim=16, shrinkage=0.0))
    projected = (sample - whitening.mean) @ whitening.projection
    np.testing.assert_allclose(np.cov(projected.T), np.eye(16), atol=1e-3)
    vectors = whitening.transform(sample[:5])
    assert vectors.shape == (5, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    restored = ObjectWhitening.from_bytes(whitening.to_bytes())
    np.testing.assert_array_equal(restored.mean, whitening.mean)
    np.testing.assert_array_equal(restored.projection, whitening.projection)
    with pytest.raises(IndexCorrupt):
        ObjectWhitening.from_bytes(b"not an npz file")
    assert ObjectWhitening.fit(sample[:5], WhiteningConf(dim=16)).dim == 4


def test_eq7_minimum_pairwise_distance_and_eq8_pair():
    # Two query objects, three neighbours each; image 7 is reached by both, best through (1, 2).
    ids = np.array([[(7 << 16) | 0, (9 << 16) | 1, -1], [(9 << 16) | 0, (7 << 16) | 2, (3 << 16) | 5]])
    distances = np.array([[0.9, 0.5, 0.0], [0.6, 0.2, 1.5]], np.float32)
    hits = image_hits(distances, ids)
    assert [hit.image_id for hit in hits] == [7, 9, 3]
    assert hits[0] == ObjectHit(image_id=7, distance=pytest.approx(0.2), query_object=1, match_object=2)
    assert (hits[1].query_object, hits[1].match_object) == (0, 1)
    assert hits[0].similarity == pytest.approx(0.9)


def test_search_objects_over_a_faiss_index():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3, 4, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(8))
    for image_id in range(3):
        index.add_with_ids(vectors[image_id], vector_ids(image_id, 4))
    query = np.stack([rng.normal(size=8), vectors[2, 3]]).astype(np.float32)
    query[0] /= np.linalg.norm(query[0])
    hits = search_objects(index, query, neighbours=12)
    assert hits[0].image_id == 2 and (hits[0].query_object, hits[0].match_object) == (1, 3)
    assert hits[0].distance == pytest.approx(0.0, abs=1e-5)
    assert sorted(hit.image_id for hit in hits) == [0, 1, 2]


@pytest.mark.parametrize("method", ["grid", "selective", "saliency"])
def test_proposals_are_inside_the_image(method):
    image = photo("coffee.png")
    height, width = image.shape[:2]
    boxes = propose(image, ProposalConf(method=method, max_objects=8))
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4 and 1 <= len(boxes) <= 8
    np.testing.assert_array_equal(boxes[0], [0, 0, width, height])
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_grid_layout_and_invalid_presets():
    boxes = grid_boxes((300, 200), levels=3)
    assert len(boxes) == 4 + 9
    # Level 2: four regions of 2/3 the width and height; level 3 starts with its central region.
    np.testing.assert_allclose(boxes[0], [0, 0, 200, 400 / 3])
    np.testing.assert_allclose(boxes[4], [75, 50, 225, 150])
    with pytest.raises(PresetError):
        ProposalConf(method="magic", max_objects=8)
    with pytest.raises(PresetError):
        object_preset("no-such-preset")


def test_detector_decoding_finds_peaks_and_boxes():
    heat = np.zeros((80, 128, 128), np.float32)
    heat[17, 40, 30] = 0.9  # a cat centred on cell (x 30, y 40)
    heat[17, 40, 31] = 0.5  # its neighbour is not a peak
    heat[0, 100, 100] = 0.3
    extent = np.zeros((4, 128, 128), np.float32)
    extent[:, 40, 30] = (10, 20, 30, 40)
    boxes, scores, classes = decode_detections(heat, extent, max_detections=100, min_score=0.2)
    assert classes.tolist() == [17, 0] and scores[0] == pytest.approx(0.9)
    np.testing.assert_allclose(boxes[0], [4 * 30 - 10, 4 * 40 - 20, 4 * 30 + 30, 4 * 40 + 40])


@pytest.mark.skipif(
    not model_path().is_file(), reason="the detector is converted by scripts/convert_centernet.py"
)
def test_detector_finds_the_astronaut():
    image = photo("astronaut.png")
    detections = Detector(intra_op_threads=1).detect(image, min_score=0.3)
    assert detections.classes[0] == 0  # COCO "person"
    assert box_iou(detections.boxes[:1].astype(np.float64), np.array([[0.0, 0.0, 380.0, 512.0]]))[0, 0] > 0.7


def _verified(box: tuple[float, float, float, float], inliers: int) -> VerifiedRegion:
    """A verified region of the query with the identity transform (no inlier points needed)."""
    empty = np.zeros((0, 2), np.float32)
    return VerifiedRegion(box, box, inliers, 0.5, np.eye(3), empty, empty)


def test_pick_host_prefers_the_region_covering_most_of_the_query():
    small = (1, _verified((0.0, 0.0, 40.0, 40.0), 300))
    large = (2, _verified((0.0, 0.0, 90.0, 80.0), 60))
    assert pick_host([small, large], (100, 100), min_coverage=0.25) is large
    assert pick_host([small], (100, 100), min_coverage=0.25) is None


def test_unexplained_regions_find_a_pasted_region():
    host = photo("astronaut.png")
    donor = photo("coffee.png")
    query = host.copy()
    query[300:420, 200:360] = donor[100:220, 250:410]
    query = jpeg(query, 80)
    boxes = unexplained_regions(query, host, np.eye(3))
    assert len(boxes) >= 1
    assert box_iou(boxes[:1].astype(np.float64), np.array([[200.0, 300.0, 360.0, 420.0]]))[0, 0] > 0.7
    assert len(unexplained_regions(jpeg(host, 80), host, np.eye(3))) == 0


def _fused(
    evidence: list[Evidence], query_size: tuple[int, int], conf: RetrievalConf, unconfirmed: bool = False
) -> tuple[list[Match], list[Match]]:
    """The matches and unconfirmed candidates the ranker makes of the evidence with the fusion model."""
    return ranked_matches(
        evidence, FusionScoring(conf), query_size, _paths, top_k=10, unconfirmed=unconfirmed
    )


def _paths(image_ids: list[int]) -> dict[int, str]:
    """A made-up file for each image id."""
    return {image_id: f"/{image_id}.png" for image_id in image_ids}


def test_fusion_ranks_and_gives_roles():
    whole = (0.0, 0.0, 100.0, 100.0)
    host = Evidence(
        image_id=1,
        cosine=0.9,
        inliers=200,
        support=0.6,
        regions=(ExplainedRegion(whole, whole, "local", 200),),
    )
    donor = Evidence(
        image_id=2,
        cosine=0.1,
        objects=ObjectHit(image_id=2, distance=0.2, query_object=1, match_object=3),
        object_region=ExplainedRegion((10.0, 10.0, 30.0, 40.0), (0.0, 0.0, 50.0, 60.0), "objects"),
    )
    stranger = Evidence(image_id=3, cosine=0.05)
    weights = FusionWeights(
        bias=-5.0, local=1.0, support=1.0, cosine=2.0, os2os=1.0, objects=6.0, threshold=0.5
    )
    conf = RetrievalConf(fusion=weights)
    matches, below = _fused([stranger, donor, host], (100, 100), conf)
    assert [match.image_id for match in matches] == [1, 2] and below == []
    assert [match.role for match in matches] == [Role.HOST, Role.DONOR]
    pair = matches[1].object_pair
    assert (pair.query_object, pair.match_object) == (1, 3) and matches[1].coverage == pytest.approx(0.06)
    matches, below = _fused([stranger, donor, host], (100, 100), conf, unconfirmed=True)
    assert [m.image_id for m in matches] == [1, 2] and [(m.image_id, m.rank) for m in below] == [(3, 3)]


def test_an_unconfirmed_candidate_is_never_the_host():
    whole = (0.0, 0.0, 100.0, 100.0)
    near_duplicate = Evidence(image_id=1, cosine=0.9)
    small = ExplainedRegion((10.0, 10.0, 30.0, 40.0), (0.0, 0.0, 50.0, 60.0), "local", 30)
    donor = Evidence(image_id=2, cosine=0.1, inliers=30, support=0.5, regions=(small,))
    weights = FusionWeights(
        bias=-3.0, local=1.0, support=1.0, cosine=2.0, os2os=1.0, objects=6.0, threshold=0.6
    )
    conf = RetrievalConf(fusion=weights, host_cosine=0.8)
    matches, below = _fused([near_duplicate, donor], (100, 100), conf, unconfirmed=True)
    assert [m.image_id for m in matches] == [2] and [m.image_id for m in below] == [1]
    assert below[0].regions[0].query_box == whole, "a near-duplicate explains the whole query"
    assert [m.role for m in matches + below] == [Role.DONOR, None], "the host must be a match"


def test_a_donor_found_without_its_host_stays_a_donor():
    query_size = (512, 512)
    lone = Evidence(
        image_id=2,
        cosine=0.1,
        objects=ObjectHit(2, 0.2, 1, 0),
        object_region=ExplainedRegion((100.0, 100.0, 200.0, 220.0), (0.0, 0.0, 10.0, 10.0), "objects"),
    )
    weights = FusionWeights(
        bias=-5.0, local=1.0, support=1.0, cosine=2.0, os2os=1.0, objects=6.0, threshold=0.5
    )
    matches, _ = _fused([lone], query_size, RetrievalConf(fusion=weights))
    assert [m.image_id for m in matches] == [2]
    assert matches[0].coverage < RetrievalConf().host_coverage and matches[0].role == Role.DONOR


def _paste_object(host: np.ndarray, donor: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A box around the donor's centre, a fifth of its area, pasted near the host's bottom-left
    corner and recompressed; returns the query and the pasted box (x0, y0, x1, y1)."""
    height, width = donor.shape[:2]
    cut_h, cut_w = round(height * np.sqrt(0.2)), round(width * np.sqrt(0.2))
    top, left = (height - cut_h) // 2, (width - cut_w) // 2
    y0, x0 = host.shape[0] - cut_h - 20, 30
    composite = host.copy()
    composite[y0 : y0 + cut_h, x0 : x0 + cut_w] = donor[top : top + cut_h, left : left + cut_w]
    return jpeg(composite, 80), (x0, y0, x0 + cut_w, y0 + cut_h)


@dataclass(frozen=True)
class ObjectIndex:
    """The default object stage's objects of every photo of the test collection."""

    stage: ObjectStage
    index: faiss.Index
    boxes: dict[int, np.ndarray]
    ids_by_name: dict[str, int]


@pytest.fixture(scope="module")
def object_index(photo_collection: Store) -> ObjectIndex:
    stage = ObjectStage(object_preset())
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(stage.embedder.dim))
    boxes, ids_by_name = {}, {}
    for record in photo_collection.catalogue.all_images():
        objects = stage.collection_objects(load_image(record.path).pixels)
        index.add_with_ids(objects.vectors, vector_ids(record.id, len(objects)))
        boxes[record.id] = objects.boxes
        ids_by_name[Path(record.path).name] = record.id
    return ObjectIndex(stage, index, boxes, ids_by_name)


def _provenance(collection: Store, objects: ObjectIndex, query: np.ndarray) -> list[Match]:
    """The search the lead wires in: imgprov's stages, the host's unexplained regions, Eq. 7/8, fusion."""
    query_size = (query.shape[1], query.shape[0])
    conf = objects.stage.conf.retrieval
    found = find_candidates(collection, query, presets.search(), stage="both")
    verified = [(c.image_id, r) for c in found.items for r in c.regions]
    host = pick_host(verified, query_size, conf.host_min_coverage)
    alignment = None
    if host is not None:
        host_id, region = host
        alignment = HostAlignment(
            load_image(collection.images([host_id])[host_id].path).pixels, region.transform
        )
    query_objects = objects.stage.query_objects(query, alignment)
    hits = search_objects(objects.index, searchable(query_objects.vectors, None), conf.neighbours)
    evidence = {
        c.image_id: Evidence(
            image_id=c.image_id,
            cosine=c.cosine,
            os2os=c.votes.score if c.votes is not None else 0.0,
            inliers=sum(r.inliers for r in c.regions),
            support=max((r.support for r in c.regions), default=0.0),
            regions=tuple(ExplainedRegion(r.query_box, r.match_box, "local", r.inliers) for r in c.regions),
        )
        for c in found.items
    }
    embedding = SSCDExtractor(collection.global_conf).embed([query])[0]
    stored = collection.embeddings([hit.image_id for hit in hits])
    for hit in hits:
        region = ExplainedRegion(
            tuple(query_objects.boxes[hit.query_object]),
            tuple(objects.boxes[hit.image_id][hit.match_object]),
            "objects",
        )
        current = evidence.get(
            hit.image_id, Evidence(hit.image_id, cosine=float(stored[hit.image_id] @ embedding))
        )
        evidence[hit.image_id] = replace(current, objects=hit, object_region=region)
    matches, _ = ranked_matches(
        list(evidence.values()), FusionScoring(conf), query_size, _paths, top_k=10, unconfirmed=False
    )
    return matches


@pytest.mark.parametrize(
    ("host_name", "donor_name"),
    [("rocket.jpg", "chelsea.png"), ("coffee.png", "astronaut.png"), ("motorcycle_left.png", "camera.png")],
)
def test_a_pasted_object_retrieves_host_and_donor(photo_collection, object_index, host_name, donor_name):
    query, pasted = _paste_object(photo(host_name), photo(donor_name))
    matches = _provenance(photo_collection, object_index, query)
    names = {image_id: name for name, image_id in object_index.ids_by_name.items()}
    reported = [names[match.image_id] for match in matches]
    assert reported[0] == host_name and matches[0].role == Role.HOST
    assert donor_name in reported[:10]
    donor = matches[reported.index(donor_name)]
    assert donor.role == Role.DONOR
    overlaps = box_iou(
        np.array([region.query_box for region in donor.regions]), np.array([pasted], np.float64)
    )
    assert overlaps.max() > 0.5


# --- objects in the index: `imgprov index --objects`, `search()`, remove, check ---------------------

PASTED_PAIRS = [
    ("rocket.jpg", "chelsea.png"),
    ("coffee.png", "astronaut.png"),
    ("motorcycle_left.png", "camera.png"),
]


@pytest.fixture(scope="module")
def objects_db(new_db, photo_paths) -> str:
    """The test photos indexed with the default object preset."""
    db = new_db()
    with store_writer(db, presets=CollectionPresets(objects=DEFAULT_OBJECTS)) as collection:
        report = index_paths(collection, photo_paths)
    assert not report.failed and len(report.added) == len(photo_paths)
    return db


@pytest.mark.parametrize(("host_name", "donor_name"), PASTED_PAIRS)
def test_search_of_an_index_with_objects_finds_host_and_donor(objects_db, host_name, donor_name):
    query, pasted = _paste_object(photo(host_name), photo(donor_name))
    collection = open_store(objects_db)
    try:
        result = search(collection, query, presets.search(), top_k=10)
    finally:
        collection.close()
    names = [Path(match.path).name for match in result.matches]
    assert names[0] == host_name and result.matches[0].role == Role.HOST
    assert donor_name in names
    donor = result.matches[names.index(donor_name)]
    assert donor.role == Role.DONOR
    boxes = np.array([region.query_box for region in donor.regions], np.float64)
    assert box_iou(boxes, np.array([pasted], np.float64)).max() > 0.5
    assert "objects" in result.timings


@pytest.mark.slow
def test_unconfirmed_candidates_continue_the_ranking_below_the_threshold(objects_db):
    query, _ = _paste_object(photo("coffee.png"), photo("astronaut.png"))
    collection = open_store(objects_db)
    try:
        plain = search(collection, query, presets.search(), top_k=5)
        ranked = search(collection, query, presets.search(), top_k=5, unconfirmed=True)
        threshold = collection.object_stage().conf.retrieval.fusion.threshold
    finally:
        collection.close()
    assert plain.unconfirmed == () and ranked.matches == plain.matches
    assert ranked.unconfirmed, "the index holds more photos than the query is made of"
    assert len(ranked.matches) + len(ranked.unconfirmed) <= 5
    assert [m.rank for m in ranked.matches + ranked.unconfirmed] == list(
        range(1, len(ranked.matches) + len(ranked.unconfirmed) + 1)
    )
    scores = [m.score for m in ranked.unconfirmed]
    assert scores == sorted(scores, reverse=True) and max(scores) < threshold <= ranked.matches[-1].score
    assert all(m.role is None for m in ranked.unconfirmed)


def test_index_with_objects_stores_them_and_check_agrees(objects_db, photo_paths):
    collection = open_store(objects_db)
    try:
        ids = [record.id for record in collection.catalogue.all_images()]
        stored = collection.objects(ids)
        assert sorted(stored) == ids
        assert all(1 <= len(objects) <= 8 and objects.vectors.shape[1] == 512 for objects in stored.values())
        total = sum(len(objects) for objects in stored.values())
        assert collection.object_index().ntotal == total
        report = collection.check(repair=False)
        assert report.ok and not report.problems and report.vectors["objects"] == total
    finally:
        collection.close()


def test_remove_deletes_objects(new_db, tmp_path, photo_paths):
    db = new_db()
    chosen = []
    for path in photo_paths:
        if path.name in ("coffee.png", "chelsea.png", "camera.png"):
            chosen.append(tmp_path / path.name)
            chosen[-1].write_bytes(path.read_bytes())
    with store_writer(db, presets=CollectionPresets(objects=DEFAULT_OBJECTS)) as collection:
        index_paths(collection, chosen)
        before = collection.object_index().ntotal
        gone = collection.catalogue.image_by_path(str(chosen[0].resolve()))
        gone_objects = collection.objects([gone.id])[gone.id]
        removed, _ = remove_paths(collection, [chosen[0]])
        assert removed == [gone.path]
        assert collection.objects([gone.id]) == {}
        kept = collection.objects([record.id for record in collection.catalogue.all_images()])
        assert len(kept) == 2 and collection.object_index().ntotal == before - len(gone_objects)
    collection = open_store(db)
    try:
        assert images_found(collection, gone_objects.vectors) == set(kept), "the removed image's objects"
        assert collection.object_index().ntotal == sum(len(objects) for objects in kept.values())
        assert collection.check(repair=False).ok
    finally:
        collection.close()
    with pytest.raises(PresetError), store_writer(db, presets=CollectionPresets(objects="none")):
        pass


def images_found(collection: Store, raw_vectors: np.ndarray) -> set[int]:
    """The images of the objects a search for `raw_vectors` (raw object embeddings) finds when it
    asks for as many neighbours as the object index holds."""
    index = collection.object_index()
    _, ids = index.search(collection.searchable(raw_vectors), index.ntotal)
    image_ids, _ = split_ids(ids[ids >= 0])
    return set(image_ids.tolist())


WHITENED_OBJECTS = "oesir-grid-k8-effnet512-w256"


def test_whitened_objects_are_learned_on_the_collection(new_db, photo_paths):
    db = new_db()
    with store_writer(db, presets=CollectionPresets(objects=WHITENED_OBJECTS)) as collection:
        index_paths(collection, photo_paths[:3], batch_size=1)
        assert collection.catalogue.meta("objects.whitening.trained_on") == "24"
    collection = open_store(db)
    try:
        stored = collection.objects([record.id for record in collection.catalogue.all_images()])
        vectors = collection.searchable(np.concatenate([objects.vectors for objects in stored.values()]))
        assert vectors.shape == (24, 256) and collection.object_index().ntotal == 24
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        distances, _ = collection.object_index().search(vectors, 1)
        assert distances.max() < 1e-4, "the object index holds the whitened vectors"
        assert collection.check(repair=False).ok
    finally:
        collection.close()


@pytest.mark.slow
def test_cli_search_json_and_overlay_of_a_composite(new_db, tmp_path, photo_paths):
    db = new_db()
    chosen = [path for path in photo_paths if path.name in ("coffee.png", "astronaut.png", "rocket.jpg")]
    done = _imgprov("index", "--db", db, "--objects", DEFAULT_OBJECTS, *map(str, chosen))
    assert done.returncode == 0, done.stderr
    query, pasted = _paste_object(photo("coffee.png"), photo("astronaut.png"))
    query_path = write_jpeg(tmp_path / "composite.jpg", query, 95)
    overlay = tmp_path / "overlay.png"
    done = _imgprov(
        "search", "--db", db, "--json", "--unconfirmed", "--overlay", str(overlay), str(query_path)
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    matches = {Path(m["path"]).name: m for m in result["matches"]}
    assert [Path(m["path"]).name for m in result["unconfirmed"]] == ["rocket.jpg"]
    assert result["unconfirmed"][0]["rank"] == 3 and result["unconfirmed"][0]["role"] is None
    assert matches["coffee.png"]["role"] == "host" and matches["astronaut.png"]["role"] == "donor"
    donor = matches["astronaut.png"]
    assert donor["object_pair"] is not None and {r["source"] for r in donor["regions"]} <= {
        "local",
        "objects",
    }
    boxes = np.array([r["query_box"] for r in donor["regions"]], np.float64)
    assert box_iou(boxes, np.array([pasted], np.float64)).max() > 0.5
    assert overlay.stat().st_size > 1000
    info = json.loads(_imgprov("info", "--db", db, "--json").stdout)
    assert info["objects_preset"] == DEFAULT_OBJECTS and info["object_vectors"] > 3
    assert _imgprov("remove", "--db", db, str(chosen[0])).returncode == 0
    done = _imgprov("check", "--db", db)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout


def _imgprov(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imgprov", *args], capture_output=True, text=True, timeout=600
    )
