"""Geometric alignment F_A (papers 004/003 section 3.2): the original brought into the query's frame.

Global step: RootSIFT matches of the query (and of its mirror image, `mirror_features`) against the
original, fitted by USAC MAGSAC++ as an affine transform or, when it explains clearly more, a
homography. When that finds too little, the images are described again after a contrast stretch,
then after a median filter; when SIFT still finds next to nothing, mutual nearest neighbours of
EfficientNet-Lite0 cells (`imgprov.compare.deep`) are fitted by a similarity transform, which
unrelated photos satisfy with only a handful of cells (hence `deep_min_inliers`).

Dense step: the original is resampled on the query's pixels at a working resolution (every output
lives in the query frame), ECC removes the affine residual, then only the smooth, small part of a
DIS optical flow is applied, so mild non-rigid warps are absorbed while a pasted or removed object
is not "explained away".

Comparable pixels: inside the warped original, minus flat bands along the query's edges
(letterboxing, a solid pad after a crop) and flat solid-colour regions reached from the query's
edge (pads of any width, rotation fill, screenshot bars, `fill_regions`) where the original is not
as flat in the same colour, then away from everything not comparable by a margin that covers the
query's resampling and JPEG blocks (`exclusion_margin`): those blend the fill into the picture.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from imgprov.compare import deep
from imgprov.compare.conf import AlignConf
from imgprov.extract.rootsift import LocalFeatures, extract_rootsift
from imgprov.geometry import flip_matrix
from imgprov.presets import LocalFeatureConf
from imgprov.verify import ratio_matches

SIFT_SPATIAL_BINS = 4
SIFT_ORIENTATION_BINS = 8
FLOW_SMOOTHING_FACTOR = 8
FALLBACK_MAX_SIDE = 2048
"""Longest side at which the fallbacks' filters run (`bounded_features`): four times the largest side
their keypoints are detected at, so an image up to this size is described exactly as before, and a
larger one (or one that only declares a huge size) costs no more than one of this size."""

TransformModel = Literal["affine", "homography", "similarity"]
"""The fitted transform: affine or homography from keypoints, similarity from feature-map cells."""
Matcher = Literal["rootsift", "effnet"]
"""What the correspondences came from: RootSIFT keypoints, or EfficientNet-Lite0 cells (the fallback)."""


@dataclass(frozen=True)
class GlobalFit:
    """The global transform of F_A and the evidence for it.

    transform: (3, 3) float64 mapping query pixels to original pixels.
    model: "affine" or "homography" (RootSIFT), "similarity" (EfficientNet cells).
    matches: ratio-test correspondences tried; inliers: those the transform explains.
    residual: median inlier reprojection error as a fraction of the original's diagonal.
    spread: area of the inliers' bounding box over the query's area, in [0, 1].
    mirrored: the query is a mirror image of the original.
    matcher: "rootsift" (keypoints) or "effnet" (feature-map cells, the fallback).
    """

    transform: np.ndarray
    model: TransformModel
    matches: int
    inliers: int
    residual: float
    spread: float
    mirrored: bool
    matcher: Matcher = "rootsift"

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / max(self.matches, 1)


@dataclass(frozen=True)
class AlignedPair:
    """The query and the original resampled in the query's frame, at a working resolution.

    query: (h, w, 3) uint8, the query resized to the working resolution.
    original: (h, w, 3) uint8, the original warped onto the query's working pixels.
    comparable: (h, w) bool, working pixels whose content exists in both images.
    scale: query pixels per working pixel (>= 1).
    transform: (3, 3) float64 query pixels -> original pixels after the ECC refinement.
    correlation: correlation coefficient of the two aligned gray images over the comparable pixels
    (near 1 for copies, near 0 for unrelated content).
    """

    query: np.ndarray
    original: np.ndarray
    comparable: np.ndarray
    scale: float
    transform: np.ndarray
    correlation: float


def mirror_features(features: LocalFeatures) -> LocalFeatures:
    """Features of the left-right mirror image, computed from those of the image itself.

    SIFT detection commutes with mirroring; a mirrored patch's descriptor is the original one with
    its rows of spatial cells reversed and its orientation bins negated (in the keypoint's frame).
    OpenCV's SIFT places keypoints half a pixel left of the pixel-centre convention, so the mirror
    of x is width - 0.5 - x rather than width - 1 - x (measured against extraction on the mirror).
    """
    width = features.image_size[0]
    keypoints = features.keypoints.copy()
    keypoints[:, 0] = width - 0.5 - keypoints[:, 0]
    return LocalFeatures(
        keypoints=keypoints,
        scales=features.scales,
        angles=-features.angles,
        descriptors=np.ascontiguousarray(features.descriptors[:, _MIRRORED_BINS]),
        image_size=features.image_size,
    )


def _mirrored_bin_order() -> np.ndarray:
    cells, bins = SIFT_SPATIAL_BINS, SIFT_ORIENTATION_BINS
    order = np.zeros(cells * cells * bins, np.intp)
    for row in range(cells):
        for column in range(cells):
            for orientation in range(bins):
                source = ((cells - 1 - row) * cells + column) * bins + (bins - orientation) % bins
                order[(row * cells + column) * bins + orientation] = source
    return order


_MIRRORED_BINS = _mirrored_bin_order()


def estimate_transform(
    query: np.ndarray,
    original: np.ndarray,
    conf: AlignConf,
    *,
    query_features: LocalFeatures | None = None,
    original_features: LocalFeatures | None = None,
) -> GlobalFit | None:
    """F_A's global transform from query pixels to original pixels; None when neither keypoints nor
    feature-map cells find a plausible transform (the images are distinct).

    query, original: (H, W, 3) uint8 RGB. Features, when given, must be in the images' own pixels.
    """
    query_features = query_features or extract_rootsift(query, conf.features)
    original_features = original_features or extract_rootsift(original, conf.features)
    fit = fit_global_transform(query_features, original_features, conf)
    if fit is not None and fit.inliers >= conf.retry_below_inliers:
        return fit
    coarse = fit_global_transform(
        bounded_features(query, stretch_contrast, conf.retry_features),
        bounded_features(original, stretch_contrast, conf.retry_features),
        conf,
    )
    best = _most_inliers(fit, coarse)
    if best is not None:
        return best
    denoised = fit_global_transform(
        bounded_features(
            query,
            lambda image: stretch_contrast(cv2.medianBlur(image, conf.denoise_median)),
            conf.denoise_features,
        ),
        bounded_features(original, stretch_contrast, conf.denoise_features),
        conf,
    )
    if denoised is not None and denoised.inliers >= conf.retry_below_inliers:
        return denoised
    features = conf.denoise_features
    smooth = functools.partial(smoothed_alike, sigma=conf.smooth_sigma, max_side=features.max_side)
    smoothed = fit_global_transform(
        bounded_features(query, smooth, features), bounded_features(original, smooth, features), conf
    )
    if smoothed is not None and smoothed.inliers >= conf.retry_below_inliers:
        return smoothed
    deep_fit = fit_deep_transform(query, original, conf) if conf.deep_fallback else None
    return deep_fit or _most_inliers(denoised, smoothed)


def bounded_features(
    image: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray], conf: LocalFeatureConf
) -> LocalFeatures:
    """RootSIFT of `prepare(image)` in the image's own pixels, with `prepare` (a contrast stretch, a
    median or Gaussian filter) run on the image shrunk to at most `FALLBACK_MAX_SIDE` pixels, so that
    its cost is bounded whatever size the image declares. image: (H, W, 3) uint8 RGB."""
    small, scale = working_image(image, FALLBACK_MAX_SIDE)
    features = extract_rootsift(prepare(small), conf)
    if scale == 1.0:
        return features
    height, width = image.shape[:2]
    return LocalFeatures(
        keypoints=((features.keypoints + 0.5) * scale - 0.5).astype(np.float32),
        scales=(features.scales * scale).astype(np.float32),
        angles=features.angles,
        descriptors=features.descriptors,
        image_size=(width, height),
    )


def _most_inliers(*fits: GlobalFit | None) -> GlobalFit | None:
    """The fit with the most inliers (the first among equals); None when every one is None."""
    found = [fit for fit in fits if fit is not None]
    return max(found, key=lambda fit: fit.inliers) if found else None


def fit_deep_transform(query: np.ndarray, original: np.ndarray, conf: AlignConf) -> GlobalFit | None:
    """A similarity transform from mutual nearest EfficientNet-Lite0 cells, for the query and (unless
    that finds twice `conf.deep_min_inliers`) its mirror image; None below `conf.deep_min_inliers`
    consistent cells."""
    original_maps = deep.feature_maps(original)
    direct = _fit_cells(deep.cell_matches(deep.feature_maps(query), original_maps), query, original, conf)
    if direct is not None and direct.inliers >= 2 * conf.deep_min_inliers:
        return direct
    mirrored_query = np.ascontiguousarray(query[:, ::-1])
    matches = deep.cell_matches(deep.feature_maps(mirrored_query), original_maps)
    mirrored = _fit_cells(matches, query, original, conf, mirrored=True)
    fits = [fit for fit in (direct, mirrored) if fit is not None and fit.inliers >= conf.deep_min_inliers]
    return max(fits, key=lambda fit: fit.inliers) if fits else None


def _fit_cells(
    matches: deep.CellMatches,
    query: np.ndarray,
    original: np.ndarray,
    conf: AlignConf,
    *,
    mirrored: bool = False,
) -> GlobalFit | None:
    """RANSAC similarity (rotation, uniform scale, translation) of matched cell centres; in the
    mirrored query's frame when `mirrored`, composed with the flip."""
    source, target = matches.query_points, matches.original_points
    if len(source) < max(conf.deep_min_inliers, 3):
        return None
    threshold = conf.deep_threshold_cells * matches.cell_size
    similarity, mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=conf.max_iterations
    )
    if similarity is None or mask is None:
        return None
    inliers = mask.ravel().astype(bool)
    transform = np.vstack([similarity.astype(np.float64), [0.0, 0.0, 1.0]])
    if not _plausible_scale(transform, source[inliers], conf.max_anisotropy):
        return None
    height, width = query.shape[:2]
    diagonal = float(np.hypot(original.shape[1], original.shape[0]))
    residual = float(np.median(_reprojection_errors(transform, source[inliers], target[inliers])))
    if mirrored:
        transform = transform @ flip_matrix(width)
    return GlobalFit(
        transform=transform,
        model="similarity",
        matches=len(source),
        inliers=int(inliers.sum()),
        residual=residual / diagonal,
        spread=_box_area(source[inliers]) / float(width * height),
        mirrored=mirrored,
        matcher="effnet",
    )


