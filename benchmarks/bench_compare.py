"""Benchmark of `imgprov compare` and the papers' baselines on held-out pair sets.

    python -m benchmarks.bench_compare                 # 100 pairs per set; docs/benchmarks/compare.md
    python -m benchmarks.bench_compare --pairs 30      # quicker

Pairs come from the test part of the photo split of `benchmarks.calibrate_compare` (scenes never
used by the calibration), four sets as in paper 004 section 4.1: Benign, Manip, Manip+Benign and
Distinct, with exact changed-pixel masks in the query frame, in two families of benign transforms:
the training family (`benchmarks.transforms`, whose generator the calibration is fitted on) and
the evaluation-only family (`benchmarks.transforms_eval`: other code paths and parameter ranges,
never seen by the calibration). imgprov is scored on both, side by side, with a table of the
benign copies' false-alarm rate per transform present; the baselines on the training family only.
Scored per set:

* verdict accuracy (benign / manipulated / distinct, the ICN's 3-way output);
* paper 004's IoU: mean over pairs of IoU(S(U), T), with S(U) = the mask, all 0 or all 1 for a
  "manipulated", "benign" or "distinct" answer, at the calibrated threshold and at the paper's 0.35;
* pixel F1 and MCC of S(U) per pair, averaged over the manipulated pairs (Manip and Manip+Benign);
* AP of benign vs manipulated: the P(manipulated) ranking of the Benign, Manip and Manip+Benign pairs;
* CPU and wall milliseconds per pair (this process, one pair at a time).

Baselines (paper 004 section 4.5), whose heatmaps are normalized by their maximum as in the paper and
who have no verdict (S(U) = U; their AP ranks pairs by the raw peak of their map): SSD between the
aligned images (F_A as imgprov computes it) pooled to 7x7 as in the paper and per pixel; SSD with
the original only resized to the query (no alignment); the EfficientNet feature difference (the
papers' ResNetConv with the network imgprov ships): the channel-mean absolute difference of the
stride-8 EfficientNet-Lite0 maps of the aligned pair; and ErrAnalysis, error-level analysis of the
query alone (re-encoded as JPEG 90). Baselines are shown at 0.35 and at their best threshold on this
very test set (an upper bound in their favour).

A last section times compare on pairs of every set whose query and original are both resized to
1 megapixel: CPU time of the process (all its threads) and wall time, with RootSIFT extracted by
compare and with the features search already extracted passed in.
"""

from __future__ import annotations

import argparse
import datetime
import io
import itertools
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from benchmarks import metrics
from benchmarks.calibrate_compare import DATA, PhotoPart, _fingerprint, corpus_photos, pair_sets, split_photos
from benchmarks.edit_survival import EditSurvival, pair_survival
from benchmarks.queries import PAIR_KINDS, Pair, load_mask, load_pairs, load_rgb, save_pairs
from benchmarks.report import markdown_table, write_section
from benchmarks.run import git_commit, machine_description
from benchmarks.transforms_eval import EVAL_GENERATOR_VERSION, generate_eval_pairs, transforms_present
from imgprov.compare import deep
from imgprov.compare.align import AlignedPair
from imgprov.compare.calibration import PAPER_THRESHOLD, Calibration, packaged_calibration
from imgprov.compare.comparison import Comparison, compare_aligned, compare_images, run_alignment
from imgprov.compare.conf import CompareConf, compare_preset
from imgprov.compare.regions import threshold_mask
from imgprov.extract.rootsift import extract_rootsift
from imgprov.presets import local_features

SWEEP = tuple(float(t) for t in np.round(np.arange(0.05, 1.0, 0.05), 2))
MANIPULATED_KINDS = ("manip", "manip+benign")
SET_NAMES = {"benign": "Benign", "manip": "Manip", "manip+benign": "Manip+Benign", "distinct": "Distinct"}
EXPECTED = {"benign": "benign", "manip": "manipulated", "manip+benign": "manipulated", "distinct": "distinct"}
ONE_MEGAPIXEL = 1_000_000
IMGPROV = "imgprov compare"
IMGPROV_UNDECIDED = "imgprov compare, S(U) = U"
SSD_ALIGNED_POOLED = "SSD + F_A (7x7)"
SSD_ALIGNED = "SSD + F_A (per pixel)"
SSD_UNALIGNED = "SSD, no alignment (7x7)"
EFFNET = "EfficientNet-Lite0 feature difference + F_A"
ERROR_LEVEL = "ErrAnalysis (JPEG 90)"
METHODS = (IMGPROV, IMGPROV_UNDECIDED, SSD_ALIGNED_POOLED, SSD_ALIGNED, SSD_UNALIGNED, EFFNET, ERROR_LEVEL)
SURVIVAL_BINS = (0.0, 0.5, 1.0, 2.0, math.inf)
"""Edges of the `EditSurvival.ratio` groups of the Manip+Benign table."""


