"""Benchmark query sets and comparator pairs, generated deterministically with exact ground truth.

Query kinds (papers 004/003 section 4.1, 000 section 4.3):

* ``benign``: a benign transform of an original; relevant = that original.
* ``manip``: one editor's change of an original; relevant = the original (+ the donor of a photo
  splice, role ``donor``).
* ``manip+benign``: a manipulation then a benign transform; the mask is carried through it.
* ``composite``: regions of 1-3 donor photos pasted into a host; relevant = host + every donor,
  each donor with its own mask, source box and homography.
* ``distinct``: a benign transform of a held-out photo (not in the collection); nothing relevant.

Photos are given as ``{photo_id: path}`` (or a sequence of paths, id = file stem). Each item draws
from its own generator ``default_rng([seed, kind code, index])``, so the same seed writes the same
bytes, and asking for more items leaves the first ones unchanged. Images and masks are written as
PNG (lossless: the mask stays exact on disk); ``save_query_set`` / ``load_query_set`` keep the
whole set in ``queries.json`` with paths relative to its folder.
"""

from __future__ import annotations

import copy
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from benchmarks.transforms import (
    MANIP_KINDS,
    Box,
    DonorPaste,
    Edit,
    JsonDict,
    Transformed,
    benign_transform,
    carry_edit,
    carry_pastes,
    composite,
    identity_transform,
    manipulate,
)

QUERY_KINDS = ("benign", "manip", "manip+benign", "composite", "distinct")
PAIR_KINDS = ("benign", "manip", "manip+benign", "distinct")
PAIR_LABELS = {
    "benign": "benign",
    "manip": "manipulated",
    "manip+benign": "manipulated",
    "distinct": "distinct",
}
ROLE_ORIGINAL = "original"
ROLE_HOST = "host"
ROLE_DONOR = "donor"
QUERIES_FILE = "queries.json"
PAIRS_FILE = "pairs.json"
QUERIES_FORMAT = "imgprov-queries/1"
PAIRS_FORMAT = "imgprov-pairs/1"

PhotoSource = Mapping[str, str | Path] | Sequence[str | Path]
Matrix = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


# --- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelevantImage:
    """A collection image a query is made of.

    role: "original" (benign / manip queries), "host" or "donor" (composites and photo splices).
    homography: H_query_from_this_image, when known.
    mask_path: PNG (H, W) of the query pixels that came from this image (donors only).
    source_box / query_box: (left, top, right, bottom) of the cut in this image / in the query.
    """

    image_id: str
    role: str
    homography: Matrix | None = None
    mask_path: Path | None = None
    source_box: Box | None = None
    query_box: Box | None = None


@dataclass(frozen=True)
class Query:
    """One query image and its ground truth.

    source_id: the photo the query was made from (original, host or held-out photo).
    relevant: the collection images it is made of (empty for distinct queries).
    related: collection images of the same scene that are not relevant (ignored when scoring).
    homography: H_query_from_source; None for distinct queries.
    mask_path: PNG (H, W), 255 = pixels an editor changed; None for distinct queries.
    valid_path: PNG (H, W), 255 = pixels that came from the source; None for distinct queries.
    ops: the operations applied, in order (JSON-serialisable).
    """

    query_id: str
    kind: str
    image_path: Path
    source_id: str
    relevant: tuple[RelevantImage, ...]
    related: tuple[str, ...]
    ops: tuple[JsonDict, ...]
    homography: Matrix | None
    mask_path: Path | None
    valid_path: Path | None

    def relevant_ids(self, roles: Iterable[str] | None = None) -> frozenset[str]:
        """Ids of the relevant images, optionally only those with one of `roles`."""
        wanted = None if roles is None else set(roles)
        return frozenset(r.image_id for r in self.relevant if wanted is None or r.role in wanted)


@dataclass(frozen=True)
class Pair:
    """A (query, original) pair for the comparator.

    label: "benign", "manipulated" or "distinct".
    mask_path: PNG (H, W) in the query frame: the changed pixels; all 255 for a distinct pair (paper
    004 scores a "distinct" answer as a full mask), all 0 for a benign one.
    homography: H_query_from_original; None for a distinct pair.
    """

    pair_id: str
    kind: str
    label: str
    query_path: Path
    original_id: str
    original_path: Path
    mask_path: Path
    valid_path: Path | None
    homography: Matrix | None
    ops: tuple[JsonDict, ...]


