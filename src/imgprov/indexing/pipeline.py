"""Index stage: add images (files or folders) to a collection, or remove them.

Files are processed in batches; each batch is one transaction, so an interrupted run keeps every
completed batch and a re-run resumes: a path already indexed with the same content hash is skipped,
a path whose content changed is replaced, and a file whose content is already indexed under another
path reuses the stored features instead of extracting them again.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imgprov.errors import ImageError, ImageNotFound
from imgprov.extract.rootsift import LocalFeatures, extract_rootsift
from imgprov.extract.sscd import GlobalConf, SSCDExtractor
from imgprov.images import SUPPORTED_SUFFIXES, file_sha256, load_image, read_image_bytes
from imgprov.presets import LocalFeatureConf
from imgprov.provenance import ContentCredentials, TrustAnchors, mime_type_for, read_manifest
from imgprov.storage import Store, WritableStore
from imgprov.storage.batches import batched
from imgprov.storage.records import ImageRecord, NewImage, StoredObjects

URL_SCHEMES = ("http", "https", "s3")
"""Sources indexed under their URL (`imgprov index --list`), not under a local path."""

if TYPE_CHECKING:
    from imgprov.extract.objects.stage import ObjectStage

Progress = Callable[[int], None]
Embed = Callable[[np.ndarray], np.ndarray]
FindObjects = Callable[[np.ndarray], StoredObjects]


@dataclass
class IndexReport:
    """What an `index_paths` run did, path by path."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ExtractedContent:
    """What extraction gives for a file's bytes, the same for every copy of them.

    embedding: (512,) float32 or None; objects: None when the index keeps no objects.
    """

    size_bytes: int
    width: int
    height: int
    format: str
    features: LocalFeatures
    embedding: np.ndarray | None
    credentials: ContentCredentials | None
    objects: StoredObjects | None = None


@dataclass(frozen=True)
class Unreadable:
    """A file that is not a usable image (undecodable, unreadable, changed while read): `reason`
    is the message the index report gives for it."""

    reason: str


@dataclass(frozen=True)
class _Planned:
    """A file to index: the image it replaces, and the content of an indexed copy of its bytes."""

    path: Path
    sha256: str
    previous: ImageRecord | None
    twin: ExtractedContent | None