def smoothed_alike(image: np.ndarray, sigma: float, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 blurred by a Gaussian of `sigma` pixels of its frame resized to at most
    `max_side`, then contrast-stretched. Two images smoothed so are blurred alike at the scale SIFT
    sees them, whatever their sizes: Gaussian noise, which a median filter leaves, drowns SIFT's
    keypoints, and the blur removes it from both."""
    side = max(image.shape[:2])
    pixels = sigma * side / min(side, max_side)
    return stretch_contrast(cv2.GaussianBlur(image, (0, 0), pixels))


def stretch_contrast(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 with its gray levels stretched from the 1st-99th percentile to 0-255 (a faded or
    dark copy gets back the contrast SIFT's threshold needs)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    low, high = np.percentile(gray, (1, 99))
    gain = 255.0 / max(float(high - low), 1.0)
    return np.clip((image.astype(np.float32) - float(low)) * gain, 0, 255).astype(np.uint8)


def fit_global_transform(query: LocalFeatures, original: LocalFeatures, conf: AlignConf) -> GlobalFit | None:
    """The direct view's transform, or the mirrored view's when it explains more matches; the mirrored
    view is only tried when the direct one has fewer than `conf.retry_below_inliers` inliers."""
    direct = _fit_view(query, original, conf, mirrored=False)
    if direct is not None and direct.inliers >= conf.retry_below_inliers:
        return direct
    mirrored = _fit_view(mirror_features(query), original, conf, mirrored=True)
    fits = [fit for fit in (direct, mirrored) if fit is not None and fit.inliers >= conf.min_inliers]
    return max(fits, key=lambda fit: fit.inliers) if fits else None


def _fit_view(
    query: LocalFeatures, original: LocalFeatures, conf: AlignConf, *, mirrored: bool
) -> GlobalFit | None:
    pairs = ratio_matches(query, original, conf.ratio)
    if len(pairs) < max(conf.min_inliers, 4):
        return None
    source = query.keypoints[pairs[:, 0]].astype(np.float32)
    target = original.keypoints[pairs[:, 1]].astype(np.float32)
    diagonal = float(np.hypot(*original.image_size))
    found = _best_model(source, target, conf.reprojection_fraction * diagonal, conf)
    if found is None:
        return None
    transform, inliers, model = found
    if not _plausible_scale(transform, source[inliers], conf.max_anisotropy):
        return None
    residual = float(np.median(_reprojection_errors(transform, source[inliers], target[inliers])))
    if mirrored:
        transform = transform @ flip_matrix(query.image_size[0])
    return GlobalFit(
        transform=transform,
        model=model,
        matches=len(pairs),
        inliers=int(inliers.sum()),
        residual=residual / diagonal,
        spread=_box_area(source[inliers]) / float(query.image_size[0] * query.image_size[1]),
        mirrored=mirrored,
    )


def _best_model(
    source: np.ndarray, target: np.ndarray, threshold: float, conf: AlignConf
) -> tuple[np.ndarray, np.ndarray, TransformModel] | None:
    """(transform, inlier mask, model name): the affine fit unless a homography has clearly more
    inliers; both are refitted by least squares on their inliers."""
    affine_fit = None
    affine, mask = cv2.estimateAffine2D(
        source, target, method=cv2.USAC_MAGSAC, ransacReprojThreshold=threshold, maxIters=conf.max_iterations
    )
    if affine is not None and mask is not None and mask.sum() >= 3:
        inliers = mask.ravel().astype(bool)
        affine_fit = (_refit_affine(source[inliers], target[inliers]), inliers, "affine")
    homography_fit = None
    if len(source) >= 8:
        homography, mask = cv2.findHomography(
            source, target, cv2.USAC_MAGSAC, threshold, maxIters=conf.max_iterations, confidence=0.999
        )
        if homography is not None and mask is not None and mask.sum() >= 8:
            inliers = mask.ravel().astype(bool)
            refitted = _refit_homography(source[inliers], target[inliers], homography)
            if _plausible_homography(refitted, source[inliers]):
                homography_fit = (refitted, inliers, "homography")
    if affine_fit is None or homography_fit is None:
        return affine_fit or homography_fit
    gain = homography_fit[1].sum() / max(affine_fit[1].sum(), 1)
    return homography_fit if gain > conf.homography_gain else affine_fit


def _refit_affine(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    design = np.column_stack([source.astype(np.float64), np.ones(len(source))])
    solution, *_ = np.linalg.lstsq(design, target.astype(np.float64), rcond=None)
    return np.vstack([solution.T, [0.0, 0.0, 1.0]])


def _refit_homography(source: np.ndarray, target: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    refitted, _ = cv2.findHomography(source, target, 0)
    return fallback if refitted is None else refitted


def _plausible_scale(transform: np.ndarray, source: np.ndarray, max_anisotropy: float) -> bool:
    """The local linear part at the inliers' centre scales by 1/50-50 and stretches one axis at most
    max_anisotropy times the other (resizes, crops and rotations keep the aspect ratio nearly)."""
    centre = source.mean(axis=0)
    jacobian = _jacobian(transform, centre)
    singular = np.linalg.svd(jacobian, compute_uv=False)
    if not np.isfinite(singular).all() or singular[1] <= 0:
        return False
    return (
        0.02 < float(np.sqrt(singular[0] * singular[1])) < 50 and singular[0] / singular[1] < max_anisotropy
    )


def _jacobian(transform: np.ndarray, point: np.ndarray) -> np.ndarray:
    """(2, 2) derivative of a projective map at `point`."""
    x, y = float(point[0]), float(point[1])
    numerator = transform[:2, :2] @ np.array([x, y]) + transform[:2, 2]
    denominator = float(transform[2, :2] @ np.array([x, y]) + transform[2, 2])
    return (transform[:2, :2] * denominator - np.outer(numerator, transform[2, :2])) / denominator**2


def _plausible_homography(homography: np.ndarray, source: np.ndarray) -> bool:
    """Orientation-preserving and not folding over the inliers' bounding box."""
    low, high = source.min(axis=0), source.max(axis=0)
    corners = np.array([[low[0], low[1]], [high[0], low[1]], [high[0], high[1]], [low[0], high[1]]])
    mapped = _apply(homography, corners)
    if not np.isfinite(mapped).all():
        return False
    return _signed_area(corners) > 0 and _signed_area(mapped) > 0 and _is_convex(mapped)


def _signed_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _box_area(points: np.ndarray) -> float:
    extent = points.max(axis=0) - points.min(axis=0)
    return float(extent[0] * extent[1])


def _is_convex(points: np.ndarray) -> bool:
    edges = np.roll(points, -1, axis=0) - points
    following = np.roll(edges, -1, axis=0)
    cross = edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]
    return bool((cross > 0).all() or (cross < 0).all())