@dataclass(frozen=True)
class PairScores:
    """What one method scored on one pair: IoU of S(U) at each SWEEP threshold, F1/MCC at the
    reported threshold, the verdict (None for a baseline), its manipulation score, and the CPU and
    wall seconds it took."""

    kind: str
    ious: np.ndarray
    f1: float
    mcc: float
    verdict: str | None
    manipulated_score: float
    cpu_seconds: float
    wall_seconds: float


@dataclass
class MethodRun:
    name: str
    threshold: float | None
    pairs: list[PairScores] = field(default_factory=list)


@dataclass(frozen=True)
class Truth:
    mask: np.ndarray
    label: str


@dataclass(frozen=True)
class Clock:
    """CPU (process_time: every thread of this process) and wall (perf_counter) readings."""

    cpu: float
    wall: float

    @classmethod
    def now(cls) -> Clock:
        return cls(time.process_time(), time.perf_counter())

    def since(self) -> tuple[float, float]:
        """(cpu seconds, wall seconds) since this reading."""
        return time.process_time() - self.cpu, time.perf_counter() - self.wall


# --- baselines ---------------------------------------------------------------------------------------


def ssd_map(query: np.ndarray, original: np.ndarray) -> np.ndarray:
    """(h, w) float32 per-pixel sum of squared RGB differences."""
    difference = query.astype(np.float32) - original.astype(np.float32)
    return (difference**2).sum(axis=2)


def pooled_7x7(values: np.ndarray) -> np.ndarray:
    """The map averaged into 7 x 7 cells and brought back to its size (paper 004's SSD protocol)."""
    height, width = values.shape
    cells = cv2.resize(values, (7, 7), interpolation=cv2.INTER_AREA)
    return cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC)


def error_level_map(query: np.ndarray, quality: int = 90) -> np.ndarray:
    """(H, W) float32 ErrAnalysis: |query - JPEG(query)| averaged over channels, smoothed."""
    buffer = io.BytesIO()
    Image.fromarray(query).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        recompressed = np.asarray(decoded.convert("RGB"), dtype=np.float32)
    level = np.abs(query.astype(np.float32) - recompressed).mean(axis=2)
    return cv2.GaussianBlur(level, (0, 0), 2.0)


def effnet_difference_map(pair: AlignedPair) -> np.ndarray:
    """(h, w) float32 channel-mean |difference| of the stride-8 EfficientNet-Lite0 maps of the aligned
    query and original, on the working frame's pixels (the papers' ResNetConv baseline)."""
    query_maps, original_maps = deep.feature_maps(pair.query), deep.feature_maps(pair.original)
    difference = np.abs(query_maps.level(8) - original_maps.level(8)).mean(axis=0)
    return deep.on_image(difference.astype(np.float32), query_maps, 8)


# --- scoring -----------------------------------------------------------------------------------------


def score_masks(predicted_at: Callable[[float], np.ndarray], truth: Truth, verdict: str | None) -> np.ndarray:
    """(len(SWEEP),) IoU of S(U) at every threshold; verdict None means S(U) = U."""
    return np.array(
        [metrics.mask_iou(_decided(predicted_at(t), verdict), truth.mask) for t in SWEEP], np.float64
    )


def _decided(mask: np.ndarray, verdict: str | None) -> np.ndarray:
    return mask if verdict is None else metrics.decision_mask(mask, verdict)


def pixel_quality(mask: np.ndarray, truth: Truth, verdict: str | None) -> tuple[float, float]:
    counts = metrics.confusion_counts(_decided(mask, verdict), truth.mask)
    return counts.f1, counts.mcc


def in_query_frame(values: np.ndarray, pair: AlignedPair, shape: tuple[int, int]) -> np.ndarray:
    """A working-frame map (0 outside the comparable area) at the query's resolution."""
    height, width = shape
    values = np.where(pair.comparable, values, 0.0).astype(np.float32)
    return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)


def normalized(values: np.ndarray) -> np.ndarray:
    peak = float(values.max()) if values.size else 0.0
    return values / peak if peak > 0 else values


