"""Vector sets in a Milvus server: one Milvus collection per set, rows (id, image_id, vector).

`id` is the vector id of `imgprov.storage.ids.vector_ids` (image id in the high bits, item number in
the low ones), so a k-NN answer reads exactly as a FAISS one. The index type follows the set's
size (`milvus_index_for`): exact (FLAT) while the set is small, up to the preset's
`exact_max_vectors` as in the embedded store; then an HNSW graph (all vectors in memory, the best
recall) up to `HNSW_MAX_VECTORS`; then IVF_PQ with the preset's code size, whose memory grows by
`pq_bytes` per vector only. DISKANN is not offered: Milvus 2.3.5 standalone fails to build it
("C Runtime Exception: bad_function_call") and retries forever.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from imgprov.errors import IndexStoreError
from imgprov.presets import VectorIndexConf
from imgprov.storage.batches import batched
from imgprov.storage.ids import ITEM_BITS
from imgprov.storage.vector_sets import ivf_lists_for

CONNECT_TIMEOUT_SECONDS = 10.0
INSERT_ROWS = 20_000
"""Rows per insert request (20,000 RootSIFT rows are 10 MB, well under gRPC's message limit)."""
SEARCH_QUERIES = 1024
"""Query vectors per search request."""
DELETE_IMAGES = 1000
"""Images whose vectors one delete request deletes."""
HNSW_MAX_VECTORS = 2_000_000
"""Most vectors a set indexes with HNSW (about (4 dim + 128) bytes each in the query nodes' memory)."""
HNSW_BUILD = {"M": 16, "efConstruction": 200}
HNSW_EF = 64
"""HNSW search list size (raised to k when more neighbours are asked for)."""
MILVUS_METRICS = {"l2": "L2", "ip": "IP"}
MAX_NLIST = 65_536
INDEX_ORDER = ("FLAT", "HNSW", "IVF_PQ")


@dataclass(frozen=True)
class MilvusIndex:
    """A Milvus index: its type, build parameters and search parameters."""

    kind: str
    metric: str
    build: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.kind == "FLAT"

    def describe(self) -> str:
        """E.g. "FLAT", "HNSW(M=16,efConstruction=200)", "IVF_PQ(nlist=1024,m=32)"."""
        details = ",".join(f"{key}={value}" for key, value in self.build.items() if key != "nbits")
        return f"{self.kind}({details})" if details else self.kind

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "metric": self.metric, "build": self.build, "search": self.search}
        )

    @classmethod
    def from_json(cls, text: str) -> MilvusIndex:
        fields = json.loads(text)
        return cls(fields["kind"], fields["metric"], fields["build"], fields["search"])

    def search_params(self, k: int) -> dict:
        """Search parameters for k neighbours (HNSW's list must hold at least k)."""
        if self.kind == "HNSW":
            return {"ef": max(k, int(self.search.get("ef", HNSW_EF)))}
        return dict(self.search)


def milvus_index_for(count: int, conf: VectorIndexConf) -> MilvusIndex:
    """The index a set of `count` vectors gets under the preset `conf` (see the module docstring)."""
    metric = MILVUS_METRICS[conf.metric]
    if count <= conf.exact_max_vectors:
        return MilvusIndex("FLAT", metric)
    if count <= HNSW_MAX_VECTORS:
        return MilvusIndex("HNSW", metric, build=dict(HNSW_BUILD), search={"ef": HNSW_EF})
    nlist = ivf_lists_for(count, conf.ivf_lists_per_sqrt)
    return MilvusIndex(
        "IVF_PQ",
        metric,
        build={"nlist": nlist, "m": conf.pq_bytes, "nbits": 8},
        search={"nprobe": min(conf.nprobe, nlist)},
    )