def _reprojection_errors(transform: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.norm(_apply(transform, source) - target, axis=1)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points through a (3, 3) projective matrix; returns (N, 2) float64."""
    homogeneous = np.column_stack([np.asarray(points, np.float64), np.ones(len(points))]) @ matrix.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return homogeneous[:, :2] / homogeneous[:, 2:3]


def needs_refinement(fit: GlobalFit, conf: AlignConf) -> bool:
    """Whether F_A's dense step should refine the affine part by ECC: few keypoint inliers, or a fit
    from feature-map cells (a cell is 16 canvas pixels wide)."""
    return fit.matcher != "rootsift" or fit.inliers < conf.ecc_below_inliers


def align_pair(
    query: np.ndarray, original: np.ndarray, transform: np.ndarray, conf: AlignConf, *, refine_affine: bool
) -> AlignedPair:
    """F_A's warp: the original resampled on the query's pixels at the working resolution, refined by
    ECC (when `refine_affine`) and by the smooth part of the DIS flow.

    query, original: (H, W, 3) uint8 RGB; transform: (3, 3) query pixels -> original pixels.
    """
    working_query, scale = working_image(query, conf.working_side)
    to_query = scaling(scale)
    original_small, original_scale = _prefiltered_original(original, transform, scale)
    working_to_original = np.linalg.inv(scaling(original_scale)) @ transform @ to_query
    margin = exclusion_margin(scale, conf)
    warped, comparable = _warp_original(original_small, working_to_original, working_query, conf, margin)
    correlation = _aligned_correlation(working_query, warped, comparable, conf)
    if refine_affine:
        refinement = _ecc_refinement(working_query, warped, comparable, conf)
        if refinement is not None:
            refined_to_original = working_to_original @ refinement
            refined, refined_comparable = _warp_original(
                original_small, refined_to_original, working_query, conf, margin
            )
            refined_correlation = _aligned_correlation(working_query, refined, refined_comparable, conf)
            if refined_correlation > correlation:
                working_to_original, warped, comparable = refined_to_original, refined, refined_comparable
                correlation = refined_correlation
    if conf.dense_flow:
        warped = _refine_with_flow(working_query, warped, comparable, conf)
    return AlignedPair(
        query=working_query,
        original=warped,
        comparable=comparable,
        scale=scale,
        transform=scaling(original_scale) @ working_to_original @ np.linalg.inv(to_query),
        correlation=correlation,
    )


def exclusion_margin(scale: float, conf: AlignConf) -> int:
    """Working pixels dropped next to what is not comparable: conf.border_margin plus
    conf.bleed_pixels query pixels (a JPEG block and the resampling kernel mix a pad or rotation
    fill into the picture next to it) at `scale` query pixels per working pixel."""
    return conf.border_margin + int(np.ceil(conf.bleed_pixels / max(scale, 1.0)))


def _warp_original(
    original: np.ndarray,
    working_to_original: np.ndarray,
    working_query: np.ndarray,
    conf: AlignConf,
    margin: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The original sampled at every pixel of the (h, w, 3) working query, (h, w, 3) uint8, and the
    comparable pixels, (h, w) bool: inside the original, outside letterbox bands and fill regions,
    `margin` pixels away from the edge of all of them (the query's own frame is no such edge)."""
    size = (working_query.shape[1], working_query.shape[0])
    warped = _warp(original, working_to_original, size, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
    inside = _warp(
        np.full(original.shape[:2], 255, np.uint8),
        working_to_original,
        size,
        cv2.INTER_NEAREST,
        cv2.BORDER_CONSTANT,
    )
    inside_mask = inside == 255
    comparable = inside_mask & ~letterbox_bands(working_query, warped, inside_mask, conf)
    comparable &= ~fill_regions(working_query, warped, inside_mask, conf)
    return warped, _eroded(comparable, margin)


def fill_regions(query: np.ndarray, warped: np.ndarray, inside: np.ndarray, conf: AlignConf) -> np.ndarray:
    """(h, w) bool: solid-colour regions connected to the query's frame edge (a pad of any width and
    colour, the fill of a rotation, the bars of a screenshot) that hide original content, with the
    holes they enclose that are smaller than conf.fill_max_hole of the frame (the text of a bar).

    query, warped: (h, w, 3) uint8, the working query and the original warped onto it; inside: (h, w)
    bool, where the warp found original pixels. A region is flooded from seeds every
    conf.fill_seed_step pixels along the frame edge over the median-filtered query, within
    conf.fill_tolerance gray levels of its seed per channel; it is kept when it covers at least
    conf.fill_min_area of the frame and the original behind it, brought to the query's contrast,
    is not as flat in that colour (a sky or a white wall the original shares stays comparable).
    """
    height, width = query.shape[:2]
    smooth = cv2.medianBlur(np.ascontiguousarray(query), 5)
    flooded = np.zeros((height + 2, width + 2), np.uint8)
    fill = np.zeros((height, width), bool)
    min_area = conf.fill_min_area * height * width
    matched: np.ndarray | None = None
    for x, y in _edge_seeds(height, width, conf.fill_seed_step):
        if flooded[y + 1, x + 1]:
            continue
        region = _flooded_region(smooth, (x, y), conf.fill_tolerance, flooded)
        if region is None or region.sum() < min_area:
            continue
        if matched is None:
            matched = contrast_matched(warped, query, inside)
        if _hides_original(smooth, matched, warped, query, region & inside, conf):
            fill |= region
    return _with_small_holes(fill, conf.fill_max_hole) if fill.any() else fill


def _edge_seeds(height: int, width: int, step: int) -> list[tuple[int, int]]:
    """(x, y) points every `step` pixels along the frame's edge, corners included."""
    xs = sorted({*range(0, width, step), width - 1})
    ys = sorted({*range(0, height, step), height - 1})
    return [
        *((x, 0) for x in xs),
        *((x, height - 1) for x in xs),
        *((0, y) for y in ys),
        *((width - 1, y) for y in ys),
    ]


def _flooded_region(
    image: np.ndarray, seed: tuple[int, int], tolerance: float, flooded: np.ndarray
) -> np.ndarray | None:
    """(h, w) bool: the 4-connected pixels of (h, w, 3) uint8 `image` within `tolerance` of the seed's
    colour per channel; marks them in `flooded` ((h + 2, w + 2) uint8, floodFill's mask convention)."""
    mask = np.zeros_like(flooded)
    difference = (tolerance,) * 3
    flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    area, _, _, _ = cv2.floodFill(image, mask, seed, 0, difference, difference, flags)
    if area == 0:
        return None
    flooded |= mask
    return mask[1:-1, 1:-1] > 0


def _hides_original(
    smooth: np.ndarray,
    matched: np.ndarray,
    warped: np.ndarray,
    query: np.ndarray,
    behind: np.ndarray,
    conf: AlignConf,
) -> bool:
    """Whether a flat query region hides original content: over `behind` ((h, w) bool, its pixels
    that have an original counterpart), the contrast-matched original (h, w, 3) float32 is not within
    3 x letterbox_flatness of the region's colour (smooth: the median-filtered query) at its 90th
    percentile, and what is left of the query's texture there (query, warped: (h, w, 3) uint8) does
    not follow the original's (correlation below conf.fill_max_correlation: fog or a contrast
    collapse fade a picture, a fill replaces it)."""
    if behind.sum() < 16:
        return False
    colour = smooth[behind].reshape(-1, 3).astype(np.float32).mean(axis=0)
    deviation = np.abs(matched[behind] - colour).max(axis=1)
    if float(np.percentile(deviation, 90)) <= 3 * conf.letterbox_flatness:
        return False
    query_gray = query[behind].astype(np.float32).mean(axis=1)
    original_gray = warped[behind].astype(np.float32).mean(axis=1)
    return _correlation(query_gray, original_gray) < conf.fill_max_correlation


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (N,) float32 samples (0 when either is constant)."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / norm if norm > 1e-6 else 0.0


def _with_small_holes(mask: np.ndarray, max_hole: float) -> np.ndarray:
    """(h, w) bool mask plus its enclosed holes smaller than max_hole of the frame."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    height, width = mask.shape
    holes = [
        label
        for label in range(1, count)
        if stats[label, cv2.CC_STAT_AREA] < max_hole * height * width
        and not _touches_frame(stats[label], mask.shape)
    ]
    return mask | np.isin(labels, holes) if holes else mask


def _touches_frame(stats: np.ndarray, shape: tuple[int, int]) -> bool:
    x, y, width, height = (int(v) for v in stats[:4])
    return x == 0 or y == 0 or x + width == shape[1] or y + height == shape[0]


def letterbox_bands(query: np.ndarray, warped: np.ndarray, inside: np.ndarray, conf: AlignConf) -> np.ndarray:
    """(h, w) bool: flat bands along the query's edges (letterboxing or a solid pad after a crop)
    where the aligned original, brought to the query's contrast, is not as flat in the same colour.

    query, warped: (h, w, 3) uint8, the working query and the original warped onto it; inside:
    (h, w) bool, where the warp found original pixels. Bringing the original to the query's contrast
    first keeps a faded copy's whole picture, or a white background the original shares, comparable.
    """
    matched = None
    bands = np.zeros(query.shape[:2], bool)
    for side in range(4):
        turned_query = np.rot90(query, side)
        lines = _flat_edge_lines(turned_query, conf)
        if lines < conf.letterbox_min_lines:
            continue
        if matched is None:
            matched = contrast_matched(warped, query, inside)
        band_colour = turned_query[0].reshape(-1, 3).astype(np.float32).mean(axis=0)
        behind = np.rot90(matched, side)[:lines]
        deviation = np.abs(behind - band_colour).max(axis=2)
        if float(np.percentile(deviation, 90)) <= 3 * conf.letterbox_flatness:
            continue
        np.rot90(bands, side)[:lines] = True
    return bands


def contrast_matched(original: np.ndarray, query: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32: the warped original through the gray gain (least-squares slope of the
    query on the original, in [0, 1]) and per-channel offset that best predict the query over the
    `inside` pixels. The query's noise and JPEG error do not bias the slope; a contrast collapse does
    lower it."""
    if inside.sum() < 16:
        return original.astype(np.float32)
    query_pixels, original_pixels = query[inside].astype(np.float32), original[inside].astype(np.float32)
    query_gray, original_gray = query_pixels.mean(axis=1), original_pixels.mean(axis=1)
    variance = float(original_gray.var())
    covariance = float(np.mean((query_gray - query_gray.mean()) * (original_gray - original_gray.mean())))
    gain = min(1.0, max(0.0, covariance / variance)) if variance > 1e-6 else 1.0
    return (original.astype(np.float32) - original_pixels.mean(axis=0)) * gain + query_pixels.mean(axis=0)


def _flat_edge_lines(image: np.ndarray, conf: AlignConf) -> int:
    """Number of consecutive rows from the top of (h, w, 3) uint8 `image` (at most half of them) whose
    pixels nearly all lie within 3 x letterbox_flatness of the first row's colour, the first row
    itself being flat (JPEG ringing where the band meets the picture stays within that)."""
    rows = image[: image.shape[0] // 2].astype(np.float32)
    if rows.shape[0] == 0 or float(rows[0].std(axis=0).max()) > conf.letterbox_flatness:
        return 0
    deviation = np.abs(rows - rows[0].mean(axis=0)).max(axis=2)
    band = np.percentile(deviation, 90, axis=1) <= 3 * conf.letterbox_flatness
    return int(np.argmin(band)) if not band.all() else len(band)


def working_image(image: np.ndarray, working_side: int) -> tuple[np.ndarray, float]:
    """The image shrunk so that its longest side is at most working_side, and image px per working px."""
    height, width = image.shape[:2]
    scale = max(1.0, max(height, width) / working_side)
    if scale == 1.0:
        return np.ascontiguousarray(image), 1.0
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def scaling(scale: float) -> np.ndarray:
    """(3, 3) from the pixels of an image shrunk by `scale` to the pixels of the full image (pixel
    centres kept)."""
    return np.array([[scale, 0.0, 0.5 * scale - 0.5], [0.0, scale, 0.5 * scale - 0.5], [0.0, 0.0, 1.0]])


def _prefiltered_original(
    original: np.ndarray, transform: np.ndarray, query_scale: float
) -> tuple[np.ndarray, float]:
    """The original shrunk to about the working resolution (no aliasing when it is resampled), and
    original pixels per pixel of the result."""
    original_per_query = float(np.sqrt(abs(np.linalg.det(transform[:2, :2]))))
    factor = original_per_query * query_scale
    if factor <= 1.25:
        return np.ascontiguousarray(original), 1.0
    height, width = original.shape[:2]
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(original, size, interpolation=cv2.INTER_AREA), width / size[0]


def _warp(
    image: np.ndarray, dst_to_src: np.ndarray, size: tuple[int, int], interpolation: int, border: int
) -> np.ndarray:
    """Sample image at dst_to_src(x) for every pixel x of a `size` (width, height) grid; outside the
    image, BORDER_REPLICATE keeps blurs of the edge clean, BORDER_CONSTANT (0) marks what is missing."""
    return cv2.warpPerspective(
        image, dst_to_src, size, flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=border, borderValue=0
    )


def _eroded(mask: np.ndarray, margin: int) -> np.ndarray:
    if margin <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1))
    return cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE) > 0


