"""What a Ray worker does with a batch of sources: fetch, hash, decode, extract, and pack rows.

`BatchExtractor` is built once per worker process (Ray Data's actor pool), so the ONNX and OpenCV
models load once; each call takes a batch of sources and returns one row per source: the features
of a new or changed image, "unchanged" when the bytes hash to what the collection already holds for
that path (nothing is extracted, which is what makes a re-run after a failure cheap), or "failed"
with a one-line reason. Rows travel as flat numpy columns (bytes for variable-length arrays), which
Ray Data stores as Arrow without pickling.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import cv2
import numpy as np

from imgprov.errors import ImgprovError
from imgprov.extract.objects.conf import ObjectConf
from imgprov.extract.rootsift import LocalFeatures
from imgprov.extract.sscd import GlobalConf, SSCDExtractor
from imgprov.images import DEFAULT_MAX_BYTES
from imgprov.indexing.pipeline import (
    ExtractedContent,
    FindObjects,
    embedder_for,
    extract_content,
    object_finder_for,
)
from imgprov.indexing.ray.sources import HTTP_TIMEOUT_SECONDS, fetch
from imgprov.presets import LocalFeatureConf
from imgprov.provenance import ContentCredentials, TrustAnchors
from imgprov.storage.records import NewImage, StoredObjects

ADDED = "ok"
UNCHANGED = "unchanged"
FAILED = "failed"

BYTES_COLUMNS = ("geometry", "descriptors", "embedding", "object_boxes", "object_vectors", "credentials")
TEXT_COLUMNS = ("source", "status", "message", "sha256", "format", "node")
NUMBER_COLUMNS = {"size_bytes": np.int64, "width": np.int32, "height": np.int32, "mtime": np.float64}


@dataclass(frozen=True)
class ExtractionSpec:
    """What workers extract: the collection's presets (None: no global set, no objects), the trust
    anchors of C2PA credentials, and per worker the CPU threads and the fetch limits."""

    features: LocalFeatureConf
    global_conf: GlobalConf | None
    object_conf: ObjectConf | None
    trust: TrustAnchors | None = None
    threads: int = 1
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = HTTP_TIMEOUT_SECONDS


class BatchExtractor:
    """A Ray Data callable class: extracts a batch of sources with models loaded once per worker."""

    def __init__(self, spec: ExtractionSpec):
        cv2.setNumThreads(spec.threads)
        self.spec = spec
        self.node = _ray_node_id()
        self.embed = embedder_for(spec.global_conf, spec.threads) if spec.global_conf is not None else None
        self.find_objects: FindObjects | None = None
        if spec.object_conf is not None:
            self.find_objects = object_finder_for(_object_stage(spec.object_conf, spec.threads))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """batch: "source" and "known" (the sha256 the collection holds for the source, or "") columns.

        Returns the columns of `BYTES_COLUMNS`, `TEXT_COLUMNS` and `NUMBER_COLUMNS`, one row per source;
        "node" is the Ray node this worker runs on.
        """
        rows = [
            {**self.extract(str(source), str(known)), "node": self.node}
            for source, known in zip(batch["source"], batch["known"], strict=True)
        ]
        return pack_rows(rows)

    def extract(self, source: str, known: str) -> dict:
        """One source's row (see `pack_rows`)."""
        try:
            fetched = fetch(source, max_bytes=self.spec.max_bytes, timeout=self.spec.timeout)
            sha256 = hashlib.sha256(fetched.data).hexdigest()
            if sha256 == known:
                return {"source": source, "status": UNCHANGED, "sha256": sha256}
            content, sha256 = extract_content(
                fetched.data, source, self.spec.features, self.embed, self.spec.trust, self.find_objects
            )
        except ImgprovError as exc:
            return {"source": source, "status": FAILED, "message": str(exc)}
        return content_row(source, sha256, fetched.mtime, content)