@dataclass
class Bench:
    """Scores pairs into `runs` (one MethodRun per method); without `baselines`, imgprov only."""

    conf: CompareConf
    calibration: Calibration
    runs: dict[str, MethodRun]
    baselines: bool = True

    def run_pair(self, pair: Pair) -> None:
        query, original = load_rgb(pair.query_path), load_rgb(pair.original_path)
        truth = Truth(load_mask(pair.mask_path), pair.label)
        clock = Clock.now()
        alignment = run_alignment(query, original, self.conf)
        alignment_cost = clock.since()
        comparison = compare_aligned(
            query.shape[:2], alignment.fit, alignment.pair, self.conf, self.calibration, alignment.timings
        )
        self._score_imgprov(pair.kind, comparison, truth, clock.since())
        if self.baselines:
            self._score_baselines(pair.kind, query, original, alignment.pair, truth, alignment_cost)

    def _score_imgprov(
        self, kind: str, comparison: Comparison, truth: Truth, cost: tuple[float, float]
    ) -> None:
        comparable = comparison.comparable
        heatmap = comparison.heatmap
        masks = {t: threshold_mask(heatmap, comparable, t, self.conf.min_region_fraction) for t in SWEEP}
        probability = comparison.probabilities["manipulated"]
        for name, verdict in ((IMGPROV, comparison.verdict), (IMGPROV_UNDECIDED, None)):
            reported = threshold_mask(
                heatmap, comparable, comparison.threshold, self.conf.min_region_fraction
            )
            f1, mcc = pixel_quality(reported, truth, verdict)
            ious = score_masks(lambda t: masks[t], truth, verdict)
            self.runs[name].pairs.append(PairScores(kind, ious, f1, mcc, verdict, probability, *cost))

    def _score_baselines(
        self,
        kind: str,
        query: np.ndarray,
        original: np.ndarray,
        aligned: AlignedPair | None,
        truth: Truth,
        alignment_cost: tuple[float, float],
    ) -> None:
        shape = query.shape[:2]
        maps = {
            SSD_UNALIGNED: _timed(lambda: pooled_7x7(ssd_map(query, _resized_like(original, shape)))),
            ERROR_LEVEL: _timed(lambda: error_level_map(query)),
        }
        if aligned is not None:
            maps[SSD_ALIGNED_POOLED] = _timed(
                lambda: in_query_frame(pooled_7x7(_ssd(aligned)), aligned, shape)
            )
            maps[SSD_ALIGNED] = _timed(
                lambda: in_query_frame(cv2.GaussianBlur(_ssd(aligned), (0, 0), 2.0), aligned, shape)
            )
            maps[EFFNET] = _timed(lambda: in_query_frame(effnet_difference_map(aligned), aligned, shape))
            for name in (SSD_ALIGNED_POOLED, SSD_ALIGNED, EFFNET):
                values, cpu, wall = maps[name]
                maps[name] = (values, cpu + alignment_cost[0], wall + alignment_cost[1])
        for name in (SSD_ALIGNED_POOLED, SSD_ALIGNED, SSD_UNALIGNED, EFFNET, ERROR_LEVEL):
            raw, cpu, wall = maps.get(name, (np.zeros(shape, np.float32), *alignment_cost))
            heat = normalized(raw)
            f1, mcc = pixel_quality(heat >= PAPER_THRESHOLD, truth, None)
            ious = score_masks(lambda t, heat=heat: heat >= t, truth, None)
            self.runs[name].pairs.append(PairScores(kind, ious, f1, mcc, None, float(raw.max()), cpu, wall))


def _ssd(aligned: AlignedPair) -> np.ndarray:
    return np.where(aligned.comparable, ssd_map(aligned.query, aligned.original), 0.0).astype(np.float32)