def discover_images(paths: Iterable[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand folders recursively into image files (by suffix); files given explicitly are kept.

    Returns the absolute, resolved file paths in a stable order, and (path, reason) for each path
    skipped. Only regular files are indexed, each under its resolved path. Symlinks: a file named
    explicitly may link anywhere (naming it is the user's choice); inside a folder, a link to a file
    is followed only when the file lies inside that folder, so a planted link cannot bring a file
    from elsewhere (say a private photo, which the server would then show as a thumbnail) into
    the collection, and links to folders are not followed, so there are no loops. A link loop, a
    dangling link, a FIFO or a device is skipped with its reason, never waited on.
    """
    found: dict[Path, None] = {}
    skipped: list[tuple[str, str]] = []
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            candidates = [(file, root) for file in sorted(_walk(path))]
        else:
            candidates = [(path, None)]
        for candidate, root in candidates:
            target, reason = _regular_file(candidate, root)
            if target is not None:
                found[target] = None
            else:
                skipped.append((str(candidate), reason))
    return list(found), skipped


def index_paths(
    collection: WritableStore,
    files: list[Path],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    progress: Progress | None = None,
    trust: TrustAnchors | None = None,
) -> IndexReport:
    """Index image files into an open writable collection (see `imgprov.storage.store_writer`).

    trust: anchors that make a C2PA signer trusted when credentials are read (None: none trusted).
    """
    report = IndexReport()
    workers = workers or os.cpu_count() or 1
    embed = _embedder(collection, workers)
    find_objects = _object_finder(collection)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in batched(files, batch_size):
            plans = [_plan(collection, path, report) for path in batch]
            plans = [plan for plan in plans if plan is not None]
            prepared = list(
                pool.map(
                    lambda plan: _prepare(plan, collection.feature_conf, embed, trust, find_objects), plans
                )
            )
            ready = []
            for plan, image in zip(plans, prepared, strict=True):
                if isinstance(image, Unreadable):
                    report.failed.append((str(plan.path), image.reason))
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


def remove_paths(collection: WritableStore, paths: Iterable[str | Path]) -> tuple[list[str], list[str]]:
    """Remove indexed images by file path or folder, or by the URL or URL prefix (an object-storage
    folder) they were indexed under; returns (removed, not found)."""
    removed_records: dict[int, ImageRecord] = {}
    not_found = []
    for path in paths:
        records = collection.catalogue.images_under(catalogue_path(path))
        if not records:
            not_found.append(str(path))
        removed_records.update((record.id, record) for record in records)
    collection.apply(remove=list(removed_records))
    return [record.path for record in removed_records.values()], not_found


def catalogue_path(path: str | Path) -> str:
    """The path the catalogue records for a source: an http(s):// or s3:// URL as it is, a file
    path resolved."""
    text = str(path)
    if urllib.parse.urlsplit(text).scheme in URL_SCHEMES:
        return text
    return str(Path(path).resolve())


def _plan(collection: Store, path: Path, report: IndexReport) -> _Planned | None:
    try:
        sha256 = file_sha256(path)
    except ImageError as exc:
        report.failed.append((str(path), str(exc)))
        return None
    except OSError as exc:
        report.failed.append((str(path), f"{path}: cannot read ({exc.strerror or exc})"))
        return None
    previous = collection.catalogue.image_by_path(str(path))
    if previous is not None and previous.sha256 == sha256:
        report.unchanged.append(str(path))
        return None
    return _Planned(path, sha256, previous, _indexed_copy(collection, sha256))


def _indexed_copy(collection: Store, sha256: str) -> ExtractedContent | None:
    """The stored content of an image with the same bytes, if it is complete."""
    twin = collection.catalogue.image_with_sha256(sha256)
    if twin is None:
        return None
    features = collection.local_features(twin.id)
    embedding = collection.embeddings([twin.id]).get(twin.id)
    if features is None or (collection.global_set is not None and embedding is None):
        return None
    objects = collection.objects([twin.id]).get(twin.id)
    if collection.object_set is not None and objects is None:
        return None
    credentials = collection.credentials([twin.id]).get(twin.id)
    return ExtractedContent(
        twin.size_bytes, twin.width, twin.height, twin.format, features, embedding, credentials, objects
    )


def _embedder(collection: Store, workers: int) -> Embed | None:
    """One embedding at a time per worker thread (the ONNX session is shared and thread-safe)."""
    if collection.global_conf is None:
        return None
    return embedder_for(collection.global_conf, max(1, (os.cpu_count() or 1) // workers))


def embedder_for(conf: GlobalConf, threads: int) -> Embed:
    """A function from (H, W, 3) uint8 RGB to its (512,) float32 global embedding, the model loaded
    once with `threads` ONNX intra-op threads."""
    extractor = SSCDExtractor(conf, intra_op_threads=threads)
    return lambda pixels: extractor.embed([pixels])[0]


def _object_finder(collection: Store) -> FindObjects | None:
    """The objects of a collection image (OE-SIR proposals, embedded) when the index keeps objects."""
    stage = collection.object_stage()
    return object_finder_for(stage) if stage is not None else None


def object_finder_for(stage: ObjectStage) -> FindObjects:
    """A function from (H, W, 3) uint8 RGB to its objects: boxes (k, 4) and raw vectors (k, D0) float32."""

    def find(pixels: np.ndarray) -> StoredObjects:
        objects = stage.collection_objects(pixels)
        return StoredObjects(objects.boxes.astype(np.float32), objects.vectors.astype(np.float32))

    return find


def _prepare(
    plan: _Planned,
    conf: LocalFeatureConf,
    embed: Embed | None,
    trust: TrustAnchors | None,
    find_objects: FindObjects | None = None,
) -> NewImage | Unreadable:
    """Decode and extract one file, or say why it is not a usable image."""
    try:
        stat = plan.path.stat()
        content = plan.twin or _extract(plan, conf, embed, trust, find_objects)
    except ImageError as exc:
        return Unreadable(str(exc))
    except OSError as exc:
        return Unreadable(str(ImageNotFound(f"{plan.path}: cannot read ({exc.strerror or exc})")))
    return NewImage(
        path=str(plan.path),
        sha256=plan.sha256,
        size_bytes=content.size_bytes,
        width=content.width,
        height=content.height,
        format=content.format,
        mtime=stat.st_mtime,
        features=content.features,
        embedding=content.embedding,
        credentials=content.credentials,
        objects=content.objects,
    )


def _extract(
    plan: _Planned,
    conf: LocalFeatureConf,
    embed: Embed | None,
    trust: TrustAnchors | None,
    find_objects: FindObjects | None = None,
) -> ExtractedContent:
    data = read_image_bytes(plan.path)
    content, sha256 = extract_content(data, str(plan.path), conf, embed, trust, find_objects)
    if sha256 != plan.sha256:
        raise ImageError(f"{plan.path}: file changed while being indexed")
    return content


def extract_content(
    data: bytes,
    name: str,
    conf: LocalFeatureConf,
    embed: Embed | None,
    trust: TrustAnchors | None,
    find_objects: FindObjects | None = None,
) -> tuple[ExtractedContent, str]:
    """Decode an image file's bytes and extract what the index keeps; returns it and the sha256.

    Raises an `ImageError` subclass (message naming `name`) when the bytes are not a usable image.
    """
    image = load_image(data, name=name)
    features = extract_rootsift(image.pixels, conf)
    embedding = embed(image.pixels) if embed is not None else None
    credentials = read_manifest(data, mime_type_for(image.format), trust=trust)
    objects = find_objects(image.pixels) if find_objects is not None else None
    content = ExtractedContent(
        image.size_bytes, image.width, image.height, image.format, features, embedding, credentials, objects
    )
    return content, image.sha256


def _regular_file(path: Path, root: Path | None) -> tuple[Path | None, str]:
    """The resolved regular file `path` names, inside `root` when given; else None and why not."""
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        reason = "a symlink to a missing file" if path.is_symlink() else "no such file or directory"
        return None, f"{path}: {reason}"
    except (OSError, RuntimeError) as exc:
        return None, f"{path}: cannot be resolved ({_short_reason(exc)})"
    if root is not None and not target.is_relative_to(root):
        return None, f"{path}: a symlink to {target}, outside {root}; not followed"
    if not target.is_file():
        return None, f"{path}: not a regular file"
    return target, ""


def _short_reason(exc: BaseException) -> str:
    """ "Symlink loop from ..." (Python 3.11, 3.12), "Too many levels of symbolic links" (3.13)."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in names:
            if Path(name).suffix.lower() in SUPPORTED_SUFFIXES and not name.startswith("."):
                yield Path(root) / name
