"""Retrieval methods compared by the benchmark: imgprov's stages and the baselines, one interface.

Every method indexes a collection given as {image id: path} and answers a query path with a ranking
of collection ids (best first, with scores) and a yes/no "no match in the collection" decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import cv2
import imagehash
import numpy as np
import pdqhash
from PIL import Image

from imgprov import presets
from imgprov.extract.rootsift import descriptors_as_float, extract_rootsift
from imgprov.extract.sscd import SSCDExtractor
from imgprov.images import load_image
from imgprov.indexing.pipeline import index_paths
from imgprov.search.pipeline import search
from imgprov.storage.embedded.collection import Collection
from imgprov.storage.ids import split_ids
from imgprov.storage.presets import NO_LOCAL_INDEX
from imgprov.storage.records import CollectionPresets


@dataclass(frozen=True)
class Answer:
    """A method's answer to one query: ids best first, their scores, per-stage seconds."""

    ids: tuple[str, ...]
    scores: tuple[float, ...]
    no_match: bool
    seconds: dict[str, float] = field(default_factory=dict)
    path: str | None = None


@dataclass(frozen=True)
class IndexStats:
    """Cost of indexing: wall seconds, images, bytes on disk (or in memory) of the index."""

    seconds: float
    images: int
    bytes: int

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / max(self.images, 1)

    @property
    def bytes_per_image(self) -> float:
        return self.bytes / max(self.images, 1)


class Method(Protocol):
    name: str

    def index(self, collection: Mapping[str, Path]) -> IndexStats: ...

    def query(self, path: Path, top_k: int) -> Answer: ...


def _timed(function: Callable, *args):
    started = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - started


def _directory_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


STAGE_NAMES = {
    "cascade": "imgprov (default: cascade)",
    "both": "imgprov (global + local)",
    "local": "imgprov local (OS2OS)",
    "global": "SSCD global cosine (imgprov global stage)",
}
VERIFY_ONLY_NAME = "imgprov without a local index (--vectors none)"
COMPRESSED_STORAGE = "rootsift-pq32"


class ImgprovMethod:
    """imgprov's search, one stage or both, over an index on disk that its stages share."""

    collection_presets = CollectionPresets()

    def __init__(self, db: Path, stage: str = "both", search_preset: str = presets.DEFAULT_SEARCH):
        self.name = STAGE_NAMES[stage]
        self.db = db
        self.stage = stage
        self.conf = presets.search(search_preset)
        self._ids_by_path: dict[str, str] = {}
        self._collection: Collection | None = None
        self._embedder: SSCDExtractor | None = None

    def index(self, collection: Mapping[str, Path]) -> IndexStats:
        self.attach(collection)
        files = [path.resolve() for path in collection.values()]
        started = time.perf_counter()
        with Collection.writer(self.db, presets=self.collection_presets) as writable:
            report = index_paths(writable, files)
        if report.failed:
            raise RuntimeError(f"indexing failed for {report.failed[:3]}")
        seconds = time.perf_counter() - started
        return IndexStats(seconds=seconds, images=len(files), bytes=_directory_bytes(self.db))

    def attach(self, collection: Mapping[str, Path]) -> None:
        """Map indexed paths back to benchmark ids (also when the index was built earlier)."""
        self._ids_by_path = {str(path.resolve()): image_id for image_id, path in collection.items()}

    def id_of(self, path: str) -> str:
        return self._ids_by_path[path]

    def collection(self) -> Collection:
        if self._collection is None:
            self._collection = Collection.open(self.db)
        return self._collection

    def embedder(self) -> SSCDExtractor | None:
        collection = self.collection()
        if self._embedder is None and collection.global_conf is not None:
            self._embedder = SSCDExtractor(collection.global_conf)
        return self._embedder

    def query(self, path: Path, top_k: int) -> Answer:
        pixels = load_image(path).pixels
        result = search(
            self.collection(), pixels, self.conf, stage=self.stage, top_k=top_k, embedder=self.embedder()
        )
        return Answer(
            ids=tuple(self.id_of(match.path) for match in result.matches),
            scores=tuple(match.score for match in result.matches),
            no_match=not result.matches,
            seconds=dict(result.timings),
            path=str(result.path),
        )


class VerifyOnlyMethod(ImgprovMethod):
    """imgprov on a collection created without the feature-level local index (`--vectors none`):
    the global stage's shortlist verified with the stored local features, no OS2OS voting; the
    design past a few million images per shard (docs/scaling.md)."""

    collection_presets = CollectionPresets(local_index="none")

    def __init__(self, db: Path):
        super().__init__(db, stage="both")
        self.name = VERIFY_ONLY_NAME


class CompressedLocalMethod(ImgprovMethod):
    """imgprov on a collection that stores its local features compressed (`--local-storage`,
    32-byte PQ codes): without the local index (`--vectors none`, the design it is made for), or
    with one built from the decoded descriptors (stage "local": what the codes cost OS2OS voting)."""

    def __init__(self, db: Path, local_index: str, stage: str):
        super().__init__(db, stage=stage)
        self.collection_presets = CollectionPresets(local_index=local_index, local_storage=COMPRESSED_STORAGE)
        if local_index == NO_LOCAL_INDEX:
            self.name = f"{VERIFY_ONLY_NAME}, {COMPRESSED_STORAGE} local features"
        else:
            self.name = f"{STAGE_NAMES[stage]} over decoded {COMPRESSED_STORAGE} features"


