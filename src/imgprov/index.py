"""Index stage: add images (files or folders) to a collection, or remove them.

Files are processed in batches; each batch is one transaction, so an interrupted run keeps every
completed batch and a re-run resumes: a path already indexed with the same content hash is skipped,
a path whose content changed is replaced, and a file whose content is already indexed under another
path reuses the stored features instead of extracting them again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from imgprov.collection import Collection, NewImage
from imgprov.errors import ImageError, ImageNotFound
from imgprov.extract.rootsift import LocalFeatures, extract_rootsift
from imgprov.images import SUPPORTED_SUFFIXES, file_sha256, load_image
from imgprov.presets import LocalFeatureConf
from imgprov.store import ImageRecord

Progress = Callable[[int], None]


@dataclass
class IndexReport:
    """What an `index_paths` run did, path by path."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Planned:
    path: Path
    sha256: str
    previous: ImageRecord | None
    twin: ImageRecord | None
    twin_features: LocalFeatures | None


def discover_images(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand folders recursively into image files (by suffix); files given explicitly are kept.

    Returns the absolute, resolved file paths in a stable order and (path, error) for missing ones.
    """
    found: dict[Path, None] = {}
    missing: list[tuple[str, str]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(_walk(path)):
                found[file.resolve()] = None
        elif path.is_file():
            found[path.resolve()] = None
        else:
            missing.append((str(path), f"{path}: no such file or directory"))
    return list(found), missing


def index_paths(
    collection: Collection,
    files: list[Path],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    progress: Progress | None = None,
) -> IndexReport:
    """Index image files into an open writable collection (see `Collection.writer`)."""
    report = IndexReport()
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in _batches(files, batch_size):
            plans = [_plan(collection, path, report) for path in batch]
            plans = [plan for plan in plans if plan is not None]
            prepared = list(pool.map(lambda plan: _prepare(plan, collection.feature_conf), plans))
            ready = []
            for plan, image in zip(plans, prepared, strict=True):
                if isinstance(image, str):
                    report.failed.append((str(plan.path), image))
                else:
                    ready.append((plan, image))
            collection.apply(
                add=[image for _, image in ready],
                remove=[plan.previous.id for plan, _ in ready if plan.previous is not None],
            )
            for plan, _ in ready:
                (report.replaced if plan.previous else report.added).append(str(plan.path))
            if progress:
                progress(len(batch))
    return report


def remove_paths(collection: Collection, paths: Iterable[Path]) -> tuple[list[str], list[str]]:
    """Remove indexed images by file path or folder prefix; returns (removed, not found)."""
    removed_records: dict[int, ImageRecord] = {}
    not_found = []
    for path in paths:
        records = collection.catalogue.images_under(str(path.resolve()))
        if not records:
            not_found.append(str(path))
        removed_records.update((record.id, record) for record in records)
    collection.apply(remove=list(removed_records))
    return [record.path for record in removed_records.values()], not_found


def _plan(collection: Collection, path: Path, report: IndexReport) -> _Planned | None:
    try:
        sha256 = file_sha256(path)
    except OSError as exc:
        report.failed.append((str(path), f"{path}: cannot read ({exc.strerror or exc})"))
        return None
    previous = collection.catalogue.image_by_path(str(path))
    if previous is not None and previous.sha256 == sha256:
        report.unchanged.append(str(path))
        return None
    twin = collection.catalogue.image_with_sha256(sha256)
    twin_features = collection.local_features(twin.id) if twin is not None else None
    return _Planned(path=path, sha256=sha256, previous=previous, twin=twin, twin_features=twin_features)


def _prepare(plan: _Planned, conf: LocalFeatureConf) -> NewImage | str:
    """Decode and extract one file; an error message string when the file is not a usable image."""
    try:
        stat = plan.path.stat()
        twin = plan.twin
        if twin is not None and plan.twin_features is not None:
            size = (twin.width, twin.height)
            return _new_image(plan, stat, twin.size_bytes, size, twin.format, plan.twin_features)
        image = load_image(plan.path)
        if image.sha256 != plan.sha256:
            return f"{plan.path}: file changed while being indexed"
        features = extract_rootsift(image.pixels, conf)
        return _new_image(plan, stat, image.size_bytes, (image.width, image.height), image.format, features)
    except ImageError as exc:
        return str(exc)
    except OSError as exc:
        return str(ImageNotFound(f"{plan.path}: cannot read ({exc.strerror or exc})"))


def _new_image(
    plan: _Planned,
    stat: os.stat_result,
    size_bytes: int,
    size: tuple[int, int],
    fmt: str,
    features: LocalFeatures,
) -> NewImage:
    return NewImage(
        path=str(plan.path),
        sha256=plan.sha256,
        size_bytes=size_bytes,
        width=size[0],
        height=size[1],
        format=fmt,
        mtime=stat.st_mtime,
        features=features,
    )


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in names:
            if Path(name).suffix.lower() in SUPPORTED_SUFFIXES and not name.startswith("."):
                yield Path(root) / name


def _batches(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