@dataclass(frozen=True, eq=False)
class _Sample:
    """One generated query before it is written: relevant donors carry their masks in memory."""

    transformed: Transformed
    source_id: str
    relevant: tuple[tuple[str, str], ...]
    pastes: tuple[tuple[str, DonorPaste], ...]


@dataclass(frozen=True)
class _Photos:
    originals: dict[str, Path]
    held_out: dict[str, Path]
    donors: dict[str, Path]
    stamps: tuple[Path, ...]


# --- loading ---------------------------------------------------------------------------------------


def photo_paths(photos: PhotoSource) -> dict[str, Path]:
    """{photo_id: path} sorted by id; a sequence of paths is keyed by file stem (must be unique)."""
    if isinstance(photos, Mapping):
        items = [(str(key), Path(path)) for key, path in photos.items()]
    else:
        items = [(Path(path).stem, Path(path)) for path in photos]
    ids = [photo_id for photo_id, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError("photo ids are not unique (two paths share a file stem?)")
    return dict(sorted(items))


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 pixels as a viewer shows them (EXIF orientation applied)."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB")).copy()


def load_rgba(path: Path) -> np.ndarray:
    """(H, W, 4) uint8 pixels with alpha (EXIF orientation applied)."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGBA")).copy()


def load_mask(path: Path) -> np.ndarray:
    """(H, W) bool from a mask PNG written here (nonzero = True)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 0


# --- generation ------------------------------------------------------------------------------------


def generate_query_set(
    originals: PhotoSource,
    held_out: PhotoSource,
    donors: PhotoSource,
    stamps: Sequence[str | Path],
    kind: str,
    count: int,
    seed: int,
    out_dir: Path,
    scenes: Mapping[str, str] | None = None,
) -> list[Query]:
    """Make `count` queries of `kind` (one of QUERY_KINDS), writing their files under out_dir.

    originals and donors form the collection; held_out photos are outside it (distinct queries).
    Splices use an RGBA stamp when `stamps` is not empty, else a cut of a donor photo (another
    original when there are no donors). scenes: {photo_id: scene label} of collection and held-out
    photos; collection photos sharing a scene with the query's source or relevant images (and not
    relevant themselves) are listed as related. Call `save_query_set` to write queries.json.
    """
    _check_kind(kind, QUERY_KINDS)
    photos = _photos(originals, held_out, donors, stamps)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    queries = []
    for index in range(count):
        rng = _item_rng(seed, kind, index)
        sample = _make_sample(kind, photos, rng)
        query_id = f"{_slug(kind)}-{index:05d}"
        queries.append(_write_query(query_id, kind, sample, photos, scenes or {}, out_dir))
    return queries


def generate_pairs(
    originals: PhotoSource,
    held_out: PhotoSource,
    donors: PhotoSource,
    stamps: Sequence[str | Path],
    kind: str,
    count: int,
    seed: int,
    out_dir: Path,
) -> list[Pair]:
    """Make `count` comparator pairs of `kind` (one of PAIR_KINDS), writing their files under out_dir.

    A distinct pair joins a random original with a benign transform of a held-out photo (of another
    original when there are no held-out photos). Call `save_pairs` to write pairs.json.
    """
    _check_kind(kind, PAIR_KINDS)
    photos = _photos(originals, held_out, donors, stamps)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(count):
        rng = _item_rng(seed, "pair:" + kind, index)
        pair_id = f"pair-{_slug(kind)}-{index:05d}"
        if kind == "distinct":
            pairs.append(_write_distinct_pair(pair_id, photos, rng, out_dir))
        else:
            sample = _make_sample(kind, photos, rng)
            pairs.append(_write_pair(pair_id, kind, sample, photos, out_dir))
    return pairs