def next_index(current: MilvusIndex, count: int, conf: VectorIndexConf) -> MilvusIndex | None:
    """The index a set of `count` vectors should switch to from `current`, or None to keep it.

    As `milvus_index_for`, with hysteresis: a shrinking set keeps its index until it would stay in
    the smaller class at twice its size, and an IVF_PQ index is rebuilt when the set has grown
    enough to double its lists.
    """
    target = milvus_index_for(count, conf)
    if target.kind == current.kind:
        grown = target.build.get("nlist", 0) >= 2 * current.build.get("nlist", 0) > 0
        return target if grown else None
    if INDEX_ORDER.index(target.kind) < INDEX_ORDER.index(current.kind):
        return target if milvus_index_for(2 * count, conf).kind == target.kind else None
    return target


def connect(host: str, port: int) -> str:
    """Connect to the Milvus server; returns the pymilvus connection alias."""
    pymilvus = _pymilvus()
    alias = f"imgprov-{host}-{port}"
    try:
        pymilvus.connections.connect(alias=alias, host=host, port=str(port), timeout=CONNECT_TIMEOUT_SECONDS)
    except Exception as exc:
        raise IndexStoreError(f"milvus://{host}:{port}: cannot connect to Milvus ({_reason(exc)})") from None
    return alias


