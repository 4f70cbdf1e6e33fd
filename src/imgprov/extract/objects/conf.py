"""Object-stage presets (OE-SIR, paper 000): frozen dataclasses whose names encode their key parameters.

`object_preset(name)` returns a preset or raises `PresetError` listing the valid names. Name parts:
the proposal method and k (`grid-k8`), the embedding (`mnv4c224`: SSCD MobileNetV4 on 224-pixel
box crops, `r50c224`: SSCD ResNet50 crops, `effnet512`: one EfficientNet-Lite0 pass at 512 pixels
pooled per box) and the whitening (`raw`: none, `w256`: PCA-whitened to 256 dimensions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from imgprov.errors import PresetError
from imgprov.extract.objects.localize import LocalizeConf
from imgprov.extract.sscd import MODELS, ModelName
from imgprov.presets import lookup

ProposalMethod = Literal["grid", "selective", "saliency", "detector"]
PROPOSAL_METHODS: tuple[ProposalMethod, ...] = ("grid", "selective", "saliency", "detector")
EmbeddingBackbone = Literal["sscd-crops", "effnet-roi"]
EMBEDDING_BACKBONES: tuple[EmbeddingBackbone, ...] = ("sscd-crops", "effnet-roi")
MapLevel = Literal["head", "stride32", "stride16"]
MAP_LEVELS: tuple[MapLevel, ...] = ("head", "stride32", "stride16")


@dataclass(frozen=True)
class ProposalConf:
    """Where the objects of an image are: up to `max_objects` boxes (the paper's k, Table 4).

    method: "grid" (multi-scale regions in the R-MAC layout), "selective" (OpenCV selective
        search), "saliency" (spectral-residual saliency blobs) or "detector" (COCO CenterNet,
        `imgprov.extract.objects.detector`); see `imgprov.extract.objects.proposals`.
    whole_image: the first box is the whole image. The paper's objects are detections only; here
        every image keeps one object that a near-duplicate query matches whatever its content.
    working_side: selective search and saliency run on a copy with this long side (pixels).
    min_area, max_area: fractions of the image area a proposal may cover (the whole image aside).
    max_overlap: a proposal whose IoU with a box kept before exceeds this is dropped.
    min_score: detector confidence below which a detection is not an object.
    """

    method: ProposalMethod
    max_objects: int
    whole_image: bool = True
    working_side: int = 256
    min_area: float = 0.01
    max_area: float = 0.8
    max_overlap: float = 0.6
    min_score: float = 0.05

    def __post_init__(self) -> None:
        if self.method not in PROPOSAL_METHODS:
            raise PresetError(
                f"unknown proposal method {self.method!r}; valid: {', '.join(PROPOSAL_METHODS)}"
            )
        if self.max_objects < 1:
            raise PresetError(f"max_objects must be at least 1, not {self.max_objects}")
        if not 0.0 <= self.min_area < self.max_area <= 1.0:
            raise PresetError(f"need 0 <= min_area < max_area <= 1, not {self.min_area}, {self.max_area}")


@dataclass(frozen=True)
class EmbeddingConf:
    """How a box becomes a raw object vector (OE-SIR Eq. 4).

    backbone "sscd-crops": each box's pixels are embedded by the unmodified SSCD model
        `sscd_model` resized to crop_size x crop_size (k forward passes, one batch): the paper's
        two-step "detect, then embed with a classification model".
    backbone "effnet-roi": one EfficientNet-Lite0 pass (`feature_maps` preset) and every box pooled
        from its map `level` by ROIAlign (pool_size x pool_size bins, sampling_ratio^2 bilinear
        samples per bin) and GeM (exponent gem_p): the paper's one-pass X = ROIAlign(C, B).
    """

    backbone: EmbeddingBackbone
    sscd_model: ModelName = "sscd_distilled"
    crop_size: int = 224
    feature_maps: str = "effnet-lite0-512"
    level: MapLevel = "head"
    pool_size: int = 4
    sampling_ratio: int = 2
    gem_p: float = 3.0

    def __post_init__(self) -> None:
        if self.backbone not in EMBEDDING_BACKBONES:
            raise PresetError(f"unknown backbone {self.backbone!r}; valid: {', '.join(EMBEDDING_BACKBONES)}")
        if self.sscd_model not in MODELS:
            raise PresetError(f"unknown SSCD model {self.sscd_model!r}; valid: {', '.join(MODELS)}")
        if self.level not in MAP_LEVELS:
            raise PresetError(f"unknown map level {self.level!r}; valid: {', '.join(MAP_LEVELS)}")
        if self.crop_size < 64 or self.crop_size % 32:
            raise PresetError(f"crop_size must be a multiple of 32 and at least 64, not {self.crop_size}")
        if self.pool_size < 1 or self.sampling_ratio < 1 or self.gem_p <= 0:
            raise PresetError("pool_size and sampling_ratio must be at least 1 and gem_p positive")


@dataclass(frozen=True)
class WhiteningConf:
    """PCA-whitening learned on the collection's raw object vectors (`ObjectWhitening`).

    dim: output dimensions, capped by the rank of the training sample; 0 searches the raw vectors
        (SSCD's own output is already a whitened projection, and re-whitening it on a few thousand
        objects lost recall in benchmarks/bench_objects.py).
    shrinkage: added to every eigenvalue as a fraction of their mean, so that the weakest kept
        directions are not amplified without bound.
    """

    dim: int = 0
    shrinkage: float = 1.0

    def __post_init__(self) -> None:
        if self.dim < 0 or self.shrinkage < 0:
            raise PresetError("whitening dim and shrinkage must not be negative")


@dataclass(frozen=True)
class FusionWeights:
    """A logistic model of P(the candidate is one of the images the query is made of).

    logit = bias + local x log(1 + verified inliers) + support x best verified region's inlier
    fraction + cosine x global cosine + os2os x OS2OS score + objects x best object pair's cosine
    (Eq. 7 as a similarity, 1 - D / 2). threshold: the fused probability at which a candidate is
    reported as a match. Fitted by `python -m benchmarks.bench_objects --calibrate` on a training
    split (seed 1001) disjoint from the benchmark's test queries.
    """

    bias: float = -9.072
    local: float = 2.35
    support: float = 0.553
    cosine: float = 9.038
    os2os: float = 3.212
    objects: float = 22.292
    threshold: float = 0.353


@dataclass(frozen=True)
class RetrievalConf:
    """Object search, splice localization against the host, fusion and roles.

    neighbours: nearest collection objects looked up per query object.
    host_min_coverage: the verified region that aligns the host (for Eq. 9) must cover at least
        this fraction of the query.
    query_proposals: proposals added to a query's whole-image box and unexplained regions when its
        host is known (adding them lost donor recall: they match unrelated images).
    fallback_proposals: proposals that stand for the query's objects when no host is known.
    localize: how the regions the host does not explain are found (Eq. 9).
    host_coverage: the match explaining most of the query is its host when that is at least this
        fraction of the query; every other match is a donor.
    host_cosine: a match with neither a verified region nor an object pair explains the whole
        query when its global cosine reaches this (SSCD copies score far above it), else nothing.
    """

    neighbours: int = 100
    host_min_coverage: float = 0.25
    query_proposals: int = 0
    fallback_proposals: int = 8
    localize: LocalizeConf = field(default_factory=LocalizeConf)
    host_coverage: float = 0.5
    host_cosine: float = 0.5
    fusion: FusionWeights = field(default_factory=FusionWeights)


@dataclass(frozen=True)
class ObjectConf:
    """One object-stage configuration: proposals, embedding, whitening, retrieval."""

    name: str
    proposals: ProposalConf
    embedding: EmbeddingConf
    whitening: WhiteningConf = field(default_factory=WhiteningConf)
    retrieval: RetrievalConf = field(default_factory=RetrievalConf)


MNV4_CROPS = EmbeddingConf(backbone="sscd-crops", sscd_model="sscd_distilled", crop_size=224)
R50_CROPS = EmbeddingConf(backbone="sscd-crops", sscd_model="sscd", crop_size=224)
EFFNET_ROI = EmbeddingConf(backbone="effnet-roi", feature_maps="effnet-lite0-512", level="head")

OBJECT_PRESETS: Mapping[str, ObjectConf] = {
    conf.name: conf
    for conf in (
        ObjectConf(
            name="oesir-grid-k8-mnv4c224-raw",
            proposals=ProposalConf(method="grid", max_objects=8),
            embedding=MNV4_CROPS,
        ),
        ObjectConf(
            name="oesir-grid-k8-r50c224-raw",
            proposals=ProposalConf(method="grid", max_objects=8),
            embedding=R50_CROPS,
        ),
        ObjectConf(
            name="oesir-grid-k8-effnet512-w256",
            proposals=ProposalConf(method="grid", max_objects=8),
            embedding=EFFNET_ROI,
            whitening=WhiteningConf(dim=256),
        ),
        ObjectConf(
            name="oesir-selective-k8-mnv4c224-raw",
            proposals=ProposalConf(method="selective", max_objects=8),
            embedding=MNV4_CROPS,
        ),
        ObjectConf(
            name="oesir-detector-k8-mnv4c224-raw",
            proposals=ProposalConf(method="detector", max_objects=8),
            embedding=MNV4_CROPS,
        ),
    )
}

DEFAULT_OBJECTS = "oesir-grid-k8-mnv4c224-raw"


def object_preset(name: str = DEFAULT_OBJECTS) -> ObjectConf:
    """The object preset called `name`; `PresetError` lists the valid names."""
    return lookup(OBJECT_PRESETS, name, "object")
