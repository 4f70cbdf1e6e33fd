"""FAISS vector indexes: exact while small, IVF-PQ trained on the collection once large.

Vectors carry the ids of `imgprov.storage.ids`, so removing an image is removing an id range.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np

from imgprov.errors import IndexCorrupt
from imgprov.presets import VectorIndexConf
from imgprov.storage.ids import ITEM_BITS, ITEM_MASK
from imgprov.storage.records import VectorFileState
from imgprov.storage.vector_sets import ivf_lists_for

OPQ_ITERATIONS = 8
"""FAISS's default of 50 rotation updates takes minutes on 2 cores; recall gains flatten after a few."""


@dataclass(frozen=True)
class IndexLayout:
    """How a vector index is built: `kind` is "flat" or "ivfpq"."""

    kind: str
    dim: int
    nlist: int = 0
    pq_bytes: int = 0
    metric: str = "l2"
    opq: bool = False

    def describe(self) -> str:
        """The FAISS index-factory string of this layout, e.g. "OPQ16,IVF1024,PQ16"."""
        if self.kind == "flat":
            return f"Flat{self.dim}"
        rotation = f"OPQ{self.pq_bytes}," if self.opq else ""
        return f"{rotation}IVF{self.nlist},PQ{self.pq_bytes}"


def new_flat(dim: int, metric: str = "l2") -> faiss.Index:
    base = faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)
    return faiss.IndexIDMap2(base)


def train_ivfpq(sample: np.ndarray, layout: IndexLayout, seed: int = 1234) -> faiss.Index:
    """Train an empty (OPQ-rotated) IVF-PQ index on `sample` (M, dim) float32."""
    metric = faiss.METRIC_INNER_PRODUCT if layout.metric == "ip" else faiss.METRIC_L2
    index = faiss.index_factory(layout.dim, layout.describe(), metric)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.seed = seed
    ivf.pq.cp.seed = seed
    ivf.do_polysemous_training = False
    if layout.opq:
        rotation = faiss.downcast_VectorTransform(faiss.downcast_index(index).chain.at(0))
        rotation.niter = OPQ_ITERATIONS
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def layout_of(index: faiss.Index) -> IndexLayout:
    """Describe a loaded index (inverse of building it from an `IndexLayout`)."""
    ivf = faiss.try_extract_index_ivf(index)
    metric = "ip" if index.metric_type == faiss.METRIC_INNER_PRODUCT else "l2"
    if ivf is None:
        return IndexLayout(kind="flat", dim=index.d, metric=metric)
    pq_bytes = faiss.downcast_index(ivf).pq.M
    opq = isinstance(index, faiss.IndexPreTransform)
    return IndexLayout(kind="ivfpq", dim=index.d, nlist=ivf.nlist, pq_bytes=pq_bytes, metric=metric, opq=opq)


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = min(nprobe, ivf.nlist)


def remove_images(index: faiss.Index, image_ids: list[int]) -> int:
    """Remove every vector of the given images; returns how many vectors were removed."""
    removed = 0
    for image_id in image_ids:
        low = image_id << ITEM_BITS
        removed += index.remove_ids(faiss.IDSelectorRange(low, low + ITEM_MASK + 1))
    return removed


def write_atomically(index: faiss.Index, path: Path) -> None:
    """Write to a temporary file, fsync it, then rename over `path`."""
    temporary = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(temporary))
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)