def _ecc_refinement(
    query: np.ndarray, warped: np.ndarray, comparable: np.ndarray, conf: AlignConf
) -> np.ndarray | None:
    """(3, 3) affine on working pixels with warped(M x) ~ query(x) by ECC, or None when it fails or
    moves the image implausibly far."""
    query_gray, factor = working_image(cv2.cvtColor(query, cv2.COLOR_RGB2GRAY), conf.ecc_side)
    warped_gray, _ = working_image(cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY), conf.ecc_side)
    mask, _ = working_image(comparable.astype(np.uint8) * 255, conf.ecc_side)
    if (mask == 255).sum() < 64:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, conf.ecc_iterations, 1e-4)
    try:
        _, matrix = cv2.findTransformECC(
            query_gray.astype(np.float32),
            warped_gray.astype(np.float32),
            np.eye(2, 3, dtype=np.float32),
            cv2.MOTION_AFFINE,
            criteria,
            (mask == 255).astype(np.uint8),
            5,
        )
    except cv2.error:
        return None
    small = np.vstack([matrix.astype(np.float64), [0.0, 0.0, 1.0]])
    refinement = scaling(factor) @ small @ np.linalg.inv(scaling(factor))
    height, width = comparable.shape
    corners = np.array([[0.0, 0.0], [width - 1.0, 0.0], [0.0, height - 1.0], [width - 1.0, height - 1.0]])
    shift = np.abs(_apply(refinement, corners) - corners).max()
    if not np.isfinite(shift) or shift > conf.ecc_max_shift * float(np.hypot(width, height)):
        return None
    return refinement