def _check_kind(kind: str, kinds: Sequence[str]) -> None:
    if kind not in kinds:
        raise ValueError(f"unknown kind {kind!r}; expected one of {tuple(kinds)}")


def _photos(
    originals: PhotoSource, held_out: PhotoSource, donors: PhotoSource, stamps: Sequence[str | Path]
) -> _Photos:
    photos = _Photos(
        photo_paths(originals), photo_paths(held_out), photo_paths(donors), tuple(map(Path, stamps))
    )
    if not photos.originals:
        raise ValueError("no originals given")
    return photos


def _item_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(kind.encode()), index])


def _slug(kind: str) -> str:
    return kind.replace("+", "_")


def _pick(photos: Mapping[str, Path], rng: np.random.Generator, exclude: str | None = None) -> str:
    candidates = [photo_id for photo_id in photos if photo_id != exclude]
    if not candidates:
        raise ValueError("not enough photos to pick a different one")
    return candidates[int(rng.integers(len(candidates)))]


def _make_sample(kind: str, photos: _Photos, rng: np.random.Generator) -> _Sample:
    if kind == "benign":
        return _benign_sample(photos, rng)
    if kind in ("manip", "manip+benign"):
        return _manip_sample(photos, rng, then_benign=kind == "manip+benign")
    if kind == "composite":
        return _composite_sample(photos, rng)
    return _distinct_sample(photos, rng)


def _benign_sample(photos: _Photos, rng: np.random.Generator) -> _Sample:
    original_id = _pick(photos.originals, rng)
    transformed = benign_transform(load_rgb(photos.originals[original_id]), rng)
    return _Sample(transformed, original_id, ((original_id, ROLE_ORIGINAL),), ())


def _distinct_sample(photos: _Photos, rng: np.random.Generator) -> _Sample:
    if not photos.held_out:
        raise ValueError("distinct queries need held-out photos")
    held_out_id = _pick(photos.held_out, rng)
    transformed = benign_transform(load_rgb(photos.held_out[held_out_id]), rng)
    return _Sample(transformed, held_out_id, (), ())


GENERATOR_VERSION = 2
"""Bumped whenever a change alters the files generated from the same photos and seed (2: edits
that change nothing are replaced); caches of generated sets are keyed by it."""

MIN_EDIT_FRACTION = 0.001
"""A drawn edit that changes less of the image than this (a hue shift on a greyscale photo, a blur
of a flat sky) is no manipulation; the sample gets a FALLBACK_EDIT instead, so that every
manipulated query and pair really differs from its original."""
FALLBACK_EDIT = "text"


def manip_benign_twin(
    originals: PhotoSource,
    held_out: PhotoSource,
    donors: PhotoSource,
    stamps: Sequence[str | Path],
    seed: int,
    index: int,
) -> tuple[Transformed, Transformed, np.ndarray]:
    """Manip+Benign pair `index` of `generate_pairs(..., "manip+benign", count, seed, ...)` made
    again: its query, the twin query that the same benign transform (the same draws) makes of the
    unedited original, and that original, (H, W, 3) uint8."""
    photos = _photos(originals, held_out, donors, stamps)
    rng = _item_rng(seed, "pair:manip+benign", index)
    original_id, edit, _ = _manip_edit(photos, rng)
    twin_rng = copy.deepcopy(rng)
    original = load_rgb(photos.originals[original_id])
    return carry_edit(edit, benign_transform(edit.image, rng)), benign_transform(original, twin_rng), original


def _manip_sample(photos: _Photos, rng: np.random.Generator, then_benign: bool) -> _Sample:
    original_id, edit, pastes = _manip_edit(photos, rng)
    relevant = ((original_id, ROLE_ORIGINAL), *((donor_id, ROLE_DONOR) for donor_id, _ in pastes))
    if not then_benign:
        return _Sample(identity_transform(edit.image, edit.mask, (edit.op,)), original_id, relevant, pastes)
    benign = benign_transform(edit.image, rng)
    carried = carry_pastes([paste for _, paste in pastes], benign)
    moved = tuple((donor_id, paste) for (donor_id, _), paste in zip(pastes, carried, strict=True))
    return _Sample(carry_edit(edit, benign), original_id, relevant, moved)