def _resized_like(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _timed(make: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
    clock = Clock.now()
    values = make()
    return (values, *clock.since())


# --- summary -----------------------------------------------------------------------------------------


def summarize(run: MethodRun, calibrated: float) -> dict:
    """The table's figures for one method."""
    by_kind = {kind: [p for p in run.pairs if p.kind == kind] for kind in PAIR_KINDS}
    reported = calibrated if run.threshold is None else run.threshold
    at_reported = _sweep_index(reported)
    at_paper = _sweep_index(PAPER_THRESHOLD)
    manipulated = [p for kind in MANIPULATED_KINDS for p in by_kind[kind]]
    summary: dict = {"threshold": reported, "pairs": {kind: len(pairs) for kind, pairs in by_kind.items()}}
    for kind, pairs in by_kind.items():
        if _has_verdicts(run):
            summary[f"accuracy {kind}"] = _mean(p.verdict == EXPECTED[kind] for p in pairs)
        summary[f"iou {kind}"] = _mean(p.ious[at_reported] for p in pairs)
        summary[f"iou {kind} @0.35"] = _mean(p.ious[at_paper] for p in pairs)
    if not _has_verdicts(run) and manipulated:
        best = int(np.argmax([np.mean([p.ious[i] for p in manipulated]) for i in range(len(SWEEP))]))
        summary["best threshold (test)"] = SWEEP[best]
        for kind in MANIPULATED_KINDS:
            summary[f"iou {kind} @best"] = _mean(p.ious[best] for p in by_kind[kind])
    summary["f1"] = _mean(p.f1 for p in manipulated)
    summary["mcc"] = _mean(p.mcc for p in manipulated)
    ranked = [p for kind in ("benign", *MANIPULATED_KINDS) for p in by_kind[kind]]
    labels = np.array([p.kind != "benign" for p in ranked])
    summary["ap"] = (
        metrics.binary_average_precision(labels, np.array([p.manipulated_score for p in ranked]))
        if labels.any() and not labels.all()
        else float("nan")
    )
    summary["cpu ms"] = 1000 * _mean(p.cpu_seconds for p in run.pairs)
    summary["wall ms"] = 1000 * _mean(p.wall_seconds for p in run.pairs)
    return summary


def survival_of_pairs(part: PhotoPart, pairs: Sequence[Pair], seed: int) -> dict[str, EditSurvival]:
    """The oracle's survival of every Manip+Benign pair of a set generated with `seed`."""
    return {
        pair.pair_id: pair_survival(pair, index, part.originals, part.held_out, part.stamps, seed)
        for index, pair in enumerate(pairs)
    }


def by_survival(
    pairs: Sequence[Pair], scores: Sequence[PairScores], survival: dict[str, EditSurvival], calibrated: float
) -> list[dict]:
    """imgprov's Manip+Benign accuracy and IoU in each SURVIVAL_BINS group of the edit's ratio
    (`scores` in the order of `pairs`)."""
    at_reported = _sweep_index(calibrated)
    ratios = [
        (survival[p.pair_id].ratio, s) for p, s in zip(pairs, scores, strict=True) if p.pair_id in survival
    ]
    groups = []
    for low, high in itertools.pairwise(SURVIVAL_BINS):
        inside = [s for ratio, s in ratios if low <= ratio < high]
        groups.append(
            {
                "low": low,
                "high": high,
                "pairs": len(inside),
                "accuracy": _mean(s.verdict == EXPECTED["manip+benign"] for s in inside),
                "iou": _mean(s.ious[at_reported] for s in inside),
            }
        )
    return groups


def _mean(values) -> float:
    listed = [float(value) for value in values]
    return float(np.mean(listed)) if listed else float("nan")


def _has_verdicts(run: MethodRun) -> bool:
    return bool(run.pairs) and run.pairs[0].verdict is not None


def _sweep_index(threshold: float) -> int:
    return int(np.argmin(np.abs(np.array(SWEEP) - threshold)))


def confusion(run: MethodRun) -> list[list[int]]:
    """Rows: sets in PAIR_KINDS order; columns: answered benign, manipulated, distinct."""
    answers = ("benign", "manipulated", "distinct")
    return [
        [sum(1 for p in run.pairs if p.kind == kind and p.verdict == answer) for answer in answers]
        for kind in PAIR_KINDS
    ]


# --- the evaluation-only family ----------------------------------------------------------------------


FAMILIES = ("training", "eval")
FAMILY_TITLES = {
    "training": "training family (benchmarks/transforms.py)",
    "eval": "evaluation-only family (benchmarks/transforms_eval.py)",
}


def eval_pair_sets(part: PhotoPart, count: int, seed: int, folder: Path) -> dict[str, list[Pair]]:
    """`count` pairs of each of PAIR_KINDS of the evaluation-only family, generated once and loaded
    from folder after."""
    key = _fingerprint(
        sorted(part.originals),
        sorted(part.held_out),
        [p.name for p in part.stamps],
        count,
        seed,
        EVAL_GENERATOR_VERSION,
    )
    sets = {}
    for kind in PAIR_KINDS:
        out = folder / kind.replace("+", "-")
        if (out / "pairs.json").is_file() and (out / "key").read_text() == key:
            sets[kind] = load_pairs(out)
            continue
        pairs = generate_eval_pairs(part.originals, part.held_out, part.stamps, kind, count, seed, out)
        save_pairs(pairs, out)
        (out / "key").write_text(key)
        sets[kind] = pairs
    return sets


def false_alarms_per_transform(pairs: Sequence[Pair], scores: Sequence[PairScores]) -> dict[str, dict]:
    """{transform: {"pairs", "false_alarms", "rate"}} over the Benign pairs (`scores` in the order of
    `pairs`): the share of the benign copies with that transform present answered anything but
    benign."""
    table: dict[str, dict] = {}
    for pair, score in zip(pairs, scores, strict=True):
        if pair.kind != "benign":
            continue
        for name in transforms_present(pair.ops):
            row = table.setdefault(name, {"pairs": 0, "false_alarms": 0})
            row["pairs"] += 1
            row["false_alarms"] += int(score.verdict != EXPECTED["benign"])
    for row in table.values():
        row["rate"] = row["false_alarms"] / row["pairs"]
    return dict(sorted(table.items()))


def pair_verdicts(pairs: Sequence[Pair], scores: Sequence[PairScores]) -> list[dict]:
    """One record per pair (id, set, verdict, P(manipulated), IoU at the calibrated threshold is
    not kept here; the transforms present), for diagnosing a false alarm."""
    return [
        {
            "pair": pair.pair_id,
            "set": pair.kind,
            "verdict": score.verdict,
            "p_manipulated": round(score.manipulated_score, 4),
            "transforms": list(transforms_present(pair.ops)),
        }
        for pair, score in zip(pairs, scores, strict=True)
    ]


# --- speed at 1 megapixel ----------------------------------------------------------------------------


def one_megapixel(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    factor = float(np.sqrt(ONE_MEGAPIXEL / (height * width)))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, size, interpolation=interpolation)


def time_one_megapixel(pairs: Sequence[Pair], conf: CompareConf, calibration: Calibration) -> dict:
    """CPU and wall seconds of compare_images on pairs resized to 1 MP: extracting RootSIFT itself,
    and given the RootSIFT search extracted (its default preset, extraction not timed)."""
    search_features = local_features()
    timings: dict[str, list[float]] = {}
    steps: dict[str, list[float]] = {}
    load = [os.getloadavg()[0]]
    for pair in pairs:
        query = one_megapixel(load_rgb(pair.query_path))
        original = one_megapixel(load_rgb(pair.original_path))
        clock = Clock.now()
        comparison = compare_images(query, original, conf, calibration=calibration)
        cpu, wall = clock.since()
        timings.setdefault("cpu", []).append(cpu)
        timings.setdefault("wall", []).append(wall)
        for step, seconds in comparison.timings.items():
            steps.setdefault(step, []).append(seconds)
        features = (extract_rootsift(query, search_features), extract_rootsift(original, search_features))
        clock = Clock.now()
        compare_images(
            query,
            original,
            conf,
            calibration=calibration,
            query_features=features[0],
            original_features=features[1],
        )
        cpu, wall = clock.since()
        timings.setdefault("cpu with search features", []).append(cpu)
        timings.setdefault("wall with search features", []).append(wall)
        load.append(os.getloadavg()[0])
    return {
        "pairs": len(pairs),
        "sets": sorted({pair.kind for pair in pairs}),
        "ms": {name: _distribution_ms(values) for name, values in timings.items()},
        "steps_wall_ms": {
            step: 1000 * float(np.mean(values)) for step, values in steps.items() if step != "total"
        },
        "load_1min": {"min": min(load), "max": max(load)},
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def _distribution_ms(seconds: Sequence[float]) -> dict[str, float]:
    summary = metrics.summarize(list(seconds))
    return {
        "mean": 1000 * summary.mean,
        "p50": 1000 * summary.p50,
        "p95": 1000 * summary.p95,
        "max": 1000 * summary.max,
    }


# --- report ------------------------------------------------------------------------------------------


def markdown(
    context: dict,
    summaries: dict[str, dict],
    matrix: list[list[int]],
    speed: dict,
    survival: list[dict],
    families: dict[str, dict],
    false_alarms: dict[str, dict[str, dict]],
) -> str:
    lines = [
        "```sh",
        "make corpus   # fetches and verifies the real photos (once)",
        context["calibrate_command"],
        context["command"],
        "```",
        "",
        f"- date: {context['date']}; commit: `{context['commit']}`",
        f"- machine: {context['machine']}; load average (1 min) during the run: {context['load']}",
        f"- photos: {context['photos']}; test part: {context['test_originals']} originals, "
        f"{context['test_held_out']} held-out photos (scenes disjoint from the calibration's)",
        f"- pairs per set: {context['pairs_per_set']}, seed {context['seed']}; preset `{context['preset']}`; "
        f"calibrated threshold {context['threshold']:.2f} (paper 004: 0.35); "
        f"whole run {context['wall_seconds']} s",
        "",
        "First table: the training family, baselines included. Accuracy: the 3-way verdict. IoU: paper",
        "004's mean IoU(S(U), T) (S(U) = mask, all 0 or all 1 for a manipulated, benign or distinct",
        "verdict); methods without a verdict use S(U) = U. F1 / MCC: per",
        "pair, averaged over Manip and Manip+Benign. AP: benign vs manipulated ranking. Baselines'",
        "heatmaps are normalized by their maximum and thresholded at 0.35 (their best test-set threshold",
        "is in the second table). CPU ms: process CPU time (all threads) per pair, wall ms: elapsed time;",
        "both include F_A (the baselines that use it include its cost) on the pairs' own sizes.",
        "",
        _main_table(summaries),
        "",
        *_families_lines(families),
        "",
        *_false_alarm_lines(false_alarms),
        "",
        "### IoU of every set (S(U)), and baselines at their best test-set threshold",
        "",
        _threshold_table(summaries),
        "",
        "### imgprov compare: verdicts per set (training family)",
        "",
        markdown_table(
            ["set", "answered benign", "answered manipulated", "answered distinct"],
            [[SET_NAMES[kind], *map(str, counts)] for kind, counts in zip(PAIR_KINDS, matrix, strict=True)],
        ),
        "",
        *_survival_lines(survival),
        "",
        *_speed_lines(speed),
    ]
    return "\n".join(lines)


def _families_lines(family_summaries: dict[str, dict]) -> list[str]:
    """imgprov's verdict accuracy and IoU per set, one column per family."""
    figures = [
        *((f"accuracy {SET_NAMES[kind]}", f"accuracy {kind}") for kind in PAIR_KINDS),
        ("IoU Manip", "iou manip"),
        ("IoU Manip+Benign", "iou manip+benign"),
        ("IoU Manip @0.35", "iou manip @0.35"),
        ("IoU Manip+Benign @0.35", "iou manip+benign @0.35"),
        ("IoU Benign", "iou benign"),
        ("IoU Distinct", "iou distinct"),
        ("pixel F1", "f1"),
        ("AP benign/manip", "ap"),
    ]
    families = list(family_summaries)
    rows = [[title, *(_cell(family_summaries[f].get(key)) for f in families)] for title, key in figures]
    rows.append(["pairs per set", *(str(family_summaries[f]["pairs"]["benign"]) for f in families)])
    return [
        "### imgprov compare on both benign-transform families",
        "",
        "The calibration is fitted on the training family's generator only; the evaluation-only family",
        "(other resamplers, expanded rotations with any fill, pads of any colour and width, clipping tone",
        "curves, sharpening, colour and chroma changes, screenshot framing, a re-photographed screen,",
        "social-media resize + JPEG chains) is never seen by it. Same test photos, same edits.",
        "",
        markdown_table(["figure", *(FAMILY_TITLES[f] for f in families)], rows),
    ]


def _false_alarm_lines(tables: dict[str, dict[str, dict]]) -> list[str]:
    """Per-transform false-alarm rates of the Benign pairs, one column group per family."""
    families = list(tables)
    names = sorted({name for table in tables.values() for name in table})
    rows = []
    for name in names:
        row = [name]
        for family in families:
            entry = tables[family].get(name)
            row += ["-", "-"] if entry is None else [str(entry["pairs"]), f"{entry['rate']:.2f}"]
        rows.append(row)
    header = ["transform present"]
    for family in families:
        header += [f"{family}: benign pairs", f"{family}: false-alarm rate"]
    return [
        "### Benign copies: false-alarm rate per transform present",
        "",
        "Share of the Benign pairs with the transform among their operations that were answered",
        "manipulated or distinct (a copy has several transforms, so it counts in several rows).",
        "",
        markdown_table(header, rows),
    ]


def _survival_lines(groups: list[dict]) -> list[str]:
    def span(group: dict) -> str:
        if math.isinf(group["high"]):
            return f">= {group['low']:g}"
        return f"{group['low']:g} to {group['high']:g}"

    rows = [[span(g), str(g["pairs"]), _cell(g["accuracy"]), _cell(g["iou"])] for g in groups]
    return [
        "### Manip+Benign by how much of the edit is left (oracle, benchmarks/edit_survival.py)",
        "",
        "Each pair is made again with the same benign transform applied to the unedited original. Ratio:",
        "mean |query - that twin| over mean |twin - original| inside the edit's mask, i.e. what the edit",
        "still changes over what the benign transform changed where the edit is (grey levels).",
        "",
        markdown_table(["edit / benign change", "pairs", "accuracy", "IoU"], rows),
    ]


def _main_table(summaries: dict[str, dict]) -> str:
    header = [
        "method",
        *(f"acc {SET_NAMES[kind]}" for kind in PAIR_KINDS),
        "IoU Manip",
        "IoU Manip+Benign",
        "IoU Manip @0.35",
        "IoU Manip+Benign @0.35",
        "pixel F1",
        "MCC",
        "AP benign/manip",
        "CPU ms / pair",
        "wall ms / pair",
    ]
    rows = [
        [
            name,
            *(_cell(s.get(f"accuracy {kind}")) for kind in PAIR_KINDS),
            _cell(s["iou manip"]),
            _cell(s["iou manip+benign"]),
            _cell(s["iou manip @0.35"]),
            _cell(s["iou manip+benign @0.35"]),
            _cell(s["f1"]),
            _cell(s["mcc"]),
            _cell(s["ap"]),
            f"{s['cpu ms']:.0f}",
            f"{s['wall ms']:.0f}",
        ]
        for name, s in summaries.items()
    ]
    return markdown_table(header, rows)


def _threshold_table(summaries: dict[str, dict]) -> str:
    header = [
        "method",
        "threshold",
        *(f"IoU {SET_NAMES[k]}" for k in PAIR_KINDS),
        "best t",
        "IoU Manip @best",
        "IoU Manip+Benign @best",
    ]
    rows = [
        [
            name,
            f"{s['threshold']:.2f}",
            *(_cell(s[f"iou {kind}"]) for kind in PAIR_KINDS),
            _cell(s.get("best threshold (test)")),
            _cell(s.get("iou manip @best")),
            _cell(s.get("iou manip+benign @best")),
        ]
        for name, s in summaries.items()
    ]
    return markdown_table(header, rows)


def _speed_lines(speed: dict) -> list[str]:
    rows = [
        [name, *(f"{values[key]:.0f}" for key in ("mean", "p50", "p95", "max"))]
        for name, values in speed["ms"].items()
    ]
    return [
        "### Speed at 1 megapixel",
        "",
        f"compare_images on {speed['pairs']} pairs ({', '.join(speed['sets'])}) whose query and original",
        "were both resized to about 1 megapixel, one pair at a time in one process on "
        f"{speed['cores']} cores (load average, 1 min, between {speed['load_1min']['min']:.1f} and "
        f"{speed['load_1min']['max']:.1f}).",
        'CPU: process CPU time of all threads; wall: elapsed time. "with search features": the RootSIFT',
        "features search already extracted (default preset) are passed in, as `search --explain` does.",
        "",
        markdown_table(["ms per pair", "mean", "median", "p95", "max"], rows),
        "",
        "Mean wall time per step (features extracted by compare): "
        + ", ".join(f"{step} {ms:.0f} ms" for step, ms in speed["steps_wall_ms"].items())
        + ".",
    ]


def _json_safe(value):
    """value with every NaN replaced by None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if np.isnan(value) else f"{value:.3f}"
    return str(value)


# --- main --------------------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--pairs", type=int, default=100, help="pairs per set")
    parser.add_argument("--speed-pairs", type=int, default=10, help="pairs per set timed at 1 megapixel")
    parser.add_argument("--seed", type=int, default=0, help="photo split seed (as calibrate_compare's)")
    parser.add_argument("--data", type=Path, default=DATA / "corpus")
    parser.add_argument("--photo-dir", type=Path, help="use this folder's photos instead of the corpus")
    parser.add_argument("--work", type=Path, default=DATA / "compare")
    parser.add_argument("--preset", default="rootsift-dis-mlp-512")
    parser.add_argument("--calibration", type=Path, help="a calibration JSON instead of the packaged one")
    parser.add_argument("--print-only", action="store_true", help="print the section, write nothing")
    parser.add_argument(
        "--verdicts-only",
        type=Path,
        metavar="JSON",
        help="score imgprov only (no baselines, survival or speed) on the sets of --kinds of both "
        "families, write its figures and per-pair verdicts to JSON and nothing else (e.g. to measure "
        "another commit's imgprov on the same pairs)",
    )
    parser.add_argument("--kinds", default=",".join(PAIR_KINDS), help="with --verdicts-only: sets to run")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class FamilyResult:
    """imgprov's scores on one family: its pairs in run order, their scores and the summary."""

    pairs: list[Pair]
    scores: list[PairScores]
    summary: dict
    false_alarms: dict[str, dict]


def run_family(
    pairs: list[Pair], conf: CompareConf, calibration: Calibration, runs: dict[str, MethodRun], log
) -> FamilyResult:
    """Score `pairs` into `runs` (baselines only when runs holds them) and summarize imgprov."""
    bench = Bench(conf, calibration, runs, baselines=SSD_ALIGNED in runs)
    for number, pair in enumerate(pairs, start=1):
        bench.run_pair(pair)
        if number % 50 == 0:
            log(f"{number} pairs")
    scores = runs[IMGPROV].pairs
    return FamilyResult(
        pairs,
        scores,
        summarize(runs[IMGPROV], calibration.threshold),
        false_alarms_per_transform(pairs, scores),
    )


def method_runs(names: Sequence[str]) -> dict[str, MethodRun]:
    return {name: MethodRun(name, None if name.startswith("imgprov") else PAPER_THRESHOLD) for name in names}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    conf = compare_preset(args.preset)
    calibration = (
        packaged_calibration()
        if args.calibration is None
        else Calibration.from_json(json.loads(args.calibration.read_text()))
    )
    photos, stamps, source = corpus_photos(args.data, args.photo_dir)
    part = split_photos(photos, stamps, args.seed, source)["test"]
    sets = pair_sets(part, args.pairs, args.seed + 1, args.work / f"test-seed{args.seed}-n{args.pairs}")
    eval_sets = eval_pair_sets(
        part, args.pairs, args.seed + 1, args.work / f"eval-seed{args.seed}-n{args.pairs}"
    )
    if args.verdicts_only is not None:
        return verdicts_only(args, sets, eval_sets, conf, calibration, log)
    pairs = [pair for kind in PAIR_KINDS for pair in sets[kind]]
    eval_pairs = [pair for kind in PAIR_KINDS for pair in eval_sets[kind]]
    runs = method_runs(METHODS)
    load = [os.getloadavg()[0]]
    log(f"{len(pairs)} test pairs of each family from {source}")
    training = run_family(pairs, conf, calibration, runs, log)
    load.append(os.getloadavg()[0])
    evaluation = run_family(eval_pairs, conf, calibration, method_runs((IMGPROV, IMGPROV_UNDECIDED)), log)
    load.append(os.getloadavg()[0])
    summaries = {name: summarize(run, calibration.threshold) for name, run in runs.items()}
    survival = survival_of_pairs(part, sets["manip+benign"], args.seed + 1)
    survival_groups = by_survival(pairs, runs[IMGPROV].pairs, survival, calibration.threshold)
    timed = [pair for kind in PAIR_KINDS for pair in sets[kind][: args.speed_pairs]]
    speed = time_one_megapixel(timed, conf, calibration)
    context = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine_description(),
        "load": f"{min(load):.1f} to {max(load):.1f}",
        "command": "python -m benchmarks.bench_compare "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "calibrate_command": calibration.provenance.get("command", "python -m benchmarks.calibrate_compare"),
        "photos": source,
        "test_originals": len(part.originals),
        "test_held_out": len(part.held_out),
        "pairs_per_set": args.pairs,
        "seed": args.seed,
        "preset": conf.name,
        "threshold": calibration.threshold,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    families = {"training": training.summary, "eval": evaluation.summary}
    false_alarms = {"training": training.false_alarms, "eval": evaluation.false_alarms}
    text = markdown(
        context, summaries, confusion(runs[IMGPROV]), speed, survival_groups, families, false_alarms
    )
    figures = {
        "context": context,
        "summaries": summaries,
        "families": families,
        "benign_false_alarms_per_transform": false_alarms,
        "verdicts_per_set": dict(zip(PAIR_KINDS, confusion(runs[IMGPROV]), strict=True)),
        "manip+benign by edit survival": survival_groups,
        "speed_1mp": speed,
    }
    print(text)
    _write_verdicts(args.work / "verdicts-latest.json", {"training": training, "eval": evaluation})
    if not args.print_only:
        print(f"wrote {write_section('compare', text, _json_safe(figures))}")
    return 0


def verdicts_only(args, sets, eval_sets, conf, calibration, log) -> int:
    """imgprov alone on the sets of --kinds of both families; figures and verdicts to --verdicts-only."""
    kinds = [kind for kind in args.kinds.split(",") if kind]
    results = {}
    for family, chosen in (("training", sets), ("eval", eval_sets)):
        pairs = [pair for kind in kinds for pair in chosen[kind]]
        log(f"{family}: {len(pairs)} pairs")
        results[family] = run_family(pairs, conf, calibration, method_runs((IMGPROV, IMGPROV_UNDECIDED)), log)
    _write_verdicts(args.verdicts_only, results)
    for family, result in results.items():
        figures = {k: v for k, v in result.summary.items() if k.startswith(("accuracy", "iou manip"))}
        print(family, json.dumps(_json_safe(figures)))
        print(
            family,
            "false alarms",
            {k: f"{v['false_alarms']}/{v['pairs']}" for k, v in result.false_alarms.items()},
        )
    return 0


def _write_verdicts(path: Path, results: dict[str, FamilyResult]) -> None:
    document = {
        family: {
            "summary": _json_safe(result.summary),
            "false_alarms": result.false_alarms,
            "pairs": pair_verdicts(result.pairs, result.scores),
        }
        for family, result in results.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