def _aligned_correlation(
    query: np.ndarray, warped: np.ndarray, comparable: np.ndarray, conf: AlignConf
) -> float:
    """Correlation coefficient of the two gray images over the comparable pixels, at ecc_side."""
    query_gray, _ = working_image(cv2.cvtColor(query, cv2.COLOR_RGB2GRAY), conf.ecc_side)
    warped_gray, _ = working_image(cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY), conf.ecc_side)
    mask, _ = working_image(comparable.astype(np.uint8) * 255, conf.ecc_side)
    return _masked_correlation(query_gray, warped_gray, mask == 255)


def _masked_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    if mask.sum() < 2:
        return 0.0
    x = a[mask].astype(np.float64)
    y = b[mask].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def _refine_with_flow(
    query: np.ndarray, warped: np.ndarray, comparable: np.ndarray, conf: AlignConf
) -> np.ndarray:
    """The warped original moved by the smooth, small part of the DIS flow from the query to it.

    The flow sees the query's own pixels wherever the original has no counterpart (padding, rotation
    corners, beyond a crop): there the two images agree, so the edge of the picture does not pull
    the flow of the comparable pixels next to it."""
    height, width = comparable.shape
    if comparable.sum() < 64:
        return warped
    filled = np.where(comparable[:, :, None], warped, query)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    flow = dis.calc(_normalized_gray(query, comparable), _normalized_gray(filled, comparable), None)
    smooth = _smooth_flow(flow, comparable, conf.flow_smoothing * float(np.hypot(height, width)))
    smooth = np.clip(smooth, -conf.flow_max_pixels, conf.flow_max_pixels)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(
        warped,
        grid_x + smooth[:, :, 0],
        grid_y + smooth[:, :, 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _smooth_flow(flow: np.ndarray, comparable: np.ndarray, sigma: float) -> np.ndarray:
    """(h, w, 2) flow averaged by a Gaussian of `sigma` over the comparable pixels; computed at 1/8
    resolution, which a blur this wide does not need more than."""
    height, width = comparable.shape
    small_size = (max(1, width // FLOW_SMOOTHING_FACTOR), max(1, height // FLOW_SMOOTHING_FACTOR))
    weights = cv2.resize(comparable.astype(np.float32), small_size, interpolation=cv2.INTER_AREA)
    small = cv2.resize(flow * comparable[:, :, None], small_size, interpolation=cv2.INTER_AREA)
    small_sigma = max(sigma / FLOW_SMOOTHING_FACTOR, 0.5)
    numerator = cv2.GaussianBlur(small, (0, 0), small_sigma)
    denominator = cv2.GaussianBlur(weights, (0, 0), small_sigma)
    smooth = numerator / np.maximum(denominator, 1e-3)[:, :, None]
    return cv2.resize(smooth, (width, height), interpolation=cv2.INTER_LINEAR)


def _normalized_gray(image: np.ndarray, comparable: np.ndarray) -> np.ndarray:
    """uint8 gray stretched to the 1st-99th percentile of its comparable pixels (so a global
    brightness or contrast change does not bias the flow)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    low, high = np.percentile(gray[comparable], (1, 99))
    stretched = (gray - low) * (255.0 / max(float(high - low), 1.0))
    return np.clip(stretched, 0, 255).astype(np.uint8)
