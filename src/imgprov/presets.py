"""Named presets: frozen dataclasses whose names encode their key parameters.

Every stage takes its configuration as one of these records; nothing reads globals. Unknown names
raise `PresetError` listing the valid ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from imgprov.errors import PresetError

T = TypeVar("T")


@dataclass(frozen=True)
class LocalFeatureConf:
    """RootSIFT keypoints and descriptors.

    The image is resized so that its longest side is at most `max_side` before detection; keypoint
    coordinates and scales are mapped back to original-image pixels.
    """

    name: str
    max_keypoints: int
    max_side: int
    contrast_threshold: float = 0.02
    edge_threshold: float = 10.0
    n_octave_layers: int = 3


@dataclass(frozen=True)
class LocalStorageConf:
    """How the catalogue keeps each image's local features (`imgprov.extract.local_codec`).

    pq_bytes: 0 keeps every descriptor exactly, (N, 128) uint8; else each descriptor is a product-
    quantized code of `pq_bytes` sub-quantizers of 256 centroids (8 bits each), (N, pq_bytes) uint8,
    against the codebook `codebook` shipped in imgprov/extract/codebooks, whose content must hash to
    `codebook_sha256` (codes only mean something with the codebook that made them).
    half_geometry: x and y stay float32 (exact, original-image pixels), scale and angle become float16.
    """

    name: str
    pq_bytes: int = 0
    codebook: str | None = None
    codebook_sha256: str | None = None
    half_geometry: bool = False

    @property
    def geometry_bytes(self) -> int:
        """Bytes of one keypoint's geometry: 16 (4 float32) or 12 (2 float32 + 2 float16)."""
        return 12 if self.half_geometry else 16

    @property
    def descriptor_bytes(self) -> int:
        """Bytes of one stored descriptor: 128 (uint8) or the PQ code size."""
        return self.pq_bytes or 128

    @property
    def bytes_per_keypoint(self) -> int:
        return self.geometry_bytes + self.descriptor_bytes


@dataclass(frozen=True)
class VectorIndexConf:
    """A FAISS vector index: exact while small, IVF-PQ trained on the collection once large.

    The switch happens when the set holds more than `exact_max_vectors` vectors; the coarse
    quantizer gets about `ivf_lists_per_sqrt` * sqrt(N) lists trained on `train_points_per_list`
    sampled vectors per list, codes are `pq_bytes` bytes, and both are retrained when the set grows
    to `retrain_growth` times the size they were trained on.
    metric: "l2" or "ip" (inner product, for L2-normalized vectors); opq: learn a rotation (OPQ)
    that balances the variance over the PQ sub-vectors before coding.
    """

    name: str
    exact_max_vectors: int
    pq_bytes: int
    nprobe: int
    metric: str = "l2"
    opq: bool = False
    ivf_lists_per_sqrt: float = 1.0
    retrain_growth: float = 4.0
    train_points_per_list: int = 64


@dataclass(frozen=True)
class OS2OSConf:
    """OS2OS voting and scoring (paper 002, Eq. 1-11).

    knn: K nearest neighbours per query descriptor (Eq. 1); phi: reference rank, usually K/2.
    window_scale, window_eps: b and epsilon of the vote cell w_s = b * (w*h)^(1/(2+eps)) (Eq. 6).
    """

    name: str
    knn: int
    phi: int
    window_scale: float
    window_eps: float
    min_cluster_votes: int = 4
    max_clusters_per_image: int = 4
    max_voting_images: int = 2000


@dataclass(frozen=True)
class VerifyConf:
    """Sequential MAGSAC++ fitting of transforms between a query and a candidate.

    reprojection_fraction: inlier threshold as a fraction of the candidate's diagonal.
    min_inliers: fewest inliers that make a region (and so a match).
    min_support: lowest fraction of the keypoints inside a region that must be inliers.
    enough_seeds: with this many OS2OS correspondences the exhaustive ratio-test matching is skipped.
    """

    name: str
    ratio: float
    reprojection_fraction: float
    min_inliers: int
    min_support: float
    max_regions: int = 4
    max_iterations: int = 2000
    enough_seeds: int = 100


