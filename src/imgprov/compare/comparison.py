"""Compare stage: align a query with a candidate original, localize the edits, give the verdict.

F_A aligns the original onto the query (imgprov.compare.align), the benign-robust difference
channels compare them (imgprov.compare.difference), a calibrated pixel model turns the channels into
a heatmap, the heatmap is thresholded into a mask and regions, and the ICN's 3-way verdict is read
from a few pair features (imgprov.compare.verdict). Every output is in the query's own pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from imgprov.compare.align import AlignedPair, GlobalFit, align_pair, estimate_transform, needs_refinement
from imgprov.compare.calibration import Calibration, CalibrationMissing, packaged_calibration
from imgprov.compare.conf import CompareConf
from imgprov.compare.difference import DifferenceMaps, difference_maps, masked_blur, pixel_features
from imgprov.compare.evidence import region_evidence
from imgprov.compare.models import VERDICTS, Verdict
from imgprov.compare.regions import ChangedRegion, changed_regions, threshold_mask
from imgprov.compare.verdict import verdict_features
from imgprov.extract.rootsift import LocalFeatures


@dataclass(frozen=True)
class Comparison:
    """What compare found, in the query's pixel frame (H, W = the query's height and width).

    verdict: benign, manipulated or distinct (`Verdict`, a str); probabilities: the three calibrated
    probabilities (they sum to 1).
    transform: (3, 3) float64 mapping query pixels to original pixels, None when the images are
    not related by any plausible transform.
    heatmap: (H, W) float32 in [0, 1], how likely each pixel was edited (0 where not comparable).
    mask: (H, W) bool, the changed pixels (heatmap >= threshold); empty unless the verdict is
    "manipulated".
    comparable: (H, W) bool, query pixels whose content also exists in the original (not padding,
    rotation fill, screenshot bars or beyond a crop) and can be compared (not clipped to white or
    black by the copy's tone curve where the original has detail).
    regions: connected parts of the mask, highest score first.
    threshold: the heatmap threshold used; inliers: keypoint matches the transform explains.
    timings: seconds per step.
    """

    verdict: Verdict
    probabilities: dict[Verdict, float]
    transform: np.ndarray | None
    heatmap: np.ndarray
    mask: np.ndarray
    comparable: np.ndarray
    regions: tuple[ChangedRegion, ...]
    threshold: float
    inliers: int
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        comparable_area = int(self.comparable.sum())
        return {
            "verdict": self.verdict,
            "probabilities": {name: round(value, 4) for name, value in self.probabilities.items()},
            "transform": None if self.transform is None else np.round(self.transform, 6).tolist(),
            "regions": [region.to_json() for region in self.regions],
            "threshold": round(self.threshold, 4),
            "inliers": self.inliers,
            "comparable_fraction": round(comparable_area / self.comparable.size, 4),
            "changed_fraction": round(int(self.mask.sum()) / max(comparable_area, 1), 4),
            "timings": {name: round(seconds, 4) for name, seconds in self.timings.items()},
        }


def compare_images(
    query: np.ndarray,
    original: np.ndarray,
    conf: CompareConf,
    *,
    query_features: LocalFeatures | None = None,
    original_features: LocalFeatures | None = None,
    calibration: Calibration | None = None,
) -> Comparison:
    """Compare a query with a candidate original.

    query, original: (H, W, 3) and (H', W', 3) uint8 RGB. query_features / original_features:
    RootSIFT features already extracted from these pixels (e.g. by search), else extracted here.
    calibration: the fitted models; the packaged calibration.json when None.
    """
    calibration = calibration or packaged_calibration()
    alignment = run_alignment(
        query, original, conf, query_features=query_features, original_features=original_features
    )
    return compare_aligned(
        query.shape[:2], alignment.fit, alignment.pair, conf, calibration, alignment.timings
    )


@dataclass(frozen=True)
class Alignment:
    """F_A's result: the global fit and the aligned pair (both None when the images are unrelated),
    and the seconds its steps took ("match", "align")."""

    fit: GlobalFit | None
    pair: AlignedPair | None
    timings: dict[str, float]


def run_alignment(
    query: np.ndarray,
    original: np.ndarray,
    conf: CompareConf,
    *,
    query_features: LocalFeatures | None = None,
    original_features: LocalFeatures | None = None,
) -> Alignment:
    """F_A: the global transform, then the original warped onto the query's working frame."""
    started = time.perf_counter()
    fit = estimate_transform(
        query, original, conf.align, query_features=query_features, original_features=original_features
    )
    timings = {"match": time.perf_counter() - started}
    if fit is None:
        return Alignment(None, None, timings)
    step = time.perf_counter()
    refine = needs_refinement(fit, conf.align)
    pair = align_pair(query, original, fit.transform, conf.align, refine_affine=refine)
    timings["align"] = time.perf_counter() - step
    return Alignment(fit, pair, timings)


def compare_aligned(
    shape: tuple[int, int],
    fit: GlobalFit | None,
    pair: AlignedPair | None,
    conf: CompareConf,
    calibration: Calibration,
    timings: dict[str, float],
) -> Comparison:
    """The rest of compare once F_A has run: shape is the query's (H, W); fit and pair are None when
    no transform was found. timings: the seconds F_A took, completed here."""
    threshold = calibration.threshold if conf.threshold is None else conf.threshold
    timings = dict(timings)
    if fit is None or pair is None:
        timings["total"] = sum(timings.values())
        return _unrelated(shape, calibration, threshold, timings)
    step = time.perf_counter()
    heatmap_small, maps = working_heatmap(pair, conf, calibration)
    timings["difference"] = time.perf_counter() - step
    step = time.perf_counter()
    mask_small = threshold_mask(heatmap_small, pair.comparable, threshold, conf.min_region_fraction)
    probabilities = calibration.verdict_model.probabilities(
        verdict_features(fit, pair, maps, heatmap_small, mask_small)
    )
    verdict = VERDICTS[int(np.argmax(probabilities))]
    heatmap, mask, comparable, regions = _in_query_frame(shape, maps, heatmap_small, verdict, threshold, conf)
    timings["decide"] = time.perf_counter() - step
    timings["total"] = sum(timings.values())
    return Comparison(
        verdict=verdict,
        probabilities={name: float(p) for name, p in zip(VERDICTS, probabilities, strict=True)},
        transform=pair.transform,
        heatmap=heatmap,
        mask=mask,
        comparable=comparable,
        regions=regions,
        threshold=threshold,
        inliers=fit.inliers,
        timings=timings,
    )


def working_heatmap(
    pair: AlignedPair, conf: CompareConf, calibration: Calibration
) -> tuple[np.ndarray, DifferenceMaps]:
    """(h, w) float32 heatmap in the working frame of `pair` (0 where not comparable), and the
    difference maps it was computed from."""
    maps = difference_maps(pair, conf.difference)
    features = pixel_features(maps, conf.difference)
    if features.shape[-1] != calibration.pixel_model.feature_count:
        raise CalibrationMissing(
            f"the pixel model was fitted on {calibration.pixel_model.feature_count} features, this code "
            f"computes {features.shape[-1]}; run `python -m benchmarks.calibrate_compare`"
        )
    probability = calibration.pixel_model.probability(features)
    weights = maps.comparable.astype(np.float32)
    heatmap = masked_blur(probability, weights, conf.heat_smoothing) * weights
    return np.clip(heatmap, 0.0, 1.0).astype(np.float32), maps


def _in_query_frame(
    shape: tuple[int, int],
    maps: DifferenceMaps,
    heatmap_small: np.ndarray,
    verdict: Verdict,
    threshold: float,
    conf: CompareConf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[ChangedRegion, ...]]:
    """Heatmap, mask, comparable mask and regions (with their evidence) at the query's full
    resolution; maps and heatmap_small: the difference channels and the heatmap of the working frame."""
    height, width = shape
    heatmap = cv2.resize(heatmap_small, (width, height), interpolation=cv2.INTER_LINEAR)
    comparable = (
        cv2.resize(maps.comparable.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    )
    heatmap *= comparable
    if verdict != Verdict.MANIPULATED:
        return heatmap, np.zeros(shape, bool), comparable, ()
    mask = threshold_mask(heatmap, comparable, threshold, conf.min_region_fraction)
    regions = changed_regions(mask, heatmap, lambda region: region_evidence(region, heatmap_small, maps))
    return heatmap, mask, comparable, regions


def _unrelated(
    shape: tuple[int, int], calibration: Calibration, threshold: float, timings: dict[str, float]
) -> Comparison:
    probabilities = dict(calibration.no_transform)
    return Comparison(
        verdict=Verdict(max(probabilities, key=probabilities.__getitem__)),
        probabilities=probabilities,
        transform=None,
        heatmap=np.zeros(shape, np.float32),
        mask=np.zeros(shape, bool),
        comparable=np.zeros(shape, bool),
        regions=(),
        threshold=threshold,
        inliers=0,
        timings=timings,
    )
