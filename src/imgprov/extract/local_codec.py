"""Per-image local features as the catalogue stores them: exact, or compressed for collections
past the size where a feature-level index pays (docs/scaling.md, "Local features at scale").

A `LocalStorageConf` preset picks the encoding. Two blobs per image, both column blocks so that
each decodes with one `np.frombuffer`:

- geometry: (N, 4) float32 rows of x, y, scale, angle (16 B per keypoint); with `half_geometry`,
  (N, 2) float32 x, y followed by (N, 2) float16 scale, angle (12 B per keypoint). x and y stay
  exact: verification fits transforms on them.
- descriptors: (N, 128) uint8 quantized RootSIFT (128 B per keypoint); with `pq_bytes`, (N, M)
  uint8 product-quantization codes (M = pq_bytes sub-vectors of 128 / M dimensions, 256 centroids
  each, FAISS `ProductQuantizer`), decoded to the nearest (N, 128) uint8 descriptors.

The PQ codebooks are trained once, offline, by scripts/train_local_pq.py and shipped beside this
module in codebooks/ as (M, 256, 128 / M) float32 `.npy` files; the preset pins each file's sha256.
"""

from __future__ import annotations

import hashlib
import io
from functools import cache
from importlib import resources

import faiss
import numpy as np

from imgprov.errors import IndexStoreError
from imgprov.extract.rootsift import DESCRIPTOR_DIM, LocalFeatures
from imgprov.presets import LocalStorageConf

CODEBOOK_PACKAGE = "imgprov.extract.codebooks"
PQ_BITS = 8
"""Bits per sub-quantizer code: 256 centroids, one byte per sub-vector."""


class LocalCodec:
    """Encodes and decodes one image's local features under one `LocalStorageConf`."""

    def __init__(self, conf: LocalStorageConf):
        self.conf = conf
        self.quantizer = _quantizer(conf) if conf.pq_bytes else None

    @property
    def lossless(self) -> bool:
        """Whether decoding gives back exactly the descriptors and geometry that were encoded."""
        return self.quantizer is None and not self.conf.half_geometry

    def encode(self, features: LocalFeatures) -> tuple[bytes, bytes]:
        """The (geometry, descriptors) blobs of one image's features."""
        return self.encode_geometry(features.geometry()), self.encode_descriptors(features.descriptors)

    def decode(self, geometry: bytes, descriptors: bytes, image_size: tuple[int, int]) -> LocalFeatures:
        """The features `encode` stored: image_size is the (width, height) they refer to."""
        return LocalFeatures.from_arrays(
            self.decode_geometry(geometry), self.decode_descriptors(descriptors), image_size
        )

    def encode_geometry(self, geometry: np.ndarray) -> bytes:
        """geometry: (N, 4) float32 rows of x, y, scale, angle -> the stored blob."""
        geometry = np.asarray(geometry, np.float32).reshape(-1, 4)
        if not self.conf.half_geometry:
            return np.ascontiguousarray(geometry).tobytes()
        return np.ascontiguousarray(geometry[:, :2]).tobytes() + geometry[:, 2:].astype(np.float16).tobytes()

    def decode_geometry(self, blob: bytes) -> np.ndarray:
        """The stored blob -> (N, 4) float32 rows of x, y, scale, angle."""
        if not self.conf.half_geometry:
            return np.frombuffer(blob, dtype=np.float32).reshape(-1, 4)
        count = len(blob) // self.conf.geometry_bytes
        positions = np.frombuffer(blob, dtype=np.float32, count=2 * count).reshape(count, 2)
        shape = np.frombuffer(blob, dtype=np.float16, offset=8 * count).reshape(count, 2)
        return np.column_stack([positions, shape.astype(np.float32)])

    def encode_descriptors(self, descriptors: np.ndarray) -> bytes:
        """descriptors: (N, 128) uint8 -> the stored blob ((N, 128) or (N, pq_bytes) uint8)."""
        descriptors = np.ascontiguousarray(descriptors, dtype=np.uint8).reshape(-1, DESCRIPTOR_DIM)
        if self.quantizer is None:
            return descriptors.tobytes()
        if not len(descriptors):
            return b""
        return self.quantizer.compute_codes(descriptors.astype(np.float32)).tobytes()

    def decode_descriptors(self, blob: bytes) -> np.ndarray:
        """The stored blob -> (N, 128) uint8 descriptors (the nearest to the PQ reconstruction)."""
        if self.quantizer is None:
            return np.frombuffer(blob, dtype=np.uint8).reshape(-1, DESCRIPTOR_DIM)
        codes = np.frombuffer(blob, dtype=np.uint8).reshape(-1, self.conf.pq_bytes)
        if not len(codes):
            return np.zeros((0, DESCRIPTOR_DIM), np.uint8)
        decoded = self.quantizer.decode(np.ascontiguousarray(codes))
        return np.clip(np.rint(decoded), 0, 255).astype(np.uint8)

    def stored_descriptors(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, 128) uint8 descriptors as `decode_descriptors` will read them back once stored."""
        if self.quantizer is None:
            return descriptors
        return self.decode_descriptors(self.encode_descriptors(descriptors))


@cache
def local_codec(conf: LocalStorageConf) -> LocalCodec:
    """The codec of a preset, its codebook loaded once per process."""
    return LocalCodec(conf)


def _quantizer(conf: LocalStorageConf) -> faiss.ProductQuantizer:
    """A FAISS ProductQuantizer holding the preset's shipped codebook (checked against its sha256)."""
    data = resources.files(CODEBOOK_PACKAGE).joinpath(conf.codebook).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != conf.codebook_sha256:
        raise IndexStoreError(
            f"codebook {conf.codebook} of local-storage preset {conf.name} has sha256 {digest}, "
            f"expected {conf.codebook_sha256}: reinstall imgprov"
        )
    return quantizer_from_centroids(load_centroids(data))


def load_centroids(data: bytes) -> np.ndarray:
    """The (M, 256, 128 / M) float32 centroids of a `.npy` codebook file's bytes."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def quantizer_from_centroids(centroids: np.ndarray) -> faiss.ProductQuantizer:
    """A FAISS ProductQuantizer over 128-d vectors with these (M, 256, 128 / M) float32 centroids."""
    sub_quantizers, centroid_count, sub_dim = centroids.shape
    if centroid_count != 1 << PQ_BITS or sub_quantizers * sub_dim != DESCRIPTOR_DIM:
        raise IndexStoreError(f"a PQ codebook of shape {centroids.shape} does not code 128-d descriptors")
    quantizer = faiss.ProductQuantizer(DESCRIPTOR_DIM, sub_quantizers, PQ_BITS)
    faiss.copy_array_to_vector(np.ascontiguousarray(centroids, np.float32).ravel(), quantizer.centroids)
    return quantizer