class RootSiftRansac:
    """Baseline: RootSIFT, Lowe's ratio test on global 2-NN, vote count per image, RANSAC homography.

    It shares imgprov's descriptor index (same features, same FAISS search) so that the difference
    is OS2OS voting and MAGSAC verification against plain voting and RANSAC.
    """

    name = "RootSIFT + ratio + RANSAC"

    def __init__(self, local: ImgprovMethod, ratio: float = 0.8, verify_top: int = 20, min_inliers: int = 15):
        self.local = local
        self.ratio = ratio
        self.verify_top = verify_top
        self.min_inliers = min_inliers

    def index(self, collection: Mapping[str, Path]) -> IndexStats:
        return IndexStats(seconds=0.0, images=len(collection), bytes=0)

    def query(self, path: Path, top_k: int) -> Answer:
        collection = self.local.collection()
        pixels = load_image(path).pixels
        features, extract_seconds = _timed(extract_rootsift, pixels, collection.feature_conf)
        started = time.perf_counter()
        distances, ids = collection.local_index().search(descriptors_as_float(features.descriptors), 2)
        passed = (ids[:, 0] >= 0) & (np.sqrt(distances[:, 0]) < self.ratio * np.sqrt(distances[:, 1]))
        image_ids, items = split_ids(ids[passed, 0])
        query_indices = np.flatnonzero(passed)
        votes = np.bincount(image_ids.astype(np.int64)) if len(image_ids) else np.zeros(0)
        candidates = [int(i) for i in np.argsort(-votes, kind="stable")[: self.verify_top] if votes[i] > 0]
        search_seconds = time.perf_counter() - started
        started = time.perf_counter()
        geometry = collection.geometry(candidates)
        inliers = {}
        for image_id in candidates:
            chosen = image_ids == image_id
            if chosen.sum() < 4 or image_id not in geometry:
                continue
            source = features.keypoints[query_indices[chosen]]
            target = geometry[image_id][items[chosen], :2]
            _, mask = cv2.findHomography(source, target, cv2.RANSAC, 5.0)
            count = int(mask.sum()) if mask is not None else 0
            if count >= self.min_inliers:
                inliers[image_id] = count
        records = collection.images(list(inliers))
        ranked = sorted(inliers, key=lambda image_id: -inliers[image_id])[:top_k]
        ids_out = tuple(self.local.id_of(records[image_id].path) for image_id in ranked)
        return Answer(
            ids=ids_out,
            scores=tuple(float(inliers[image_id]) for image_id in ranked),
            no_match=not ranked,
            seconds={
                "extract": extract_seconds,
                "search": search_seconds,
                "verify": time.perf_counter() - started,
            },
        )


class HashBaseline:
    """Perceptual-hash baselines: exhaustive Hamming search; "no match" above a distance threshold.

    kind: "phash" or "dhash" (imagehash, 64 bits) or "pdq" (256 bits, best of the 8 dihedral
    variants of the query, as PDQ's reference matcher does for flips and rotations).
    """

    THRESHOLDS: ClassVar[dict[str, int]] = {"phash": 10, "dhash": 10, "pdq": 31}
    BITS: ClassVar[dict[str, int]] = {"phash": 64, "dhash": 64, "pdq": 256}

    def __init__(self, kind: str):
        self.kind = kind
        self.name = {"phash": "pHash", "dhash": "dHash", "pdq": "PDQ (dihedral)"}[kind]
        self._ids: list[str] = []
        self._codes = np.zeros((0, self.BITS[kind]), bool)

    def index(self, collection: Mapping[str, Path]) -> IndexStats:
        started = time.perf_counter()
        self._ids = list(collection)
        self._codes = np.stack([self._hashes(load_image(path).pixels)[0] for path in collection.values()])
        return IndexStats(
            seconds=time.perf_counter() - started,
            images=len(self._ids),
            bytes=len(self._ids) * self.BITS[self.kind] // 8,
        )

    def query(self, path: Path, top_k: int) -> Answer:
        started = time.perf_counter()
        variants = self._hashes(load_image(path).pixels, dihedral=self.kind == "pdq")
        extract_seconds = time.perf_counter() - started
        started = time.perf_counter()
        distances = np.min([(self._codes != variant).sum(axis=1) for variant in variants], axis=0)
        order = np.argsort(distances, kind="stable")[:top_k]
        return Answer(
            ids=tuple(self._ids[i] for i in order),
            scores=tuple(float(-distances[i]) for i in order),
            no_match=bool(distances[order[0]] > self.THRESHOLDS[self.kind]) if len(order) else True,
            seconds={"extract": extract_seconds, "search": time.perf_counter() - started},
        )

    def _hashes(self, rgb: np.ndarray, dihedral: bool = False) -> list[np.ndarray]:
        if self.kind == "pdq":
            if dihedral:
                return [
                    np.asarray(code, bool) for code in pdqhash.compute_dihedral(np.ascontiguousarray(rgb))[0]
                ]
            return [np.asarray(pdqhash.compute(np.ascontiguousarray(rgb))[0], bool)]
        function = imagehash.phash if self.kind == "phash" else imagehash.dhash
        return [np.asarray(function(Image.fromarray(rgb)).hash, bool).ravel()]
