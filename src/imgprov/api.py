"""The Python face of imgprov: open a collection to index, search and remove images; compare two images.

It chains the same stage functions as the `imgprov` command line and returns the same typed records
(`IndexReport`, `SearchResult`, `Comparison`) whose `to_json` the command line prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from imgprov import presets as search_presets
from imgprov.compare.comparison import Comparison, compare_images
from imgprov.compare.conf import CompareConf, compare_preset
from imgprov.extract.models import sscd_extractor
from imgprov.extract.sscd import check_image
from imgprov.images import load_image, read_image_bytes
from imgprov.indexing.pipeline import IndexReport, discover_images, index_paths, remove_paths
from imgprov.provenance import ContentCredentials, TrustAnchors, mime_type_for, read_manifest
from imgprov.results import SearchResult
from imgprov.search.pipeline import search as run_search
from imgprov.storage import open_store, store_writer

if TYPE_CHECKING:
    from imgprov.storage import Store
    from imgprov.storage.records import CollectionPresets

Image = str | Path | np.ndarray
"""A path of an image file, or its (H, W, 3) uint8 RGB pixels."""


class Removal(NamedTuple):
    """What `ImageCollection.remove` did: the catalogue paths removed and the paths not indexed."""

    removed: list[str]
    not_found: list[str]


class ImageCollection:
    """A collection of originals, opened by `imgprov.open`: `index`, `search`, `remove`, `info`.

    The reading snapshot is opened at the first search or info and opened again after each write;
    every write holds the collection's writer lock for its duration only, like the command line.
    """

    def __init__(
        self,
        db: str | Path,
        *,
        presets: CollectionPresets | None = None,
        search_preset: str = search_presets.DEFAULT_SEARCH,
        trust_anchors: str | Path | None = None,
    ):
        self.db = str(db)
        self.presets = presets
        self.search_conf = search_presets.search(search_preset)
        self.trust = TrustAnchors.from_file(trust_anchors) if trust_anchors is not None else None
        self._store: Store | None = None

    def index(
        self, paths: str | Path | Iterable[str | Path], *, batch_size: int = 32, workers: int | None = None
    ) -> IndexReport:
        """Add image files, or folders searched recursively; `failed` also lists the paths skipped.

        Unchanged files are skipped and changed ones replaced; workers: extraction threads (all cores).
        """
        files, skipped = discover_images([Path(path) for path in _as_list(paths)])
        with store_writer(self.db, presets=self.presets) as writable:
            report = index_paths(writable, files, batch_size=batch_size, workers=workers, trust=self.trust)
        self._forget_snapshot()
        return dataclasses.replace(report, failed=skipped + report.failed)

    def search(
        self, image: Image, *, top_k: int = 10, stage: str = "cascade", unconfirmed: bool = False
    ) -> SearchResult:
        """The originals `image` is made of, best first (`SearchResult.matches`; empty: none).

        stage: "cascade" (the default: stops early when the global shortlist and one light
        verification settle the query), "both", "local" or "global". A file's own C2PA
        credentials are read and compared with the matched originals'; raw pixels carry none.
        Raises an `ImageError` for an unusable image.
        """
        store = self._snapshot()
        pixels, name, credentials = _query(image, self.trust)
        wants_global = store.global_conf is not None and stage != "local"
        return run_search(
            store,
            pixels,
            self.search_conf,
            stage=stage,
            top_k=top_k,
            query_name=name,
            embedder=sscd_extractor(store.global_conf) if wants_global else None,
            query_credentials=credentials,
            unconfirmed=unconfirmed,
        )

    def remove(self, paths: str | Path | Iterable[str | Path]) -> Removal:
        """Remove indexed files, every indexed file under a folder, or under a URL prefix."""
        with store_writer(self.db, create=False) as writable:
            removed, not_found = remove_paths(writable, _as_list(paths))
        self._forget_snapshot()
        return Removal(removed, not_found)

    def info(self) -> dict:
        """The summary `imgprov info --json` prints: counts, presets, vector layouts, recent events."""
        return self._snapshot().describe()

    def close(self) -> None:
        """Release the reading snapshot (a later call opens a new one)."""
        self._forget_snapshot()

    def __enter__(self) -> ImageCollection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _snapshot(self) -> Store:
        if self._store is None:
            self._store = open_store(self.db)
        return self._store

    def _forget_snapshot(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def open(
    db: str | Path | None = None,
    *,
    presets: CollectionPresets | None = None,
    search_preset: str = search_presets.DEFAULT_SEARCH,
    trust_anchors: str | Path | None = None,
) -> ImageCollection:
    """The collection `db` names (an index directory, or a milvus:// location), the default one when None.

    presets: the index presets used when the first `index` call creates the collection.
    trust_anchors: a PEM file of C2PA trust anchors: signers they certify are trusted.
    """
    if db is None:
        from imgprov.storage.embedded.catalogue import default_db_dir

        db = default_db_dir()
    return ImageCollection(db, presets=presets, search_preset=search_preset, trust_anchors=trust_anchors)


def compare(query: Image, original: Image, *, conf: CompareConf | str | None = None) -> Comparison:
    """Align `query` with `original`: benign, manipulated or distinct, and where it was edited.

    conf: a `CompareConf` or a compare preset name (default: the default preset).
    """
    conf = compare_preset(conf) if isinstance(conf, str) else conf or compare_preset()
    return compare_images(_pixels(query), _pixels(original), conf)


def _query(image: Image, trust: TrustAnchors | None) -> tuple[np.ndarray, str, ContentCredentials | None]:
    """(pixels, name, credentials) of a search query: a file's C2PA credentials are read too."""
    if not isinstance(image, str | Path):
        return _pixels(image), "", None
    data = read_image_bytes(Path(image))
    loaded = load_image(data, name=str(image))
    return loaded.pixels, str(image), read_manifest(data, mime_type_for(loaded.format), trust=trust)


def _pixels(image: Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a path or of pixels; an `ImageError` when unusable."""
    if isinstance(image, str | Path):
        return load_image(image).pixels
    check_image(image)
    return image


def _as_list(paths: str | Path | Iterable[str | Path]) -> list[str | Path]:
    return [paths] if isinstance(paths, str | Path) else list(paths)
