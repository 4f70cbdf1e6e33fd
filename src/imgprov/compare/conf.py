"""Compare presets: frozen dataclasses whose names encode their key parameters.

`compare_preset(name)` returns a preset or raises `PresetError` listing the valid names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from imgprov.presets import LocalFeatureConf, lookup

ROOTSIFT_1500_640 = LocalFeatureConf(name="rootsift-1500-640", max_keypoints=1500, max_side=640)
ROOTSIFT_COARSE = LocalFeatureConf(
    name="rootsift-2k-512-c005", max_keypoints=2000, max_side=512, contrast_threshold=0.005
)
ROOTSIFT_SMALL = LocalFeatureConf(
    name="rootsift-2k-256-c005", max_keypoints=2000, max_side=256, contrast_threshold=0.005
)


@dataclass(frozen=True)
class AlignConf:
    """Geometric alignment F_A.

    features: RootSIFT preset of both images when the caller passes none.
    ratio: Lowe's ratio test; reprojection_fraction: MAGSAC inlier threshold as a fraction of the
    original's diagonal; min_inliers: fewer consistent matches than this means "no transform".
    homography_gain: a homography replaces the affine fit only with this many times its inliers.
    max_anisotropy: largest ratio of the transform's two scale factors accepted.
    retry_below_inliers: with fewer inliers, both images are described again with retry_features
    after a contrast stretch (blurred, noisy or faded copies).
    denoise_features, denoise_median: when neither finds a transform, the query is median-filtered
    (impulse and shot noise) and both are described again, smaller, with denoise_features.
    smooth_sigma: when that finds too few inliers too, both images are blurred alike by a Gaussian of
    smooth_sigma pixels of the denoise_features' frame (Gaussian noise) and described again so.
    working_side: longest side, in pixels, of the query frame in which the pair is compared.
    border_margin, bleed_pixels: working pixels, plus query pixels, dropped along the edge of the
    comparable area (JPEG blocks, ringing and resampling blur mix a padding or rotation fill into
    the picture next to it: not edits).
    ecc_below_inliers: with fewer inliers the affine residual is refined by ECC (at ecc_side pixels,
    ecc_iterations steps); a refinement moving a corner by more than ecc_max_shift x the working
    diagonal, or lowering the correlation, is rejected. ECC is a global least-squares fit, so an
    edited region pulls it: it only serves pairs whose keypoints are too few to be precise.
    dense_flow: refine with DIS optical flow; only its part smoothed by a Gaussian of
    flow_smoothing x the working diagonal, clipped to flow_max_pixels, is applied.
    deep_fallback: when SIFT finds no transform, match EfficientNet-Lite0 cells (stride 16) and fit a
    similarity with a RANSAC threshold of deep_threshold_cells cells; deep_min_inliers consistent
    cells are needed (unrelated photos reach about 12).
    letterbox_flatness, letterbox_min_lines: a band of at least letterbox_min_lines working rows or
    columns along an edge of the query whose lines have a colour standard deviation at most
    letterbox_flatness (gray levels) and the colour of the outermost line is letterboxing: not
    comparable unless the original, brought to the query's contrast, shows the same flat colour there.
    fill_tolerance, fill_seed_step, fill_min_area, fill_max_hole: solid-colour regions reached from
    the query's edge (pads, rotation fill, screenshot bars; `imgprov.compare.align.fill_regions`):
    flooded within fill_tolerance gray levels from seeds every fill_seed_step working pixels along
    the edge, kept from fill_min_area of the frame, with their enclosed holes below fill_max_hole,
    unless the query's remaining texture there correlates with the original's by
    fill_max_correlation or more (a faded picture, not a fill).
    """

    features: LocalFeatureConf = ROOTSIFT_1500_640
    retry_features: LocalFeatureConf = ROOTSIFT_COARSE
    denoise_features: LocalFeatureConf = ROOTSIFT_SMALL
    denoise_median: int = 3
    smooth_sigma: float = 2.0
    ratio: float = 0.85
    reprojection_fraction: float = 0.006
    min_inliers: int = 12
    homography_gain: float = 1.15
    max_anisotropy: float = 1.5
    max_iterations: int = 2000
    retry_below_inliers: int = 25
    working_side: int = 512
    border_margin: int = 4
    bleed_pixels: float = 6.0
    ecc_below_inliers: int = 40
    ecc_side: int = 256
    ecc_iterations: int = 30
    ecc_max_shift: float = 0.03
    dense_flow: bool = True
    flow_smoothing: float = 0.04
    flow_max_pixels: float = 3.0
    deep_fallback: bool = True
    deep_min_inliers: int = 20
    deep_threshold_cells: float = 0.75
    letterbox_flatness: float = 3.0
    letterbox_min_lines: int = 2
    fill_tolerance: float = 6.0
    fill_seed_step: int = 8
    fill_min_area: float = 0.002
    fill_max_hole: float = 0.01
    fill_max_correlation: float = 0.3


@dataclass(frozen=True)
class DifferenceConf:
    """The benign-robust difference channels (see imgprov.compare.difference).

    pre_blur: Gaussian sigma, in working pixels, applied before differences (noise, JPEG blocks);
    the structure channels use 1, 2 and 4 times it with windows of structure_window times that.
    structure_constant: stabilizer of the local correlation (gray levels squared).
    highpass_sigma: scale removed from the residual_highpass channel (fog, vignetting).
    detail_sigma, detail_constant: high-pass scale and stabilizer of the detail-energy ratio.
    z_floor: smallest robust deviation a channel is divided by (an undegraded copy has none).
    context_sigmas: scales at which some channels are smoothed again as spatial context.
    blur_sigmas: candidate Gaussian blurs of the original, in working pixels; the one that matches
    the query best is applied before every channel (0 must be among them: an unblurred copy).
    """

    pre_blur: float = 1.0
    structure_window: float = 3.0
    structure_constant: float = 4.0
    highpass_sigma: float = 16.0
    detail_sigma: float = 2.0
    detail_constant: float = 1.0
    z_floor: float = 0.05
    context_sigmas: tuple[float, ...] = (4.0, 12.0)
    blur_sigmas: tuple[float, ...] = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


@dataclass(frozen=True)
class CompareConf:
    """One compare configuration.

    heat_smoothing: Gaussian sigma, in working pixels, applied to the pixel model's probabilities.
    threshold: heatmap value at and above which a pixel is changed; None takes the calibrated one.
    min_region_fraction: connected changed blobs smaller than this share of the comparable area
    are dropped from the mask.
    """

    name: str
    align: AlignConf = field(default_factory=AlignConf)
    difference: DifferenceConf = field(default_factory=DifferenceConf)
    heat_smoothing: float = 1.0
    threshold: float | None = None
    min_region_fraction: float = 0.0005


COMPARES: Mapping[str, CompareConf] = {
    conf.name: conf
    for conf in (
        CompareConf(name="rootsift-dis-mlp-512"),
        CompareConf(name="rootsift-dis-mlp-512-t035", threshold=0.35),
        CompareConf(name="rootsift-mlp-512-noflow", align=AlignConf(dense_flow=False)),
    )
}

DEFAULT_COMPARE = "rootsift-dis-mlp-512"


def compare_preset(name: str = DEFAULT_COMPARE) -> CompareConf:
    """The compare preset called `name`; `PresetError` lists the valid names."""
    return lookup(COMPARES, name, "compare")
