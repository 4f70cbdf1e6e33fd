"""OS2OS voting (paper 002, Eq. 1-11) on hand-computed values and synthetic scenes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgprov.extract.rootsift import LocalFeatures
from imgprov.presets import OS2OSConf
from imgprov.search.os2os import (
    angle_coherence_score,
    centrality_score,
    match_affinity,
    os2os_candidates,
    os2os_score,
    vote_window,
)
from imgprov.storage.ids import vector_ids

CONF = OS2OSConf(name="test", knn=4, phi=2, window_scale=0.5, window_eps=0.5, min_cluster_votes=4)


def test_affinity_is_rank_adaptive():
    distances = np.array([[1.0, 4.0, 9.0, 16.0]], np.float32)
    ids = np.array([[10, 11, 12, 13]])
    assert match_affinity(distances, ids, phi=2).tolist() == [[2.0, 1.0, 0.0, 0.0]]


def test_affinity_ignores_missing_neighbours():
    distances = np.array([[1.0, 4.0, np.inf, np.inf]], np.float32)
    ids = np.array([[10, 11, -1, -1]])
    affinity = match_affinity(distances, ids, phi=2)
    assert affinity[0, 2] == 0 and affinity[0, 3] == 0
    assert affinity[0, 0] == pytest.approx(1.0)


def test_vote_window_grows_sublinearly():
    assert vote_window(100, 100, CONF) == pytest.approx(0.5 * 10000**0.4)
    assert vote_window(200, 200, CONF) / vote_window(100, 100, CONF) == pytest.approx(4**0.4)


def test_scores_of_a_perfect_cluster():
    assert centrality_score(np.ones((5, 2)), window=10.0) == pytest.approx(1.0)
    assert angle_coherence_score(np.full(5, 0.3)) == pytest.approx(1.0)
    assert os2os_score(1.0, 1.0, 10) == pytest.approx(math.log(10))


def test_angle_coherence_wraps_around():
    assert angle_coherence_score(np.array([np.pi - 0.01, -np.pi + 0.01])) > 0.98


def similarity(points: np.ndarray, scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return scale * points @ rotation.T + np.array(shift)


def scene(rng, count: int, box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.column_stack([rng.uniform(x0, x1, count), rng.uniform(y0, y1, count)])


def features(points: np.ndarray, scales: np.ndarray, angles: np.ndarray, size=(640, 480)) -> LocalFeatures:
    return LocalFeatures(
        keypoints=points.astype(np.float32),
        scales=scales.astype(np.float32),
        angles=angles.astype(np.float32),
        descriptors=np.zeros((len(points), 128), np.uint8),
        image_size=size,
    )


def run_votes(
    query: LocalFeatures, image_geometry: dict[int, np.ndarray], neighbours: list[tuple[int, int, int]]
):
    """neighbours: (query keypoint, image id, image keypoint), each the 1st of K=4 neighbours."""
    distances = np.full((len(query), 4), 100.0, np.float32)
    ids = np.full((len(query), 4), -1, np.int64)
    distances[:, 0] = 0.01
    for query_index, image_id, item in neighbours:
        ids[query_index, 0] = vector_ids(image_id, item + 1)[item]
    ids[:, 1:] = 999 << 16
    return os2os_candidates(
        query,
        distances,
        ids,
        lambda wanted: {i: image_geometry[i] for i in wanted if i in image_geometry},
        lambda wanted: {i: (640, 480) for i in wanted},
        CONF,
    )


def test_one_object_under_a_similarity_gathers_one_cluster():
    rng = np.random.default_rng(0)
    query_points = scene(rng, 40, (100, 100, 300, 250))
    query = features(query_points, rng.uniform(2, 10, 40), rng.uniform(-np.pi, np.pi, 40))
    scale, angle = 1.5, 0.4
    image_points = similarity(query_points, scale, angle, (50.0, -20.0))
    geometry = np.column_stack([image_points, query.scales * scale, query.angles + angle]).astype(np.float32)
    candidates = run_votes(query, {7: geometry}, [(i, 7, i) for i in range(40)])
    assert [candidate.image_id for candidate in candidates] == [7]
    best = candidates[0].clusters[0]
    assert len(best) == 40
    assert best.centrality == pytest.approx(1.0, abs=1e-6)
    assert best.angle_coherence == pytest.approx(1.0, abs=1e-6)
    assert np.ptp(best.votes, axis=0).max() < 1e-3


def test_two_objects_give_two_clusters_and_outliers_are_left_out():
    rng = np.random.default_rng(1)
    host = scene(rng, 60, (0, 0, 600, 450))
    donor = scene(rng, 25, (400, 50, 520, 170))
    noise = scene(rng, 15, (0, 0, 640, 480))
    points = np.vstack([host, donor, noise])
    query = features(points, rng.uniform(2, 10, 100), rng.uniform(-np.pi, np.pi, 100))
    host_points = similarity(host, 1.0, 0.0, (5.0, 5.0))
    donor_points = similarity(donor, 0.5, -0.7, (100.0, 300.0))
    geometry = np.column_stack(
        [
            np.vstack([host_points, donor_points, scene(rng, 15, (0, 0, 640, 480))]),
            np.concatenate([query.scales[:60], query.scales[60:85] * 0.5, rng.uniform(2, 10, 15)]),
            np.concatenate([query.angles[:60], query.angles[60:85] - 0.7, rng.uniform(-3, 3, 15)]),
        ]
    ).astype(np.float32)
    candidates = run_votes(query, {3: geometry}, [(i, 3, i) for i in range(100)])
    sizes = sorted((len(cluster) for cluster in candidates[0].clusters), reverse=True)
    assert sizes[:2] == [60, 25]
    members = [set(cluster.query_index.tolist()) for cluster in candidates[0].clusters[:2]]
    assert members[0] == set(range(60)) and members[1] == set(range(60, 85))


def test_one_to_one_within_a_cluster():
    rng = np.random.default_rng(2)
    query_points = scene(rng, 10, (100, 100, 200, 200))
    query = features(query_points, np.full(10, 4.0), np.zeros(10))
    geometry = np.column_stack([query_points, np.full(10, 4.0), np.zeros(10)]).astype(np.float32)
    distances = np.full((10, 4), 100.0, np.float32)
    distances[:, :2] = 0.01
    ids = np.full((10, 4), 999 << 16, np.int64)
    ids[:, 0] = vector_ids(5, 10)
    ids[1:, 1] = vector_ids(5, 1)[0]
    candidates = os2os_candidates(
        query, distances, ids, lambda w: {5: geometry}, lambda w: {5: (640, 480)}, CONF
    )
    cluster = candidates[0].clusters[0]
    assert len(set(cluster.match_index.tolist())) == len(cluster)
    assert len(set(cluster.query_index.tolist())) == len(cluster)
