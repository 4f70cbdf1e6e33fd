"""The capacity model's formulas: properties on small inputs, and the byte accounting of a real index."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import capacity_model as model
from benchmarks.bench_capacity import compressed_copy, part_bytes, write_scaling_section

PER_IMAGE = model.PerImage(catalogue=150_000, local_index=40_000, global_index=30, object_index=16_000)
NODE = model.NodeSpec(name="test", cores=8, memory_bytes=64 * model.GIB, disk_bytes=model.TIB, usable=0.5)


def test_disk_and_memory_grow_linearly_and_memory_leaves_out_the_catalogue():
    assert model.disk_bytes(10, PER_IMAGE) == 10 * model.disk_bytes(1, PER_IMAGE)
    assert model.disk_bytes(1, PER_IMAGE) == 150_000 + 40_000 + 30 + 16_000
    assert model.memory_bytes(1, PER_IMAGE) == model.disk_bytes(1, PER_IMAGE) - PER_IMAGE.catalogue


def test_images_per_node_is_bound_by_the_scarcer_resource():
    capacity = model.images_per_node(PER_IMAGE, NODE)
    assert capacity == int(min(0.5 * 64 * model.GIB / 56_030, 0.5 * model.TIB / 206_030))
    assert model.memory_bytes(capacity, PER_IMAGE) <= NODE.usable * NODE.memory_bytes
    assert model.disk_bytes(capacity, PER_IMAGE) <= NODE.usable * NODE.disk_bytes
    assert model.binding_resource(PER_IMAGE, NODE) == "memory"
    roomy = model.NodeSpec(name="ram", cores=8, memory_bytes=4 * model.TIB, disk_bytes=model.TIB, usable=0.5)
    assert model.binding_resource(PER_IMAGE, roomy) == "disk"
    assert model.images_per_node(PER_IMAGE, roomy) > capacity


def test_shards_and_extraction_nodes_round_up_and_scale_with_the_work():
    assert model.shards(1, 100) == 1 and model.shards(100, 100) == 1 and model.shards(101, 100) == 2
    one_day = 8 * 86_400 / 0.25  # images one node extracts in a day at 0.25 s per image per core
    assert model.extraction_nodes(one_day, 0.25, NODE, efficiency=1.0) == 1
    assert model.extraction_nodes(one_day + 1, 0.25, NODE, efficiency=1.0) == 2
    assert model.extraction_nodes(one_day, 0.25, NODE, efficiency=0.5) == 2
    assert model.extraction_nodes(one_day, 0.25, NODE, efficiency=1.0, window_s=43_200) == 2


def test_sqrt_law_fit_recovers_its_coefficients_and_stays_non_negative():
    points = [(n, 0.4 + 0.002 * math.sqrt(n)) for n in (1_000, 10_000, 100_000)]
    fit = model.fit_sqrt_law(points)
    assert fit.fixed == pytest.approx(0.4) and fit.per_sqrt == pytest.approx(0.002)
    assert fit.at(1e6) == pytest.approx(2.4)
    falling = model.fit_sqrt_law([(1_000, 0.5), (10_000, 0.4)])
    assert falling.per_sqrt == 0.0 and falling.at(1e9) == pytest.approx(0.45)
    steep = model.fit_sqrt_law([(100, 0.001), (10_000, 1.0)])
    assert steep.fixed == 0.0 and steep.per_sqrt > 0
    assert steep.at(40_000) > steep.at(10_000)
    with pytest.raises(ValueError):
        model.fit_sqrt_law([(10, 1.0), (10, 2.0)])


def test_human_units():
    assert model.human_bytes(512) == "512 B"
    assert model.human_bytes(1536) == "1.5 KiB"
    assert model.human_bytes(5 * model.TIB) == "5.0 TiB"
    assert model.human_count(100_000_000) == "100M" and model.human_count(1_500) == "1.5k"


@pytest.mark.embedded_only
def test_part_bytes_accounts_for_every_part_of_a_real_index(photo_db, photo_paths):
    parts = part_bytes(Path(photo_db))
    assert parts["images"] == len(photo_paths)
    blobs = parts["catalogue_blobs"]
    assert blobs["descriptors"] == 128 * parts["keypoints"]
    assert blobs["keypoints"] == 16 * parts["keypoints"]
    assert blobs["global_vectors"] == 2048 * len(photo_paths)
    assert parts["catalogue"] > sum(blobs.values())
    assert parts["vector_files"]["local"] >= 4 * 128 * parts["keypoints"]


@pytest.mark.embedded_only
def test_the_compressed_copy_holds_every_image_in_44_bytes_per_keypoint(photo_db, photo_paths, tmp_path):
    source = part_bytes(Path(photo_db))
    parts = part_bytes(compressed_copy(Path(photo_db), tmp_path / "pq32"))
    assert (parts["images"], parts["keypoints"]) == (len(photo_paths), source["keypoints"])
    blobs = parts["catalogue_blobs"]
    assert blobs["descriptors"] == 32 * parts["keypoints"] and blobs["keypoints"] == 12 * parts["keypoints"]
    assert blobs["global_vectors"] == source["catalogue_blobs"]["global_vectors"]
    assert "local" not in parts["vector_files"]
    assert parts["catalogue"] < source["catalogue"] / 2


def test_the_capacity_section_replaces_only_its_own_section(tmp_path, monkeypatch):
    doc = tmp_path / "scaling.md"
    monkeypatch.setattr("benchmarks.bench_capacity.SCALING_DOC", doc)
    doc.write_text("# Scaling\n\n## Distributed indexing\n\ntext\n\n## Switching to Milvus\n\nother\n")
    write_scaling_section("## Capacity model\n\nfirst")
    write_scaling_section("## Capacity model\n\nsecond")
    text = doc.read_text()
    assert text.count("## Capacity model") == 1 and "second" in text and "first" not in text
    assert "## Distributed indexing\n\ntext" in text and "## Switching to Milvus\n\nother" in text
