"""Object embeddings (OE-SIR Eq. 4): one vector per box, L2-normalized.

One pass, X = ROIAlign(C, B): the EfficientNet-Lite0 feature map C of the whole image is computed
once and every box of B is pooled from it (`roi_align`, then `gem`), so k objects cost one forward
pass plus k cheap poolings; such vectors are then PCA-whitened (`ObjectWhitening`, learned on the
collection) before search. Two steps, as the paper's teacher: each box's crop is embedded by the
unmodified SSCD model, k forward passes in one batch; SSCD's output is searched as it is.

Raw object vectors are what a collection stores; search uses them whitened, or raw.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from imgprov.errors import IndexCorrupt
from imgprov.extract.effnet import EffNetFeatures, FeatureMaps
from imgprov.extract.models import effnet_features, sscd_extractor
from imgprov.extract.objects.conf import EmbeddingConf, MapLevel, WhiteningConf
from imgprov.extract.sscd import EMBEDDING_DIM, GlobalConf, SSCDExtractor

GEM_EPS = 1e-6
LEVEL_STRIDES: dict[MapLevel, int] = {"head": 32, "stride32": 32, "stride16": 16}
MAP_CHANNELS: dict[MapLevel, int] = {"head": 1280, "stride32": 320, "stride16": 112}


def roi_align(
    feature_map: np.ndarray,
    boxes: np.ndarray,
    output_size: int,
    sampling_ratio: int,
    valid_cells: tuple[int, int] | None = None,
) -> np.ndarray:
    """ROIAlign (He et al., Mask R-CNN, with the half-cell alignment of Detectron2's `aligned=True`).

    feature_map: (C, H, W) float32; cell (i, j) spans map coordinates [j, j + 1) x [i, i + 1) and
        its value sits at the cell's centre (j + 0.5, i + 0.5).
    boxes: (k, 4) (x0, y0, x1, y1) in map coordinates (no rounding: any real numbers).
    output_size: bins per side; sampling_ratio: samples per bin and axis, evenly spread inside it
        (bin b of n over [a, a + L) samples at a + L (b + (s + 0.5) / r) / n, s = 0..r-1).
    valid_cells: (columns, rows) of the map that look at the image; samples are clamped to them
        (bilinear weights past the edge fall on the edge cell), so padding never leaks in.
    Returns (k, C, output_size, output_size) float32: each bin the mean of its bilinear samples.
    """
    channels, height, width = feature_map.shape
    columns, rows = valid_cells if valid_cells is not None else (width, height)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    samples = output_size * sampling_ratio
    fractions = (np.arange(samples) + 0.5) / samples
    xs = boxes[:, 0:1] + fractions * (boxes[:, 2:3] - boxes[:, 0:1]) - 0.5
    ys = boxes[:, 1:2] + fractions * (boxes[:, 3:4] - boxes[:, 1:2]) - 0.5
    along_y = _interpolate(feature_map[:, :rows, :columns], ys, axis=1)
    values = np.stack([_interpolate(along_y[box], xs[box], axis=2) for box in range(len(boxes))])
    shape = (len(boxes), channels, output_size, sampling_ratio, output_size, sampling_ratio)
    return values.reshape(shape).mean(axis=(3, 5)).astype(np.float32)


def _interpolate(array: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of `array` along `axis` at fractional indices, clamped to its extent.

    positions: (k, S). Returns, for axis 1 of a (C, H, W) array, (k, C, S, W); for axis 2 of a
    (C, S, W) array with (S',) positions, (C, S, S').
    """
    length = array.shape[axis]
    clamped = np.clip(positions, 0.0, length - 1.0)
    low = np.floor(clamped).astype(np.int64)
    high = np.minimum(low + 1, length - 1)
    weight = (clamped - low).astype(np.float32)
    if axis == 1:
        first, second = array[:, low, :], array[:, high, :]
        weight = weight[None, :, :, None]
        return np.moveaxis(first * (1 - weight) + second * weight, 0, 1)
    first, second = array[:, :, low], array[:, :, high]
    return first * (1 - weight) + second * weight


def gem(bins: np.ndarray, p: float, eps: float = GEM_EPS) -> np.ndarray:
    """Generalized mean over the spatial bins (Radenovic et al.): (mean(max(x, eps)^p))^(1/p).

    bins: (k, C, h, w) float32. Signed maps (EfficientNet's linear bottlenecks) are clamped at eps,
    so GeM sees only their positive responses. Returns (k, C) float32.
    """
    clamped = np.maximum(bins.reshape(bins.shape[0], bins.shape[1], -1).astype(np.float64), eps)
    return np.power(np.mean(np.power(clamped, p), axis=2), 1.0 / p).astype(np.float32)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float32 rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def pool_boxes(maps: FeatureMaps, boxes: np.ndarray, conf: EmbeddingConf) -> np.ndarray:
    """(k, C) float32 L2-normalized GeM descriptors of `boxes` ((k, 4) original pixels) in `maps`."""
    stride = LEVEL_STRIDES[conf.level]
    feature_map = maps.head if conf.level == "head" else maps.level(stride)
    corners = np.asarray(boxes, np.float64).reshape(-1, 2)
    map_boxes = maps.image_to_map(corners, stride).reshape(-1, 4)
    bins = roi_align(feature_map, map_boxes, conf.pool_size, conf.sampling_ratio, maps.valid_cells(stride))
    return l2_normalize(gem(bins, conf.gem_p))


def raw_dim(conf: EmbeddingConf) -> int:
    """Dimensions of a raw object vector of this embedding, without loading its model."""
    return EMBEDDING_DIM if conf.backbone == "sscd-crops" else MAP_CHANNELS[conf.level]


def crop_boxes(image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """The pixels of each box ((k, 4) original pixels, rounded outwards) of an (H, W, 3) image."""
    height, width = image.shape[:2]
    crops = []
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64):
        left, top = int(np.clip(np.floor(x0), 0, width - 1)), int(np.clip(np.floor(y0), 0, height - 1))
        right, bottom = int(np.clip(np.ceil(x1), left + 1, width)), int(np.clip(np.ceil(y1), top + 1, height))
        crops.append(np.ascontiguousarray(image[top:bottom, left:right]))
    return crops


def crop_model_conf(conf: EmbeddingConf, batch_size: int = 16) -> GlobalConf:
    """The SSCD configuration that embeds box crops: `conf.sscd_model` at `conf.crop_size`."""
    return GlobalConf(
        name=f"{conf.sscd_model}-crops-{conf.crop_size}",
        model=conf.sscd_model,
        input_size=conf.crop_size,
        batch_size=batch_size,
    )


class ObjectEmbedder:
    """Raw object vectors of an image's boxes, with the backbone `conf.backbone` names.

    Models are loaded when the embedder is built, never at import; pass `features` (an
    EfficientNet-Lite0 extractor) or `sscd` (an SSCD extractor built from `crop_model_conf`) to
    share an already loaded model.
    """

    def __init__(
        self,
        conf: EmbeddingConf,
        *,
        features: EffNetFeatures | None = None,
        sscd: SSCDExtractor | None = None,
    ):
        self.conf = conf
        self._features: EffNetFeatures | None = None
        self._sscd: SSCDExtractor | None = None
        if conf.backbone == "effnet-roi":
            self._features = features if features is not None else effnet_features(conf.feature_maps)
        else:
            self._sscd = sscd if sscd is not None else sscd_extractor(crop_model_conf(conf))

    @property
    def dim(self) -> int:
        """Dimensions of a raw object vector."""
        return raw_dim(self.conf)

    def embed(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(k, dim) float32 L2-normalized raw vectors of `boxes` ((k, 4) original pixels) of `image`."""
        if self._features is not None:
            return pool_boxes(self._features.feature_maps(image), boxes, self.conf)
        assert self._sscd is not None
        return self._sscd.embed(crop_boxes(image, boxes)).astype(np.float32)


@dataclass(frozen=True)
class ObjectWhitening:
    """PCA-whitening of raw object vectors, learned on a sample of a collection's objects.

    mean: (D0,) float32, the sample mean; projection: (D0, D) float32, the principal directions
    divided by sqrt(eigenvalue + shrinkage x mean eigenvalue). `transform` centres, projects and
    L2-normalizes, so squared distances between whitened vectors lie in [0, 4].
    """

    mean: np.ndarray
    projection: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    @classmethod
    def fit(cls, vectors: np.ndarray, conf: WhiteningConf) -> ObjectWhitening:
        """Learn from (N, D0) raw vectors; the output has min(conf.dim, N - 1, D0) dimensions
        (conf.dim must be positive: a dim of 0 means no whitening, which the caller handles)."""
        sample = np.asarray(vectors, np.float64)
        if sample.ndim != 2 or len(sample) < 2:
            raise ValueError(f"whitening needs at least 2 vectors of shape (N, D0), got {sample.shape}")
        mean = sample.mean(axis=0)
        _, singular, directions = np.linalg.svd(sample - mean, full_matrices=False)
        eigenvalues = singular**2 / (len(sample) - 1)
        if conf.dim < 1:
            raise ValueError("a whitening needs at least one output dimension")
        keep = min(conf.dim, len(sample) - 1, sample.shape[1])
        floor = conf.shrinkage * float(eigenvalues.mean()) + 1e-12
        projection = directions[:keep].T / np.sqrt(eigenvalues[:keep] + floor)
        return cls(mean.astype(np.float32), projection.astype(np.float32))

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D0) raw vectors -> (N, D) float32 whitened, L2-normalized."""
        return l2_normalize((np.asarray(vectors, np.float32) - self.mean) @ self.projection)

    def to_bytes(self) -> bytes:
        """An .npz serialization (to store beside an index; `from_bytes` reads it back)."""
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, projection=self.projection)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ObjectWhitening:
        """Read what `to_bytes` wrote; `IndexCorrupt` when the bytes are not such a file."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as stored:
                mean, projection = stored["mean"], stored["projection"]
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(f"object whitening data is damaged ({exc})") from None
        if mean.ndim != 1 or projection.ndim != 2 or projection.shape[0] != mean.shape[0]:
            raise IndexCorrupt(f"object whitening has shapes {mean.shape} and {projection.shape}")
        return cls(mean.astype(np.float32), projection.astype(np.float32))