@dataclass(frozen=True)
class CascadeConf:
    """The search cascade's first look (`imgprov.search.cascade`): the query's `first_features`
    verify the `verify_top` most similar images of the global shortlist (and, once one settles the
    query, only those at least `duplicate_cosine` similar); the search stops there when a verified
    match has P(match) >= `certain` and at least `min_inliers` inliers, and explains the query:
    cutting it into a `grid` x `grid` grid, no 4-connected patch of more than `max_gap` textured
    cells (holding at least `textured_keypoints` keypoints each) is without an inlier. Otherwise
    every stage runs.
    """

    name: str
    first_features: LocalFeatureConf
    verify_top: int = 3
    duplicate_cosine: float = 0.5
    certain: float = 0.99
    min_inliers: int = 12
    grid: int = 12
    textured_keypoints: int = 2
    max_gap: int = 1


@dataclass(frozen=True)
class SearchConf:
    """Two-stage search.

    Local stage: OS2OS shortlist of `shortlist` images, the best `verify_top` verified.
    Global stage: the compressed index proposes `global_rerank` neighbours, their stored full
    embeddings re-rank them by exact cosine and the best `global_shortlist` stay (an exact index
    gives the shortlist directly); the `global_verify` most similar of them are verified with local
    features too when both stages run.
    Mirrored queries: when no verified region covers `mirror_below_coverage` of the query, its mirror
    image is searched and verified too (`query_flips`); if that does not help either, so is the
    query restored from impulse noise or low contrast, when it shows them (`restore_degraded`).
    """

    name: str
    os2os: OS2OSConf
    verify: VerifyConf
    shortlist: int
    verify_top: int
    global_shortlist: int = 100
    global_rerank: int = 1000
    global_verify: int = 10
    query_flips: bool = True
    mirror_below_coverage: float = 0.5
    restore_degraded: bool = True
    cascade: CascadeConf | None = None


LOCAL_FEATURES: Mapping[str, LocalFeatureConf] = {
    conf.name: conf
    for conf in (
        LocalFeatureConf(name="rootsift-1k-768", max_keypoints=1000, max_side=768),
        LocalFeatureConf(name="rootsift-2k-1024", max_keypoints=2000, max_side=1024),
        LocalFeatureConf(name="rootsift-4k-1600", max_keypoints=4000, max_side=1600),
    )
}

LOCAL_STORAGES: Mapping[str, LocalStorageConf] = {
    conf.name: conf
    for conf in (
        LocalStorageConf(name="rootsift-u8"),
        LocalStorageConf(
            name="rootsift-pq32",
            pq_bytes=32,
            codebook="rootsift-pq32.npy",
            codebook_sha256="be24f345b9fe90a1d8084ba0c9573bb85b3393e6d7e52b9d3f7aef8974297669",
            half_geometry=True,
        ),
    )
}
"""Per-image local-feature encodings: 144 bytes per keypoint exact, or 44 (32-byte PQ code, 12 bytes
of geometry); codebooks trained by scripts/train_local_pq.py (docs/scaling.md)."""

LOCAL_INDEXES: Mapping[str, VectorIndexConf] = {
    conf.name: conf
    for conf in (
        VectorIndexConf(name="exact50k-ivfpq32-probe16", exact_max_vectors=50_000, pq_bytes=32, nprobe=16),
        VectorIndexConf(name="exact50k-ivfpq64-probe32", exact_max_vectors=50_000, pq_bytes=64, nprobe=32),
    )
}