def _manip_edit(
    photos: _Photos, rng: np.random.Generator
) -> tuple[str, Edit, tuple[tuple[str, DonorPaste], ...]]:
    """An original's id, its edit, and the donor of a splice with its paste (none for other edits)."""
    original_id = _pick(photos.originals, rng)
    original = load_rgb(photos.originals[original_id])
    kind = str(rng.choice(MANIP_KINDS))
    pastes: tuple[tuple[str, DonorPaste], ...] = ()
    if kind == "splice" and photos.stamps:
        edit = _stamp_splice(original, photos.stamps, rng)
    elif kind == "splice":
        donor_pool = photos.donors or photos.originals
        donor_id = _pick(donor_pool, rng, exclude=original_id)
        edit = manipulate(original, rng, kind, donor=load_rgb(donor_pool[donor_id]))
        pastes = ((donor_id, edit.pastes[0]),)
    else:
        edit = manipulate(original, rng, kind)
        if edit.mask.mean() < MIN_EDIT_FRACTION:
            edit = manipulate(original, rng, FALLBACK_EDIT)
    return original_id, edit, pastes


def _stamp_splice(original: np.ndarray, stamps: Sequence[Path], rng: np.random.Generator) -> Edit:
    """Splice of a random RGBA cut-out; its source is outside the collection, so nothing is relevant."""
    stamp_path = stamps[int(rng.integers(len(stamps)))]
    edit = manipulate(original, rng, "splice", stamp=load_rgba(stamp_path))
    return replace(edit, op={**edit.op, "stamp": stamp_path.stem})


def _composite_sample(photos: _Photos, rng: np.random.Generator) -> _Sample:
    host_id = _pick(photos.originals, rng)
    donor_pool = {k: v for k, v in (photos.donors or photos.originals).items() if k != host_id}
    if not donor_pool:
        raise ValueError("composites need at least one donor photo besides the host")
    wanted = int(rng.integers(1, 4))
    donor_ids = [
        str(d) for d in rng.choice(sorted(donor_pool), size=min(wanted, len(donor_pool)), replace=False)
    ]
    host = load_rgb(photos.originals[host_id])
    edit = composite(host, [load_rgb(donor_pool[d]) for d in donor_ids], rng)
    relevant = ((host_id, ROLE_HOST), *((d, ROLE_DONOR) for d in donor_ids))
    pastes = tuple(zip(donor_ids, edit.pastes, strict=True))
    return _Sample(identity_transform(edit.image, edit.mask, (edit.op,)), host_id, relevant, pastes)


# --- writing ---------------------------------------------------------------------------------------


def _write_query(
    query_id: str,
    kind: str,
    sample: _Sample,
    photos: _Photos,
    scenes: Mapping[str, str],
    out_dir: Path,
) -> Query:
    transformed = sample.transformed
    image_path = _write_png(out_dir / f"{query_id}.png", transformed.image)
    is_distinct = kind == "distinct"
    mask_path = None if is_distinct else _write_png(out_dir / f"{query_id}_mask.png", transformed.mask)
    valid_path = None if is_distinct else _write_png(out_dir / f"{query_id}_valid.png", transformed.valid)
    paste_of = dict(sample.pastes)
    relevant = []
    for index, (image_id, role) in enumerate(sample.relevant):
        if role == ROLE_DONOR and image_id in paste_of:
            paste = paste_of[image_id]
            donor_mask = _write_png(out_dir / f"{query_id}_donor{index}_mask.png", paste.mask)
            relevant.append(
                RelevantImage(
                    image_id, role, _matrix(paste.homography), donor_mask, paste.source_box, paste.query_box
                )
            )
        else:
            relevant.append(RelevantImage(image_id, role, _matrix(transformed.homography)))
    collection = set(photos.originals) | set(photos.donors)
    related = _related_ids(sample.source_id, [r.image_id for r in relevant], collection, scenes)
    return Query(
        query_id=query_id,
        kind=kind,
        image_path=image_path,
        source_id=sample.source_id,
        relevant=tuple(relevant),
        related=related,
        ops=transformed.ops,
        homography=None if is_distinct else _matrix(transformed.homography),
        mask_path=mask_path,
        valid_path=valid_path,
    )


