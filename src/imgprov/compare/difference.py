"""Benign-robust difference of an aligned pair: per-pixel dissimilarity channels in the query frame.

Redistribution changes a whole image alike (JPEG, resizing, noise, blur, a colour or contrast
curve, fog); an editor changes a part of it. So each channel (`CHANNEL_NAMES`) compares the two
images in a representation those global changes barely move, then is normalized by its own robust
statistics over the comparable pixels: "how many robust deviations this pixel is above the image's
typical difference", which a degradation raising the difference everywhere raises with it.

Before any channel, the original is degraded the way the query was, as far as a global model can
say: blurred like the query (`matching_blur`) and brought to its colours (`photometric_match`).
Where the copy's tone curve clipped (`clipped_pixels`: a highlight burnt to white, a shadow crushed
to black) the picture's detail is gone from the query but not from the original; those pixels are
not comparable, and every channel is computed without them. Every blur is a normalized convolution
over the comparable pixels, so padding, rotation corners and crop borders never leak into the
statistics of the pixels next to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from imgprov.compare import deep
from imgprov.compare.align import AlignedPair
from imgprov.compare.conf import DifferenceConf

CHANNEL_NAMES = (
    "residual_fine",
    "residual",
    "residual_highpass",
    "chroma",
    "structure_1",
    "structure_2",
    "structure_4",
    "detail_loss",
    "detail_gain",
    "deep_8",
    "deep_16",
)
"""residual_fine, residual: colour difference after the photometric match, without and with a little
smoothing; residual_highpass: the same without its large-scale part (fog, vignetting).
chroma: opponent-colour (R-G, R+G-2B) difference after the photometric match (hue changes).
structure_1, _2, _4: 1 - local correlation of the gray images (SSIM's structure term) at three
scales, invariant to local gain and offset.
detail_loss, detail_gain: log ratio of local high-frequency energy, query over original, above the
image's median ratio (blur or inpainting removes detail; text or a paste adds it).
deep_8, deep_16: cosine distance of EfficientNet-Lite0 features at strides 8 and 16
(`imgprov.compare.deep`), the query's pixels standing in wherever the original has no counterpart."""
RAW_CHANNELS = ("deep_8", "deep_16")
"""Channels also given to the pixel model before their robust normalization."""
CONTEXT_CHANNELS = ("residual", "chroma", "structure_2", "detail_loss")
"""Channels also given to the pixel model smoothed at `DifferenceConf.context_sigmas` (spatial
context: a pixel inside an edited blob has edited neighbours)."""
IMAGE_STAT_NAMES = ("log_noise", "structure_median", "correlation", "blur_sigma")
"""Per-pair descriptors of the degradation, given to the pixel model with every pixel."""
TONE_CURVE_BINS = 24
TONE_CURVE_END_BINS = 3
TONE_CURVE_MAX_SLOPE = 4.0
EXTRAPOLATION = 1000.0
MAD_TO_SIGMA = 1.4826
BLUR_TOLERANCE = 0.02
PHOTOMETRIC_TOLERANCE = 0.05
ROBUST_SAMPLES = 20_000
PYRAMID_MIN_SIGMA = 4.0
PYRAMID_CORE_SIGMA = 2.0
NOISE_SCALE = 2.0
NOISE_CONSTANT_FACTOR = 2.0
"""`noise_sigma` measures the residual finer than a Gaussian of NOISE_SCALE working pixels; the
structure channels' stabilizer adds (NOISE_CONSTANT_FACTOR x that sigma)^2."""
CLIP_HIGH = 250.0
CLIP_LOW = 5.0
CLIP_NEAR = 20.0
CLIP_GROWTH = 2
CLIP_CHANNELS = 2
"""A query channel at or above CLIP_HIGH (at or below CLIP_LOW) is clipped; the original, brought to
the query's colours, is near that clip within CLIP_NEAR gray levels; the uncomparable area grows by
CLIP_GROWTH working pixels (the detail around a clipped patch is partly clipped too). A pixel is
clipped with CLIP_CHANNELS of its channels so (a saturated colour, one channel at 255, keeps its
detail in the others)."""


@dataclass(frozen=True)
class DifferenceMaps:
    """The channels of one aligned pair, in the query's working frame.

    channels: (h, w, C) float32, robust z-scores, C = len(CHANNEL_NAMES), ordered as CHANNEL_NAMES.
    raw: (h, w, R) float32, the channels of RAW_CHANNELS before normalization.
    image_stats: (S,) float32 per-pair descriptors, ordered as IMAGE_STAT_NAMES.
    comparable: (h, w) bool, the pixels the channels are defined on: the pair's comparable pixels
    without the clipped ones (`clipped_pixels`).
    """

    channels: np.ndarray
    raw: np.ndarray
    image_stats: np.ndarray
    comparable: np.ndarray

    def channel(self, name: str) -> np.ndarray:
        return self.channels[:, :, CHANNEL_NAMES.index(name)]


def difference_maps(pair: AlignedPair, conf: DifferenceConf) -> DifferenceMaps:
    """The dissimilarity channels of an aligned pair (see the module docstring)."""
    query = pair.query.astype(np.float32)
    unblurred = pair.original.astype(np.float32)
    blur_sigma = matching_blur(query, unblurred, pair.comparable, conf.blur_sigmas)
    blurred = masked_blur(unblurred, pair.comparable.astype(np.float32), blur_sigma)
    original = photometric_match(query, blurred, pair.comparable)
    comparable = pair.comparable & ~clipped_pixels(query, original, unblurred, blur_sigma)
    weights = comparable.astype(np.float32)
    query_gray, original_gray = query.mean(axis=2), original.mean(axis=2)
    raw = {
        **_residual_channels(query, original, weights, conf),
        "chroma": _chroma_difference(query, original, weights, conf),
        **_structure_channels(
            query_gray, original_gray, weights, conf, noise_sigma(query_gray, original_gray, comparable)
        ),
        **_detail_channels(query_gray, original_gray, weights, conf),
        **deep_channels(pair, blurred),
    }
    channels = np.stack(
        [_robust_z(raw[name], comparable, conf.z_floor) for name in CHANNEL_NAMES], axis=2
    ).astype(np.float32)
    channels *= weights[:, :, None]
    raw_channels = np.stack([raw[name] for name in RAW_CHANNELS], axis=2).astype(np.float32)
    raw_channels *= weights[:, :, None]
    noise = _robust_scale(raw["residual"], comparable)
    structure = _robust_sample(raw["structure_1"], comparable)
    stats = np.array(
        [
            np.log(noise + 1e-3),
            float(np.median(structure)) if structure.size else 0.0,
            pair.correlation,
            blur_sigma,
        ],
        np.float32,
    )
    return DifferenceMaps(channels=channels, raw=raw_channels, image_stats=stats, comparable=comparable)


def clipped_pixels(
    query: np.ndarray, matched: np.ndarray, original: np.ndarray, blur_sigma: float = 0.0
) -> np.ndarray:
    """(h, w) bool: pixels whose detail the copy's tone curve clipped, so that their difference says
    nothing about an edit.

    query, matched, original: (h, w, 3) float32, the query, the original brought to the query's
    colours, and the original as it is. A pixel is clipped where, in CLIP_CHANNELS channels, the query is at
    or beyond CLIP_HIGH (CLIP_LOW), the matched original is within CLIP_NEAR of that clip (the
    fitted tone curve itself runs into it there) and the original is not clipped (it still has the
    detail). Where both are clipped they agree, and stay comparable. Only patches count (a pixel
    whose 3 x 3 neighbourhood is all clipped: a lone dark or bright speck of JPEG is no tone curve),
    grown back and by CLIP_GROWTH pixels plus twice blur_sigma (a blur after the clip spreads it,
    `matching_blur`).
    """
    unclipped = (original > CLIP_LOW) & (original < CLIP_HIGH)
    clipped = (
        unclipped
        & (
            ((query >= CLIP_HIGH) & (matched >= CLIP_HIGH - CLIP_NEAR))
            | ((query <= CLIP_LOW) & (matched <= CLIP_LOW + CLIP_NEAR))
        )
    ).sum(axis=2) >= CLIP_CHANNELS
    patches = cv2.erode(clipped.astype(np.uint8), np.ones((3, 3), np.uint8))
    if not patches.any():
        return np.zeros_like(clipped)
    size = 2 * (CLIP_GROWTH + 1 + math.ceil(2 * blur_sigma)) + 1
    return cv2.dilate(patches, np.ones((size, size), np.uint8)) > 0


def deep_channels(pair: AlignedPair, original: np.ndarray) -> dict[str, np.ndarray]:
    """deep_8 and deep_16, (h, w) float32 cosine distances of the EfficientNet-Lite0 maps of the
    pair's query and `original` (h, w, 3), the pair's original as the difference sees it."""
    filled = np.where(pair.comparable[:, :, None], original, pair.query).astype(np.uint8)
    query_maps, original_maps = deep.feature_maps(pair.query), deep.feature_maps(filled)
    return {
        f"deep_{stride}": deep.cosine_distance_map(query_maps, original_maps, stride)
        for stride in deep.DIFFERENCE_STRIDES
    }


def pixel_features(maps: DifferenceMaps, conf: DifferenceConf) -> np.ndarray:
    """(h, w, F) float32 inputs of the pixel model: the channels squashed by log1p of their positive
    part, their smoothed context, the raw deep channels, and the per-pair stats broadcast to every
    pixel (F = feature_count(conf))."""
    squashed = np.log1p(np.maximum(maps.channels, 0.0))
    weights = maps.comparable.astype(np.float32)
    chosen = squashed[:, :, [CHANNEL_NAMES.index(name) for name in CONTEXT_CHANNELS]]
    context = [masked_blur(chosen, weights, sigma) for sigma in conf.context_sigmas]
    height, width = maps.comparable.shape
    stats = np.broadcast_to(maps.image_stats, (height, width, len(maps.image_stats)))
    return np.concatenate([squashed, *context, maps.raw, stats], axis=2).astype(np.float32)


def feature_count(conf: DifferenceConf) -> int:
    return (
        len(CHANNEL_NAMES)
        + len(CONTEXT_CHANNELS) * len(conf.context_sigmas)
        + len(RAW_CHANNELS)
        + len(IMAGE_STAT_NAMES)
    )


def matching_blur(
    query: np.ndarray, original: np.ndarray, comparable: np.ndarray, sigmas: tuple[float, ...]
) -> float:
    """The Gaussian sigma, in working pixels, that makes the original (h, w, 3) float32 look most like
    the query (h, w, 3) float32: a blurred or defocused copy loses detail wherever the photo has any,
    and only the difference to the original blurred alike is the editor's.

    Each candidate is scored by the median absolute residual of a gain-and-offset fit of the gray
    query on the blurred gray original over the comparable pixels (the median ignores a local edit);
    the smallest sigma within BLUR_TOLERANCE of the best score wins, so that an unblurred copy keeps
    its detail.
    """
    inside = _sample_indices(comparable)
    if inside.size < 2:
        return 0.0
    weights = comparable.astype(np.float32)
    target = query.mean(axis=2).ravel()[inside]
    gray = original.mean(axis=2)
    scores = []
    for sigma in sigmas:
        source = masked_blur(gray, weights, sigma).ravel()[inside]
        design = np.column_stack([source, np.ones_like(source)])
        coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
        scores.append(float(np.median(np.abs(target - design @ coefficients))))
    best = min(scores)
    return next(
        sigma for sigma, score in zip(sigmas, scores, strict=True) if score <= best * (1 + BLUR_TOLERANCE)
    )


def photometric_match(query: np.ndarray, original: np.ndarray, comparable: np.ndarray) -> np.ndarray:
    """The original (h, w, 3) float32 brought to the query's colours by whichever of two global
    models leaves the smaller median residual over the comparable pixels (the first on a tie, within
    PHOTOMETRIC_TOLERANCE): per-channel tone curves, or a curve on the HSV value that scales each
    pixel's three channels alike (a black pixel, which has no hue, becomes grey), followed by
    per-channel curves: a brightness change made in HSV, which per-channel curves cannot follow in
    saturated colours.
    Both are fitted and scored on a sample of the comparable pixels; only the chosen one is applied
    to the whole image.

    A tone curve is monotone (binned medians): brightness, contrast, gamma and clipping, not local
    edits. Beyond its outer knots (the medians of the darkest and the brightest bins) it goes on
    with the slope of its last TONE_CURVE_END_BINS segments at that end: a faded copy has its
    shadows and highlights faded too, and an identical pair still maps to itself."""
    inside = _sample_indices(comparable)
    target, source = query.reshape(-1, 3)[inside], original.reshape(-1, 3)[inside]
    direct = _tone_curves(target, source)
    value_curve = _curve(source.max(axis=1), target.max(axis=1))
    value_source = _value_scaled(source, value_curve)
    after_value = _tone_curves(target, value_source)
    direct_score = _median_residual(target, _apply_tone_curves(source, direct))
    value_score = _median_residual(target, _apply_tone_curves(value_source, after_value))
    if value_score < direct_score * (1 - PHOTOMETRIC_TOLERANCE):
        return _apply_tone_curves(_value_scaled(original, value_curve), after_value)
    return _apply_tone_curves(original, direct)


Curve = tuple[np.ndarray, np.ndarray]
"""A monotone curve as (knots, values), both (K,) float, applied by linear interpolation."""


def _curve(source: np.ndarray, target: np.ndarray) -> Curve:
    return _extrapolated(*_binned_medians(source, target))


def _tone_curves(target: np.ndarray, source: np.ndarray) -> list[Curve]:
    """One curve per channel from (N, 3) source colours to (N, 3) target colours."""
    return [_curve(source[:, channel], target[:, channel]) for channel in range(3)]


def _apply_tone_curves(colours: np.ndarray, curves: list[Curve]) -> np.ndarray:
    """(..., 3) float32 colours through their channels' curves, clipped to [0, 255]."""
    mapped = np.empty_like(colours)
    for channel, (knots, values) in enumerate(curves):
        mapped[..., channel] = np.clip(np.interp(colours[..., channel], knots, values), 0.0, 255.0)
    return mapped


def _value_scaled(colours: np.ndarray, curve: Curve) -> np.ndarray:
    """(..., 3) float32 colours scaled so that their largest channel follows `curve`."""
    value = colours.max(axis=-1)
    mapped_value = np.clip(np.interp(value, *curve), 0.0, 255.0)
    gain = mapped_value / np.maximum(value, 1.0)
    scaled = np.where(value[..., None] >= 1.0, colours * gain[..., None], mapped_value[..., None])
    return np.clip(scaled, 0.0, 255.0).astype(np.float32)


def _median_residual(target: np.ndarray, mapped: np.ndarray) -> float:
    return float(np.median(np.abs(target - mapped).sum(axis=1)))


def _extrapolated(knots: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curve's knots and values with one more knot EXTRAPOLATION gray levels beyond each end."""
    span = min(TONE_CURVE_END_BINS, knots.size - 1)
    low = (values[span] - values[0]) / max(float(knots[span] - knots[0]), 1e-3)
    high = (values[-1] - values[-1 - span]) / max(float(knots[-1] - knots[-1 - span]), 1e-3)
    low, high = np.clip([low, high], 0.0, TONE_CURVE_MAX_SLOPE)
    knots = np.concatenate([[knots[0] - EXTRAPOLATION], knots, [knots[-1] + EXTRAPOLATION]])
    values = np.concatenate([[values[0] - EXTRAPOLATION * low], values, [values[-1] + EXTRAPOLATION * high]])
    return knots, values


def _binned_medians(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (source medians of quantile bins) and non-decreasing target medians at them."""
    if source.size == 0:
        return np.array([0.0, 255.0]), np.array([0.0, 255.0])
    order = np.argsort(source, kind="stable")
    bins = min(TONE_CURVE_BINS, source.size)
    knots = _bin_medians(source[order], bins)
    values = np.maximum.accumulate(_bin_medians(target[order], bins))
    knots, first = np.unique(knots, return_index=True)
    if knots.size < 2:
        offset = float(np.median(target) - np.median(source))
        return np.array([0.0, 255.0]), np.array([offset, 255.0 + offset])
    return knots, values[first]


def _bin_medians(values: np.ndarray, bins: int) -> np.ndarray:
    """Medians of `bins` consecutive runs of (N,) values, sized as np.array_split sizes them (the
    first N % bins runs one longer)."""
    size, longer = divmod(values.size, bins)
    split = longer * (size + 1)
    head = np.median(values[:split].reshape(longer, size + 1), axis=1)
    tail = np.median(values[split:].reshape(bins - longer, size), axis=1)
    return np.concatenate([head, tail])


def _residual_channels(
    query: np.ndarray, original: np.ndarray, weights: np.ndarray, conf: DifferenceConf
) -> dict[str, np.ndarray]:
    difference = query - original
    fine = np.abs(difference).sum(axis=2)
    smoothed = masked_blur(difference, weights, conf.pre_blur)
    highpass = smoothed - masked_blur(smoothed, weights, conf.highpass_sigma)
    return {
        "residual_fine": np.log1p(fine),
        "residual": np.log1p(masked_blur(np.abs(smoothed).sum(axis=2), weights, conf.pre_blur)),
        "residual_highpass": np.log1p(masked_blur(np.abs(highpass).sum(axis=2), weights, conf.pre_blur)),
    }


def _chroma_difference(
    query: np.ndarray, original: np.ndarray, weights: np.ndarray, conf: DifferenceConf
) -> np.ndarray:
    difference = masked_blur(_opponent(query) - _opponent(original), weights, conf.pre_blur)
    return np.log1p(masked_blur(np.abs(difference).sum(axis=2), weights, 2 * conf.pre_blur))


def _opponent(rgb: np.ndarray) -> np.ndarray:
    red, green, blue = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    return np.stack([red - green, 0.5 * (red + green) - blue], axis=2)


def noise_sigma(query: np.ndarray, original: np.ndarray, comparable: np.ndarray) -> float:
    """Robust standard deviation, in gray levels, of the fine residual of the (h, w) float32 gray
    query and matched original over the comparable pixels: the copy's noise, JPEG error and the
    detail its tone curve crushed, which no edit explains."""
    difference = query - original
    fine = difference - cv2.GaussianBlur(difference, (0, 0), NOISE_SCALE)
    return _robust_scale(fine, comparable)


def _structure_channels(
    query: np.ndarray, original: np.ndarray, weights: np.ndarray, conf: DifferenceConf, noise: float
) -> dict[str, np.ndarray]:
    """structure_1, _2, _4. The correlation's stabilizer grows with the pair's noise (its
    conf.structure_constant plus (NOISE_CONSTANT_FACTOR x noise)^2, noise in gray levels): where
    both images hold no more texture than the noise, their correlation is noise and says nothing."""
    channels = {}
    constant = conf.structure_constant + (NOISE_CONSTANT_FACTOR * noise) ** 2
    for level in (1, 2, 4):
        both = masked_blur(np.stack([query, original], axis=2), weights, conf.pre_blur * level)
        query_level, original_level = both[:, :, 0], both[:, :, 1]
        correlation = local_correlation(
            query_level, original_level, weights, conf.structure_window * level, constant
        )
        channels[f"structure_{level}"] = 1.0 - correlation
    return channels


def local_correlation(
    a: np.ndarray, b: np.ndarray, weights: np.ndarray, sigma: float, constant: float
) -> np.ndarray:
    """(cov + c) / (std_a std_b + c) in a Gaussian window: 1 where the two agree up to gain and offset,
    1 where both are flat, <= 0 where the structure differs."""
    moments = masked_blur(np.stack([a, b, a * a, b * b, a * b], axis=2), weights, sigma)
    mean_a, mean_b = moments[:, :, 0], moments[:, :, 1]
    variance_a = np.maximum(moments[:, :, 2] - mean_a**2, 0.0)
    variance_b = np.maximum(moments[:, :, 3] - mean_b**2, 0.0)
    covariance = moments[:, :, 4] - mean_a * mean_b
    return (covariance + constant) / (np.sqrt(variance_a * variance_b) + constant)


def _detail_channels(
    query: np.ndarray, original: np.ndarray, weights: np.ndarray, conf: DifferenceConf
) -> dict[str, np.ndarray]:
    both = np.stack([query, original], axis=2)
    detail = both - masked_blur(both, weights, conf.detail_sigma)
    energy = masked_blur(detail**2, weights, 2 * conf.detail_sigma)
    query_energy, original_energy = energy[:, :, 0], energy[:, :, 1]
    log_ratio = np.log((query_energy + conf.detail_constant) / (original_energy + conf.detail_constant))
    inside = _robust_sample(log_ratio, weights > 0)
    log_ratio -= float(np.median(inside)) if inside.size else 0.0
    return {"detail_loss": np.maximum(-log_ratio, 0.0), "detail_gain": np.maximum(log_ratio, 0.0)}


def masked_blur(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (h, w) or (h, w, k) float32 values over the pixels where weights (h, w) > 0
    (normalized convolution).

    From PYRAMID_MIN_SIGMA on, the weighted values and the weights are reduced by the power of two
    that leaves a Gaussian of PYRAMID_CORE_SIGMA to 2 x PYRAMID_CORE_SIGMA reduced pixels, blurred
    there and enlarged again (`_reduced_blur`). A wide window has no fine detail to keep: the result
    differs from the full-size blur by a small fraction of the local contrast, and costs a few
    times less.
    """
    if sigma <= 0:
        return values
    weighted = _weighted(values, weights)
    factor = 2 ** max(0, math.floor(math.log2(sigma / PYRAMID_CORE_SIGMA)))
    if sigma < PYRAMID_MIN_SIGMA or factor == 1:
        return _normalized_blur(weighted, weights, sigma)
    return _reduced_blur(weighted, weights, sigma, factor)


def _reduced_blur(weighted: np.ndarray, weights: np.ndarray, sigma: float, factor: int) -> np.ndarray:
    """masked_blur's wide case at 1 / factor of the size. The numerator and the window are enlarged
    apart, so every output is still a normalized positive kernel over the input pixels (moments
    blurred alike stay consistent: a local variance cannot turn negative)."""
    height, width = weights.shape
    # Zero-weight padding to whole multiples of the factor keeps the reduction exact (and OpenCV's
    # fractional INTER_AREA takes at most 4 channels).
    padding = ((0, -height % factor), (0, -width % factor))
    padded_weights = np.pad(weights, padding)
    padded = np.pad(weighted, padding + ((0, 0),) * (weighted.ndim - 2))
    size = (padded_weights.shape[1] // factor, padded_weights.shape[0] // factor)
    small_weighted = cv2.resize(padded, size, interpolation=cv2.INTER_AREA)
    small_weights = cv2.resize(padded_weights, size, interpolation=cv2.INTER_AREA)
    # INTER_AREA averages factor x factor pixels (variance (factor^2 - 1) / 12) and INTER_LINEAR's
    # triangle spans 2 reduced pixels (variance factor^2 / 6): the Gaussian supplies the rest.
    spent = (factor**2 - 1) / 12 + factor**2 / 6
    small_sigma = math.sqrt(sigma**2 - spent) / factor
    full_size = padded_weights.shape[::-1]
    numerator = cv2.resize(cv2.GaussianBlur(small_weighted, (0, 0), small_sigma), full_size)[:height, :width]
    window = cv2.resize(cv2.GaussianBlur(small_weights, (0, 0), small_sigma), full_size)[:height, :width]
    return _divided(numerator, window)


def _weighted(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return values * weights[:, :, None] if values.ndim == 3 else values * weights


def _normalized_blur(weighted: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """blur(values x weights) / blur(weights), given the product."""
    return _divided(cv2.GaussianBlur(weighted, (0, 0), sigma), cv2.GaussianBlur(weights, (0, 0), sigma))


def _divided(numerator: np.ndarray, window: np.ndarray) -> np.ndarray:
    normalizer = np.maximum(window, 1e-3)
    return numerator / normalizer[:, :, None] if numerator.ndim == 3 else numerator / normalizer


def _sample_indices(comparable: np.ndarray) -> np.ndarray:
    """Flat indices of every k-th comparable pixel, about ROBUST_SAMPLES of them."""
    inside = np.flatnonzero(comparable.ravel())
    return inside[:: max(1, inside.size // ROBUST_SAMPLES)]


def _robust_sample(values: np.ndarray, comparable: np.ndarray) -> np.ndarray:
    """The comparable values of (h, w) `values`, every k-th of them so that about ROBUST_SAMPLES
    remain (a median of a regular subsample moves by far less than the channels' own noise)."""
    return values.ravel()[_sample_indices(comparable)]


def _robust_scale(values: np.ndarray, comparable: np.ndarray) -> float:
    inside = _robust_sample(values, comparable)
    if inside.size == 0:
        return 0.0
    return MAD_TO_SIGMA * float(np.median(np.abs(inside - np.median(inside))))


def _robust_z(values: np.ndarray, comparable: np.ndarray, floor: float) -> np.ndarray:
    """(values - median) / max(robust sigma, floor) over the comparable pixels."""
    inside = _robust_sample(values, comparable)
    if inside.size == 0:
        return np.zeros_like(values)
    centre = float(np.median(inside))
    scale = MAD_TO_SIGMA * float(np.median(np.abs(inside - centre)))
    return (values - centre) / max(scale, floor)