def _ray_node_id() -> str:
    """The id of the Ray node this process runs on ("" outside a Ray worker)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _object_stage(conf: ObjectConf, threads: int):
    """The object stage with its SSCD crop model on `threads` threads (EfficientNet as configured)."""
    from imgprov.extract.objects.embed import crop_model_conf
    from imgprov.extract.objects.stage import ObjectStage

    if conf.embedding.backbone == "effnet-roi":
        return ObjectStage(conf)
    return ObjectStage(conf, sscd=SSCDExtractor(crop_model_conf(conf.embedding), intra_op_threads=threads))


def content_row(source: str, sha256: str, mtime: float, content: ExtractedContent) -> dict:
    """An extracted image as a row of plain values and bytes."""
    features = content.features
    objects = content.objects
    credentials = b""
    if content.credentials is not None:
        credentials = json.dumps(
            {
                "document": content.credentials.to_json(),
                "store": content.credentials.raw_store.decode("latin-1"),
            }
        ).encode()
    return {
        "source": source,
        "status": ADDED,
        "sha256": sha256,
        "format": content.format,
        "size_bytes": content.size_bytes,
        "width": content.width,
        "height": content.height,
        "mtime": mtime,
        "geometry": features.geometry().tobytes(),
        "descriptors": np.ascontiguousarray(features.descriptors, np.uint8).tobytes(),
        "embedding": b""
        if content.embedding is None
        else np.asarray(content.embedding, np.float32).tobytes(),
        "object_boxes": b"" if objects is None else np.asarray(objects.boxes, np.float32).tobytes(),
        "object_vectors": b"" if objects is None else np.asarray(objects.vectors, np.float32).tobytes(),
        "credentials": credentials,
    }


def pack_rows(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows as columns: object arrays of bytes or str, and numeric arrays (missing values empty or 0)."""
    columns: dict[str, np.ndarray] = {}
    for name in BYTES_COLUMNS:
        columns[name] = _object_array([row.get(name, b"") for row in rows])
    for name in TEXT_COLUMNS:
        columns[name] = _object_array([row.get(name, "") for row in rows])
    for name, dtype in NUMBER_COLUMNS.items():
        columns[name] = np.array([row.get(name, 0) for row in rows], dtype=dtype)
    return columns


def unpack_rows(batch: dict[str, np.ndarray]) -> list[dict]:
    """The rows of a packed batch, as `pack_rows` was given them (numbers as Python numbers)."""
    count = len(batch["source"])
    return [{name: _plain(values[index]) for name, values in batch.items()} for index in range(count)]


def new_image(row: dict, path: str, has_objects: bool) -> NewImage:
    """The `NewImage` of an extracted row, to be added under `path`."""
    width, height = int(row["width"]), int(row["height"])
    geometry = np.frombuffer(row["geometry"], np.float32)
    descriptors = np.frombuffer(row["descriptors"], np.uint8)
    features = LocalFeatures.from_arrays(geometry.copy(), descriptors.copy(), (width, height))
    embedding = np.frombuffer(row["embedding"], np.float32).copy() if row["embedding"] else None
    objects = _objects(row) if has_objects else None
    credentials = None
    if row["credentials"]:
        stored = json.loads(row["credentials"])
        # latin-1 maps each byte to one character and back, so the raw store survives JSON.
        credentials = ContentCredentials.from_json(stored["document"], stored["store"].encode("latin-1"))
    return NewImage(
        path=path,
        sha256=row["sha256"],
        size_bytes=int(row["size_bytes"]),
        width=width,
        height=height,
        format=row["format"],
        mtime=float(row["mtime"]),
        features=features,
        embedding=embedding,
        credentials=credentials,
        objects=objects,
    )


def _objects(row: dict) -> StoredObjects:
    boxes = np.frombuffer(row["object_boxes"], np.float32).reshape(-1, 4).copy()
    vectors = np.frombuffer(row["object_vectors"], np.float32)
    dim = len(vectors) // max(len(boxes), 1)
    return StoredObjects(boxes, vectors.reshape(len(boxes), dim).copy())


def _object_array(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