class MilvusVectors:
    """One vector set `name` (local, global, objects: the Milvus collection `<collection>_<name>`)
    of a distributed store.

    `ntotal` is the number of vectors of committed images when the store was opened; searches
    leave out the images `hidden()` names (a write in progress, see `DistributedStore`).
    """

    def __init__(
        self,
        name: str,
        alias: str,
        collection_name: str,
        dim: int,
        conf: VectorIndexConf,
        ntotal: int,
        index: MilvusIndex,
        hidden: Callable[[], list[int]],
    ):
        self.name = name
        self.alias = alias
        self.collection_name = collection_name
        self.dim = dim
        self.conf = conf
        self.ntotal = ntotal
        self._hidden = hidden
        self.index = index
        self._collection = None

    def create(self) -> None:
        """Create the collection (exact index) when the server does not have it yet, and load it."""
        pymilvus = _pymilvus()
        if not self._call(pymilvus.utility.has_collection, self.collection_name, using=self.alias):
            schema = pymilvus.CollectionSchema(
                [
                    pymilvus.FieldSchema("id", pymilvus.DataType.INT64, is_primary=True, auto_id=False),
                    pymilvus.FieldSchema("image_id", pymilvus.DataType.INT64),
                    pymilvus.FieldSchema("vector", pymilvus.DataType.FLOAT_VECTOR, dim=self.dim),
                ],
                description="imgprov vectors: id = image_id << 16 | item",
            )
            collection = self._call(
                pymilvus.Collection,
                self.collection_name,
                schema,
                using=self.alias,
                consistency_level="Strong",
            )
            self._build(collection, self.index)
        self.collection().load()

    def exists(self) -> bool:
        return bool(self._call(_pymilvus().utility.has_collection, self.collection_name, using=self.alias))

    def collection(self):
        """The pymilvus Collection (opened once)."""
        if self._collection is None:
            if not self.exists():
                raise IndexStoreError(
                    f"Milvus has no collection {self.collection_name}; run `imgprov check --repair`"
                )
            self._collection = self._call(_pymilvus().Collection, self.collection_name, using=self.alias)
        return self._collection

    @property
    def exact(self) -> bool:
        return self.index.exact

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k-NN of (n, dim) float32 queries: (n, k) float32 distances (squared L2, or inner product)
        and (n, k) int64 vector ids, -1 where fewer than k were found (as FAISS answers)."""
        queries = np.ascontiguousarray(queries, np.float32)
        distances = np.full((len(queries), k), np.inf if self.conf.metric == "l2" else -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if len(queries) == 0 or k == 0:
            return distances, ids
        hidden = self._hidden()
        expression = f"image_id not in {sorted(hidden)}" if hidden else None
        params = {"metric_type": self.index.metric, "params": self.index.search_params(k)}
        collection = self.collection()
        for start in range(0, len(queries), SEARCH_QUERIES):
            results = self._call(
                collection.search,
                queries[start : start + SEARCH_QUERIES].tolist(),
                "vector",
                params,
                limit=k,
                expr=expression,
                consistency_level="Strong",
            )
            for row, hits in enumerate(results):
                found = len(hits.ids)
                ids[start + row, :found] = hits.ids
                distances[start + row, :found] = hits.distances
        return distances, ids

    def insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (M,) int64 vector ids with their (M, dim) float32 vectors."""
        collection = self.collection()
        for part_ids, part_vectors in zip(
            batched(ids, INSERT_ROWS), batched(vectors, INSERT_ROWS), strict=True
        ):
            self._call(
                collection.insert,
                [
                    part_ids.tolist(),
                    (part_ids >> ITEM_BITS).tolist(),
                    np.ascontiguousarray(part_vectors, np.float32),
                ],
            )

    def delete_images(self, image_ids: Sequence[int]) -> None:
        """Delete every vector of these images."""
        collection = self.collection()
        for part in batched(image_ids, DELETE_IMAGES):
            self._call(collection.delete, f"image_id in {sorted(int(image_id) for image_id in part)}")

    def counts_by_image(self) -> dict[int, int]:
        """How many vectors each image has in the collection, as the server holds them now."""
        counts: dict[int, int] = {}
        iterator = self._call(
            self.collection().query_iterator,
            batch_size=16_384,
            expr="id >= 0",
            output_fields=["image_id"],
            consistency_level="Strong",
        )
        try:
            while rows := iterator.next():
                for row in rows:
                    counts[row["image_id"]] = counts.get(row["image_id"], 0) + 1
        finally:
            iterator.close()
        return counts

    def count(self) -> int:
        """Every row the collection holds now, committed or not."""
        rows = self._call(
            self.collection().query, expr="", output_fields=["count(*)"], consistency_level="Strong"
        )
        return int(rows[0]["count(*)"])

    def flush(self) -> None:
        self._call(self.collection().flush)

    def set_index(self, index: MilvusIndex) -> None:
        """Rebuild the collection's index as `index` (release, drop, build, wait, load)."""
        collection = self.collection()
        self._call(collection.flush)
        self._call(collection.release)
        if collection.indexes:
            self._call(collection.drop_index)
        self._build(collection, index)
        self._call(collection.load)
        self.index = index

    def server_collections(self) -> list[str]:
        """The names of every collection on this set's Milvus server."""
        return list(self._call(_pymilvus().utility.list_collections, using=self.alias))

    def drop(self) -> None:
        if self.exists():
            self._call(_pymilvus().utility.drop_collection, self.collection_name, using=self.alias)
        self._collection = None

    def _build(self, collection, index: MilvusIndex) -> None:
        self._call(
            collection.create_index,
            "vector",
            {"index_type": index.kind, "metric_type": index.metric, "params": index.build},
        )
        self._call(
            _pymilvus().utility.wait_for_index_building_complete, self.collection_name, using=self.alias
        )

    def _call(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except IndexStoreError:
            raise
        except Exception as exc:
            if type(exc).__module__.startswith(("pymilvus", "grpc")):
                raise IndexStoreError(f"Milvus collection {self.collection_name}: {_reason(exc)}") from None
            raise


def replace_collection(vector_set: MilvusVectors, collection_name: str, index: MilvusIndex) -> MilvusVectors:
    """A vector set like `vector_set` (name, dimension, preset) kept in another Milvus collection,
    empty until written (a set whose every vector is rewritten, e.g. under a new whitening)."""
    return MilvusVectors(
        vector_set.name,
        vector_set.alias,
        collection_name,
        vector_set.dim,
        vector_set.conf,
        0,
        index,
        vector_set._hidden,
    )


def _pymilvus():
    try:
        with warnings.catch_warnings():
            # pymilvus 2.3 imports pkg_resources, which warns that it is deprecated.
            warnings.simplefilter("ignore")
            import pymilvus
    except ImportError:
        raise IndexStoreError("a Milvus store needs pymilvus: pip install 'imgprov[scale]'") from None
    return pymilvus


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return message.strip().splitlines()[0]