def _related_ids(
    source_id: str, relevant_ids: Sequence[str], collection: set[str], scenes: Mapping[str, str]
) -> tuple[str, ...]:
    """Collection ids sharing a scene with the source or a relevant image, minus the relevant ones."""
    query_scenes = {scenes[i] for i in (source_id, *relevant_ids) if i in scenes}
    return tuple(sorted(i for i in collection if scenes.get(i) in query_scenes and i not in relevant_ids))


def _write_pair(pair_id: str, kind: str, sample: _Sample, photos: _Photos, out_dir: Path) -> Pair:
    transformed = sample.transformed
    return Pair(
        pair_id=pair_id,
        kind=kind,
        label=PAIR_LABELS[kind],
        query_path=_write_png(out_dir / f"{pair_id}.png", transformed.image),
        original_id=sample.source_id,
        original_path=photos.originals[sample.source_id],
        mask_path=_write_png(out_dir / f"{pair_id}_mask.png", transformed.mask),
        valid_path=_write_png(out_dir / f"{pair_id}_valid.png", transformed.valid),
        homography=_matrix(transformed.homography),
        ops=transformed.ops,
    )


def _write_distinct_pair(pair_id: str, photos: _Photos, rng: np.random.Generator, out_dir: Path) -> Pair:
    original_id = _pick(photos.originals, rng)
    if photos.held_out:
        other_id = _pick(photos.held_out, rng)
        other_path = photos.held_out[other_id]
    else:
        other_id = _pick(photos.originals, rng, exclude=original_id)
        other_path = photos.originals[other_id]
    transformed = benign_transform(load_rgb(other_path), rng)
    ops = ({"op": "distinct", "query_source": other_id}, *transformed.ops)
    return Pair(
        pair_id=pair_id,
        kind="distinct",
        label=PAIR_LABELS["distinct"],
        query_path=_write_png(out_dir / f"{pair_id}.png", transformed.image),
        original_id=original_id,
        original_path=photos.originals[original_id],
        mask_path=_write_png(out_dir / f"{pair_id}_mask.png", np.ones(transformed.mask.shape, dtype=bool)),
        valid_path=None,
        homography=None,
        ops=ops,
    )


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 as RGB or (H, W) bool as an 8-bit mask (0 / 255)."""
    array = pixels.astype(np.uint8) * 255 if pixels.dtype == bool else pixels
    Image.fromarray(array).save(path, format="PNG")
    return path


def _matrix(homography: np.ndarray) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = ([float(v) for v in row] for row in homography)
    return ((a, b, c), (d, e, f), (g, h, i))


def homography_array(matrix: Matrix) -> np.ndarray:
    """(3, 3) float64 array of a stored homography."""
    return np.array(matrix, dtype=np.float64)


# --- JSON ------------------------------------------------------------------------------------------


def save_query_set(queries: Sequence[Query], out_dir: Path) -> Path:
    """Write out_dir/queries.json; file paths are stored relative to out_dir."""
    out_dir = Path(out_dir)
    document = {"format": QUERIES_FORMAT, "queries": [_query_to_json(q, out_dir) for q in queries]}
    return _write_json(out_dir / QUERIES_FILE, document)


def load_query_set(path: Path) -> list[Query]:
    """Read a queries.json (or the folder holding it); paths come back absolute."""
    file = _json_file(Path(path), QUERIES_FILE)
    document = json.loads(file.read_text())
    _check_format(document, QUERIES_FORMAT, file)
    return [_query_from_json(item, file.parent) for item in document["queries"]]


def save_pairs(pairs: Sequence[Pair], out_dir: Path) -> Path:
    """Write out_dir/pairs.json; query and mask paths relative to out_dir, originals as given."""
    out_dir = Path(out_dir)
    document = {"format": PAIRS_FORMAT, "pairs": [_pair_to_json(p, out_dir) for p in pairs]}
    return _write_json(out_dir / PAIRS_FILE, document)


def load_pairs(path: Path) -> list[Pair]:
    """Read a pairs.json (or the folder holding it)."""
    file = _json_file(Path(path), PAIRS_FILE)
    document = json.loads(file.read_text())
    _check_format(document, PAIRS_FORMAT, file)
    return [_pair_from_json(item, file.parent) for item in document["pairs"]]


def _write_json(path: Path, document: JsonDict) -> Path:
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


def _json_file(path: Path, name: str) -> Path:
    return path / name if path.is_dir() else path


def _check_format(document: JsonDict, expected: str, file: Path) -> None:
    if document.get("format") != expected:
        raise ValueError(f"{file} is not an {expected} file")


def _relative(path: Path | None, base: Path) -> str | None:
    return None if path is None else Path(path).relative_to(base).as_posix()


def _absolute(path: str | None, base: Path) -> Path | None:
    return None if path is None else base / path


def _matrix_from_json(value: list[list[float]] | None) -> Matrix | None:
    return None if value is None else _matrix(np.array(value, dtype=np.float64))


def _box_from_json(value: list[int] | None) -> Box | None:
    return None if value is None else (int(value[0]), int(value[1]), int(value[2]), int(value[3]))


def _query_to_json(query: Query, base: Path) -> JsonDict:
    return {
        "query_id": query.query_id,
        "kind": query.kind,
        "image_path": _relative(query.image_path, base),
        "source_id": query.source_id,
        "relevant": [_relevant_to_json(r, base) for r in query.relevant],
        "related": list(query.related),
        "ops": list(query.ops),
        "homography": query.homography,
        "mask_path": _relative(query.mask_path, base),
        "valid_path": _relative(query.valid_path, base),
    }


def _relevant_to_json(relevant: RelevantImage, base: Path) -> JsonDict:
    return {
        "image_id": relevant.image_id,
        "role": relevant.role,
        "homography": relevant.homography,
        "mask_path": _relative(relevant.mask_path, base),
        "source_box": relevant.source_box,
        "query_box": relevant.query_box,
    }


def _query_from_json(item: dict, base: Path) -> Query:
    image_path = _absolute(item["image_path"], base)
    assert image_path is not None
    return Query(
        query_id=item["query_id"],
        kind=item["kind"],
        image_path=image_path,
        source_id=item["source_id"],
        relevant=tuple(_relevant_from_json(r, base) for r in item["relevant"]),
        related=tuple(item["related"]),
        ops=tuple(item["ops"]),
        homography=_matrix_from_json(item["homography"]),
        mask_path=_absolute(item["mask_path"], base),
        valid_path=_absolute(item["valid_path"], base),
    )


def _relevant_from_json(item: dict, base: Path) -> RelevantImage:
    return RelevantImage(
        image_id=item["image_id"],
        role=item["role"],
        homography=_matrix_from_json(item["homography"]),
        mask_path=_absolute(item["mask_path"], base),
        source_box=_box_from_json(item["source_box"]),
        query_box=_box_from_json(item["query_box"]),
    )


def _pair_to_json(pair: Pair, base: Path) -> JsonDict:
    return {
        "pair_id": pair.pair_id,
        "kind": pair.kind,
        "label": pair.label,
        "query_path": _relative(pair.query_path, base),
        "original_id": pair.original_id,
        "original_path": str(pair.original_path),
        "mask_path": _relative(pair.mask_path, base),
        "valid_path": _relative(pair.valid_path, base),
        "homography": pair.homography,
        "ops": list(pair.ops),
    }


def _pair_from_json(item: dict, base: Path) -> Pair:
    query_path = _absolute(item["query_path"], base)
    mask_path = _absolute(item["mask_path"], base)
    assert query_path is not None and mask_path is not None
    return Pair(
        pair_id=item["pair_id"],
        kind=item["kind"],
        label=item["label"],
        query_path=query_path,
        original_id=item["original_id"],
        original_path=Path(item["original_path"]),
        mask_path=mask_path,
        valid_path=_absolute(item["valid_path"], base),
        homography=_matrix_from_json(item["homography"]),
        ops=tuple(item["ops"]),
    )