GLOBAL_INDEXES: Mapping[str, VectorIndexConf] = {
    conf.name: conf
    for conf in (
        VectorIndexConf(
            name="exact20k-opq-ivfpq16-probe32",
            exact_max_vectors=20_000,
            pq_bytes=16,
            nprobe=32,
            metric="ip",
            opq=True,
        ),
        VectorIndexConf(
            name="exact20k-ivfpq16-probe32", exact_max_vectors=20_000, pq_bytes=16, nprobe=32, metric="ip"
        ),
        VectorIndexConf(
            name="exact20k-ivfpq16-probe128", exact_max_vectors=20_000, pq_bytes=16, nprobe=128, metric="ip"
        ),
        VectorIndexConf(
            name="exact20k-opq-ivfpq32-probe64",
            exact_max_vectors=20_000,
            pq_bytes=32,
            nprobe=64,
            metric="ip",
            opq=True,
        ),
    )
}
"""Global-descriptor indexes: 16-byte (128-bit) product-quantized codes as in SImProv."""

OBJECT_INDEX = VectorIndexConf(
    name="exact20k-ivfpq32-probe32", exact_max_vectors=20_000, pq_bytes=32, nprobe=32
)
"""Object vectors (OE-SIR, one per box, up to k per image): exact up to 20k objects, then 32-byte PQ
codes (the paper stores 8 x 32 bytes per image); L2, as Eq. 7 is a squared L2 distance."""

_OS2OS_K10 = OS2OSConf(name="os2os-k10", knn=10, phi=5, window_scale=0.5, window_eps=0.5)
_OS2OS_K20 = OS2OSConf(name="os2os-k20", knn=20, phi=10, window_scale=0.5, window_eps=0.5)
_MAGSAC = VerifyConf(
    name="magsac-r85-i8-s05", ratio=0.85, reprojection_fraction=0.006, min_inliers=8, min_support=0.05
)

_FIRST_LOOK = CascadeConf(
    name="first-look-1k-640-top3-p99-gap1",
    first_features=LocalFeatureConf(name="rootsift-1k-640", max_keypoints=1000, max_side=640),
)

SEARCHES: Mapping[str, SearchConf] = {
    conf.name: conf
    for conf in (
        SearchConf(
            name="os2os-k10-verify12",
            os2os=_OS2OS_K10,
            verify=_MAGSAC,
            shortlist=100,
            verify_top=12,
            cascade=_FIRST_LOOK,
        ),
        SearchConf(
            name="os2os-k20-verify50",
            os2os=_OS2OS_K20,
            verify=_MAGSAC,
            shortlist=200,
            verify_top=50,
            cascade=_FIRST_LOOK,
        ),
    )
}

DEFAULT_LOCAL_FEATURES = "rootsift-2k-1024"
DEFAULT_LOCAL_INDEX = "exact50k-ivfpq32-probe16"
DEFAULT_LOCAL_STORAGE = "rootsift-u8"
DEFAULT_SEARCH = "os2os-k10-verify12"
DEFAULT_GLOBAL_INDEX = "exact20k-ivfpq16-probe128"


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """Return `table[name]`, or raise `PresetError` naming the valid choices."""
    try:
        return table[name]
    except KeyError:
        valid = ", ".join(sorted(table))
        raise PresetError(f"unknown {what} preset {name!r}; valid: {valid}") from None


def local_features(name: str = DEFAULT_LOCAL_FEATURES) -> LocalFeatureConf:
    return lookup(LOCAL_FEATURES, name, "local-feature")


def local_index(name: str = DEFAULT_LOCAL_INDEX) -> VectorIndexConf:
    return lookup(LOCAL_INDEXES, name, "local-index")


def local_storage(name: str = DEFAULT_LOCAL_STORAGE) -> LocalStorageConf:
    return lookup(LOCAL_STORAGES, name, "local-storage")


def global_index(name: str = DEFAULT_GLOBAL_INDEX) -> VectorIndexConf:
    return lookup(GLOBAL_INDEXES, name, "global-index")


def search(name: str = DEFAULT_SEARCH) -> SearchConf:
    return lookup(SEARCHES, name, "search")