def read_index(path: Path, expected_count: int) -> faiss.Index:
    """Read an index file and check it holds `expected_count` vectors."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise IndexCorrupt(f"{path}: vector file is missing; run `imgprov check --repair`") from None
    except OSError as exc:
        raise IndexCorrupt(f"{path}: cannot read the vector file ({exc.strerror or exc})") from None
    with handle:
        return read_index_from(handle, path, expected_count)


def read_index_from(handle: BinaryIO, path: Path, expected_count: int) -> faiss.Index:
    """Read an index from an open file (still readable after the file was deleted) and check its size."""
    handle.seek(0)
    try:
        index = faiss.read_index(faiss.PyCallbackIOReader(handle.read))
    except RuntimeError:
        raise IndexCorrupt(f"{path}: vector file is damaged; run `imgprov check --repair`") from None
    if index.ntotal != expected_count:
        raise IndexCorrupt(
            f"{path}: holds {index.ntotal} vectors but the catalogue records {expected_count}; "
            "run `imgprov check --repair`"
        )
    return index


def fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


VectorBatches = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]
"""A function that yields every (ids (M,) int64, vectors (M, dim) float32) batch of a vector set."""


@dataclass
class VectorSet:
    """One family of vectors (local descriptors, global embeddings...) and its index file.

    The catalogue's `VectorFileState` says which file holds the current generation; `stage` applies
    additions and removals in memory and decides whether the layout must change, `write` stores
    the result under a new file name for the catalogue to record.
    """

    name: str
    root: Path
    conf: VectorIndexConf
    dim: int
    state: VectorFileState
    _index: faiss.Index | None = None
    _retrained_on: int | None = None
    _pinned: BinaryIO | None = None
    _loading: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def pin(self) -> bool:
        """Open the current generation's file now, so that reading it later still works after a
        writer has replaced and deleted it; False when the file is missing."""
        self.unpin()
        if not self.state.file:
            return True
        try:
            self._pinned = (self.root / self.state.file).open("rb")
        except FileNotFoundError:
            return False
        except OSError:
            # Unreadable for another reason: `index()` reports it when the file is needed.
            return True
        return True

    def unpin(self) -> None:
        if self._pinned is not None:
            self._pinned.close()
            self._pinned = None

    def index(self) -> faiss.Index:
        """The current index, read from its file once (empty exact index for an empty set)."""
        with self._loading:
            if self._index is None:
                self._index = self._load()
                set_nprobe(self._index, self.conf.nprobe)
            return self._index

    def _load(self) -> faiss.Index:
        if not self.state.file:
            return new_flat(self.dim, self.conf.metric)
        path = self.root / self.state.file
        if self._pinned is None:
            return read_index(path, self.state.count)
        try:
            return read_index_from(self._pinned, path, self.state.count)
        finally:
            self.unpin()

    def forget(self) -> None:
        """Drop the in-memory index, e.g. after a failed transaction modified it."""
        self._index = None
        self._retrained_on = None

    def stage(
        self,
        added: list[tuple[np.ndarray, np.ndarray]],
        removed_image_ids: list[int],
        all_batches: VectorBatches,
    ) -> tuple[int, list[dict]]:
        """Apply changes in memory; returns the new vector count and events (layout changes)."""
        index = self.index()
        remove_images(index, removed_image_ids)
        for ids, vectors in added:
            if len(ids):
                index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        events: list[dict] = []
        target = self._target_layout(index)
        if target is not None:
            before = layout_of(index).describe()
            started = time.perf_counter()
            self._index = self._rebuild(target, index.ntotal, all_batches)
            self._retrained_on = self._index.ntotal
            events.append(
                {
                    "vectors": self.name,
                    "from": before,
                    "to": target.describe(),
                    "trained_on": self._index.ntotal,
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
        return self.index().ntotal, events

    def write(self) -> VectorFileState:
        """Write the staged index under a new file name; returns the state to record."""
        index = self.index()
        file_name = f"{self.name}-{time.time_ns():x}.faiss"
        write_atomically(index, self.root / file_name)
        layout = layout_of(index)
        trained_on = self._retrained_on if self._retrained_on is not None else self.state.trained_on
        if layout.kind == "flat":
            trained_on = 0
        self._retrained_on = None
        self.state = VectorFileState(
            name=self.name,
            file=file_name,
            count=index.ntotal,
            layout=layout.describe(),
            trained_on=trained_on,
        )
        return self.state

    def _target_layout(self, index: faiss.Index) -> IndexLayout | None:
        """The layout to rebuild into, or None to keep the current one."""
        count = index.ntotal
        current = layout_of(index)
        if current.kind == "flat":
            return self._ivfpq_layout(count) if count > self.conf.exact_max_vectors else None
        if count < self.conf.exact_max_vectors // 2:
            return IndexLayout(kind="flat", dim=self.dim, metric=self.conf.metric)
        if count > self.state.trained_on * self.conf.retrain_growth:
            return self._ivfpq_layout(count)
        return None

    def _ivfpq_layout(self, count: int) -> IndexLayout:
        return IndexLayout(
            kind="ivfpq",
            dim=self.dim,
            nlist=ivf_lists_for(count, self.conf.ivf_lists_per_sqrt),
            pq_bytes=self.conf.pq_bytes,
            metric=self.conf.metric,
            opq=self.conf.opq,
        )

    def _rebuild(self, layout: IndexLayout, count: int, all_batches: VectorBatches) -> faiss.Index:
        if layout.kind == "flat":
            index = new_flat(self.dim, self.conf.metric)
        else:
            sample_size = max(self.conf.train_points_per_list * layout.nlist, 256 * 64)
            index = train_ivfpq(_training_sample(all_batches, count, sample_size), layout)
        for ids, vectors in all_batches():
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        set_nprobe(index, self.conf.nprobe)
        return index


def _training_sample(all_batches: VectorBatches, count: int, size: int, seed: int = 7) -> np.ndarray:
    """A deterministic random sample of about `size` vectors, (M, dim) float32."""
    keep = min(1.0, size / max(count, 1))
    rng = np.random.default_rng(seed)
    parts = [vectors[rng.random(len(vectors)) < keep] for _, vectors in all_batches()]
    return np.concatenate(parts).astype(np.float32)
