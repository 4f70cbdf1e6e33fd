"""Evaluation metrics of the provenance benchmarks, as the papers define them (pure numpy).

Retrieval (papers 004/003 section 4.3/4.2, 002, 000 section 4.3):
    IR@k: fraction of queries with at least one relevant image in the top k.
    AP / mAP: per-query average precision over all relevant images (missed ones count as 0).
    total recall@k / donor recall@k (OS2OS, paper 002): per-query share of relevant images / of
    donors found in the top k, averaged over queries that have any.
    Ties in scores are broken in the worst case: an item of interest tied with others is ranked
    after them (as in Meta's isc2021 / sscd AP code). "Related" ids (same scene, not relevant) are
    removed from the ranking, neither hits nor false positives. An empty answer is a miss. Queries
    with no relevant image are left out of these averages (score them with `no_match_scores`).

Decisions: AP of a binary score with worst-case ties; precision, recall and F1 at a threshold;
no-match precision and recall; threshold calibration.

Localization (paper 004 section 4.3, paper 000 Table 5):
    IoU of binary masks with S(U) = U / zeros / ones for manipulated / benign / distinct answers;
    IoU of a heatmap at a threshold (0.35) or over a sweep; per-image pixel F1 and MCC, averaged.

Degenerate cases, one rule everywhere (see `ConfusionCounts`): a ratio whose denominator is zero
is 1.0 when the prediction is exactly right (no false positive and no false negative) and 0.0
otherwise; so an empty prediction of an empty mask has IoU = F1 = precision = recall = 1. MCC is
0.0 when undefined (prediction or truth is constant), as in scikit-learn. Following forgery
localization practice, mean pixel F1/MCC skip images whose ground truth is empty unless asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_KS = (1, 10, 100)
DEFAULT_HEATMAP_THRESHOLD = 0.35
DEFAULT_SWEEP = tuple(float(t) for t in np.round(np.linspace(0.0, 1.0, 21), 2))
DECISIONS = ("manipulated", "benign", "distinct")


# --- counting with the degenerate-case rule --------------------------------------------------------


def _ratio(numerator: np.ndarray, denominator: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise; where the denominator is 0: 1.0 if exact else 0.0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    fallback = np.where(exact, 1.0, 0.0)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, fallback)


def precision_of(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """tp / (tp + fp); 1.0 when nothing was predicted and nothing was there, else 0.0 if undefined."""
    return _ratio(tp, np.add(tp, fp), np.equal(fn, 0))


def recall_of(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """tp / (tp + fn); 1.0 when nothing was there and nothing was predicted, else 0.0 if undefined."""
    return _ratio(tp, np.add(tp, fn), np.equal(fp, 0))


def f1_of(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """2tp / (2tp + fp + fn); 1.0 when all three are 0."""
    return _ratio(np.multiply(tp, 2), np.multiply(tp, 2) + np.add(fp, fn), np.ones_like(tp, dtype=bool))


def iou_of(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """tp / (tp + fp + fn); 1.0 when all three are 0 (both masks empty)."""
    return _ratio(tp, np.add(tp, fp) + np.asarray(fn), np.ones_like(tp, dtype=bool))


def mcc_of(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """Matthews correlation coefficient; 0.0 where undefined (a row or column of the table is 0)."""
    tp, fp, fn, tn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn, tn))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, (tp * tn - fp * fn) / safe, 0.0)


@dataclass(frozen=True)
class ConfusionCounts:
    """Counts of a binary prediction against the truth, with the module's degenerate-case rule."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return float(precision_of(self.tp, self.fp, self.fn))

    @property
    def recall(self) -> float:
        return float(recall_of(self.tp, self.fp, self.fn))

    @property
    def f1(self) -> float:
        return float(f1_of(self.tp, self.fp, self.fn))

    @property
    def iou(self) -> float:
        return float(iou_of(self.tp, self.fp, self.fn))

    @property
    def mcc(self) -> float:
        return float(mcc_of(self.tp, self.fp, self.fn, self.tn))

    @property
    def accuracy(self) -> float:
        total = self.tp + self.fp + self.fn + self.tn
        return (self.tp + self.tn) / total if total else 1.0


def confusion_counts(predicted: np.ndarray, truth: np.ndarray) -> ConfusionCounts:
    """Counts of predicted vs truth, two bool arrays of the same shape (any shape: masks or labels)."""
    predicted, truth = _same_shape_bool(predicted, truth)
    tp = int(np.count_nonzero(predicted & truth))
    fp = int(np.count_nonzero(predicted & ~truth))
    fn = int(np.count_nonzero(~predicted & truth))
    return ConfusionCounts(tp, fp, fn, int(predicted.size) - tp - fp - fn)


def _same_shape_bool(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return a, b


# --- retrieval -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrievalCase:
    """One query's answer and its ground truth.

    ids: (n,) returned collection ids; best first when scores is None, else in any order.
    scores: (n,) similarity, higher is better, or None for a plain ranking (no ties).
    relevant: ids the query is made of (original / host and donors); empty for a distinct query.
    donors: the subset of relevant that are donors (donor recall).
    related: ids of the same scene that are not relevant; removed from the ranking.
    """

    ids: tuple[str, ...]
    scores: tuple[float, ...] | None
    relevant: frozenset[str]
    donors: frozenset[str] = field(default_factory=frozenset)
    related: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        if self.scores is not None:
            object.__setattr__(self, "scores", tuple(float(s) for s in self.scores))
        for name in ("relevant", "donors", "related"):
            object.__setattr__(self, name, frozenset(str(i) for i in getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("a result list names the same id twice")
        if self.scores is not None and len(self.scores) != len(self.ids):
            raise ValueError(f"{len(self.ids)} ids but {len(self.scores)} scores")
        if self.scores is not None and np.isnan(self.scores).any():
            raise ValueError("scores contain NaN")
        if not self.donors <= self.relevant:
            raise ValueError("donors must be a subset of relevant")
        if self.relevant & self.related:
            raise ValueError("an id cannot be both relevant and related")


def worst_case_hits(case: RetrievalCase, targets: Iterable[str] | None = None) -> np.ndarray:
    """(m,) bool: whether each ranked item is a target, related ids removed, ties broken worst case.

    targets defaults to case.relevant. Among items with equal scores, targets come last.
    """
    wanted = case.relevant if targets is None else frozenset(targets)
    kept = [i for i, image_id in enumerate(case.ids) if image_id not in case.related]
    hits = np.array([case.ids[i] in wanted for i in kept], dtype=bool)
    if case.scores is None:
        return hits
    scores = np.array([case.scores[i] for i in kept], dtype=np.float64)
    order = np.lexsort((hits, -scores))
    return hits[order]


def hits_at_k(case: RetrievalCase, k: int, targets: Iterable[str] | None = None) -> int:
    """Number of targets (default: relevant) in the worst-case top k."""
    if k < 1:
        raise ValueError("k must be at least 1")
    return int(np.count_nonzero(worst_case_hits(case, targets)[:k]))


def average_precision(case: RetrievalCase) -> float:
    """AP = mean over relevant images of the precision at the rank where each is found (0 if not).

    Raises ValueError when the query has no relevant image.
    """
    if not case.relevant:
        raise ValueError("average precision is undefined for a query with no relevant image")
    hits = worst_case_hits(case)
    ranks = np.flatnonzero(hits) + 1
    precisions = np.arange(1, len(ranks) + 1) / ranks
    return float(precisions.sum() / len(case.relevant))


def _with_relevant(cases: Sequence[RetrievalCase]) -> list[RetrievalCase]:
    scored = [case for case in cases if case.relevant]
    if not scored:
        raise ValueError("no query has a relevant image")
    return scored


def instance_recall_at_k(cases: Sequence[RetrievalCase], ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
    """IR@k for each k: fraction of queries (with a relevant image) that find one in the top k."""
    scored = _with_relevant(cases)
    return {k: float(np.mean([hits_at_k(case, k) > 0 for case in scored])) for k in ks}


def mean_average_precision(cases: Sequence[RetrievalCase]) -> float:
    """Mean of per-query AP over queries that have a relevant image."""
    return float(np.mean([average_precision(case) for case in _with_relevant(cases)]))


def total_recall_at_k(cases: Sequence[RetrievalCase], k: int) -> float:
    """Mean over queries (with a relevant image) of |relevant in top k| / |relevant|."""
    return float(np.mean([hits_at_k(case, k) / len(case.relevant) for case in _with_relevant(cases)]))


def donor_recall_at_k(cases: Sequence[RetrievalCase], k: int) -> float:
    """Mean over queries with donors of |donors in top k| / |donors| (ties worst case for donors)."""
    with_donors = [case for case in cases if case.donors]
    if not with_donors:
        raise ValueError("no query has a donor")
    return float(np.mean([hits_at_k(case, k, case.donors) / len(case.donors) for case in with_donors]))


@dataclass(frozen=True)
class RetrievalReport:
    """Retrieval scores of a query set; donor_recall_at_k is empty when no query has donors."""

    ir_at_k: dict[int, float]
    total_recall_at_k: dict[int, float]
    donor_recall_at_k: dict[int, float]
    mean_average_precision: float
    n_scored: int
    n_with_donors: int
    n_without_relevant: int


def evaluate_retrieval(cases: Sequence[RetrievalCase], ks: Sequence[int] = DEFAULT_KS) -> RetrievalReport:
    """All retrieval scores at once; queries without a relevant image are only counted."""
    n_scored = sum(1 for case in cases if case.relevant)
    n_with_donors = sum(1 for case in cases if case.donors)
    return RetrievalReport(
        ir_at_k=instance_recall_at_k(cases, ks),
        total_recall_at_k={k: total_recall_at_k(cases, k) for k in ks},
        donor_recall_at_k={k: donor_recall_at_k(cases, k) for k in ks} if n_with_donors else {},
        mean_average_precision=mean_average_precision(cases),
        n_scored=n_scored,
        n_with_donors=n_with_donors,
        n_without_relevant=len(cases) - n_scored,
    )


# --- decisions -------------------------------------------------------------------------------------


def _labels_and_scores(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return labels, scores


def binary_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP of a score for a binary decision (e.g. manipulated vs benign), worst-case ties.

    labels: (n,) bool, True = positive; scores: (n,) float, higher = more positive. Equals
    sum over ranks of (recall step x precision). Raises ValueError when there is no positive.
    """
    labels, scores = _labels_and_scores(labels, scores)
    if not labels.any():
        raise ValueError("average precision is undefined without a positive label")
    ranked = labels[np.lexsort((labels, -scores))]
    ranks = np.flatnonzero(ranked) + 1
    return float(np.sum(np.arange(1, len(ranks) + 1) / ranks) / len(ranks))


def confusion_at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> ConfusionCounts:
    """Counts when predicting positive for score >= threshold; labels, scores: (n,)."""
    labels, scores = _labels_and_scores(labels, scores)
    return confusion_counts(scores >= threshold, labels)


@dataclass(frozen=True)
class NoMatchScores:
    """How well a system says "no match" for queries with nothing relevant in the collection.

    precision = correct "no match" answers / all "no match" answers;
    recall = correct "no match" answers / all distinct queries (degenerate rule as elsewhere).
    """

    precision: float
    recall: float
    correct: int
    answered: int
    distinct: int


def no_match_scores(answered_no_match: np.ndarray, is_distinct: np.ndarray) -> NoMatchScores:
    """answered_no_match, is_distinct: (n,) bool per query."""
    counts = confusion_counts(answered_no_match, is_distinct)
    return NoMatchScores(
        precision=counts.precision,
        recall=counts.recall,
        correct=counts.tp,
        answered=counts.tp + counts.fp,
        distinct=counts.tp + counts.fn,
    )


def answered_no_match(case: RetrievalCase) -> bool:
    """True when the answer is empty once related ids are removed."""
    return all(image_id in case.related for image_id in case.ids)


CountsCriterion = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""Maps arrays tp, fp, fn, tn (one entry per candidate threshold) to the values to maximize."""


def f1_criterion(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    return f1_of(tp, fp, fn)


def accuracy_criterion(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    return (np.asarray(tp) + tn) / (np.asarray(tp) + fp + fn + tn)


def recall_at_precision_criterion(min_precision: float) -> CountsCriterion:
    """Recall where precision >= min_precision, -inf elsewhere (highest recall at that precision)."""

    def criterion(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
        meets = precision_of(tp, fp, fn) >= min_precision
        return np.where(meets, recall_of(tp, fp, fn), -np.inf)

    return criterion


@dataclass(frozen=True)
class Calibration:
    """A threshold picked on a calibration split: predict positive when score >= threshold."""

    threshold: float
    value: float
    counts: ConfusionCounts


def calibrate_threshold(
    labels: np.ndarray, scores: np.ndarray, criterion: CountsCriterion = f1_criterion
) -> Calibration:
    """The threshold maximizing criterion; candidates are every distinct score and +inf (no positive).

    labels: (n,) bool; scores: (n,) float. Among equally good thresholds the highest one is taken
    (fewest positives).
    """
    labels, scores = _labels_and_scores(labels, scores)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_value = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    tp = np.concatenate([[0], np.cumsum(sorted_labels)[last_of_value]])
    predicted = np.concatenate([[0], last_of_value + 1])
    thresholds = np.concatenate([[np.inf], sorted_scores[last_of_value]])
    positives = int(labels.sum())
    fp = predicted - tp
    fn = positives - tp
    tn = len(labels) - positives - fp
    values = np.asarray(criterion(tp, fp, fn, tn), dtype=np.float64)
    best = int(np.argmax(values))
    counts = ConfusionCounts(int(tp[best]), int(fp[best]), int(fn[best]), int(tn[best]))
    return Calibration(float(thresholds[best]), float(values[best]), counts)


# --- localization ----------------------------------------------------------------------------------


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """|P & T| / |P | T| of two (H, W) bool masks; 1.0 when both are empty."""
    return confusion_counts(predicted, truth).iou


def pixel_f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Pixel F1 of two (H, W) bool masks; 1.0 when both are empty, 0.0 when only one is."""
    return confusion_counts(predicted, truth).f1


def pixel_mcc(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Pixel MCC of two (H, W) bool masks; 0.0 when undefined (either mask empty or full)."""
    return confusion_counts(predicted, truth).mcc


def decision_mask(predicted: np.ndarray, decision: str) -> np.ndarray:
    """Paper 004's S(U): the (H, W) bool mask if "manipulated", all False if "benign", all True if
    "distinct"."""
    predicted = np.asarray(predicted, dtype=bool)
    if decision == "manipulated":
        return predicted
    if decision == "benign":
        return np.zeros_like(predicted)
    if decision == "distinct":
        return np.ones_like(predicted)
    raise ValueError(f"unknown decision {decision!r}; expected one of {DECISIONS}")


def mean_iou(
    predicted: Sequence[np.ndarray], truths: Sequence[np.ndarray], decisions: Sequence[str] | None = None
) -> float:
    """Paper 004's IoU: mean over images of IoU(S(U_i), T_i); masks (H_i, W_i) bool.

    decisions: per image "manipulated" / "benign" / "distinct" (S(U) = U when None).
    """
    _check_lengths(predicted, truths)
    if decisions is not None:
        _check_lengths(predicted, decisions)
        predicted = [decision_mask(p, d) for p, d in zip(predicted, decisions, strict=True)]
    return float(np.mean([mask_iou(p, t) for p, t in zip(predicted, truths, strict=True)]))


def _check_lengths(a: Sequence[object], b: Sequence[object]) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} predictions but {len(b)} ground truths / decisions")
    if not a:
        raise ValueError("no images to score")


def binarize(heatmap: np.ndarray, threshold: float = DEFAULT_HEATMAP_THRESHOLD) -> np.ndarray:
    """(H, W) bool: heatmap >= threshold; heatmap (H, W) float, normalized to [0, 1] by the caller."""
    return np.asarray(heatmap, dtype=np.float64) >= threshold


def heatmap_iou(
    heatmaps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    threshold: float = DEFAULT_HEATMAP_THRESHOLD,
    decisions: Sequence[str] | None = None,
) -> float:
    """Mean IoU of heatmaps (H, W) float thresholded at `threshold` (paper 004 uses 0.35)."""
    return mean_iou([binarize(h, threshold) for h in heatmaps], truths, decisions)


def soft_iou(heatmap: np.ndarray, truth: np.ndarray) -> float:
    """IoU without a threshold: sum(min(h, t)) / sum(max(h, t)); heatmap (H, W) in [0, 1], truth
    (H, W) bool; 1.0 when both are all zero."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    truth_values = np.asarray(truth, dtype=np.float64)
    if heatmap.shape != truth_values.shape:
        raise ValueError(f"shapes differ: {heatmap.shape} vs {truth_values.shape}")
    union = np.maximum(heatmap, truth_values).sum()
    return float(np.minimum(heatmap, truth_values).sum() / union) if union > 0 else 1.0


@dataclass(frozen=True)
class PixelScores:
    """Per-image pixel scores averaged: iou over every image, f1 / mcc over the n_scored images
    kept for them (images with empty truth are skipped unless asked)."""

    iou: float
    f1: float
    mcc: float
    n_images: int
    n_scored: int


def pixel_scores(
    predicted: Sequence[np.ndarray], truths: Sequence[np.ndarray], skip_empty_truth: bool = True
) -> PixelScores:
    """Mean per-image IoU, F1 and MCC of (H_i, W_i) bool masks (paper 000 Table 5: per image, averaged).

    F1/MCC are defined for localizing a manipulation, so by default images whose truth is empty
    are left out of their means (f1/mcc are NaN when no image is left).
    """
    _check_lengths(predicted, truths)
    counts = [confusion_counts(p, t) for p, t in zip(predicted, truths, strict=True)]
    kept = [c for c in counts if not skip_empty_truth or c.tp + c.fn > 0]
    return PixelScores(
        iou=float(np.mean([c.iou for c in counts])),
        f1=float(np.mean([c.f1 for c in kept])) if kept else float("nan"),
        mcc=float(np.mean([c.mcc for c in kept])) if kept else float("nan"),
        n_images=len(counts),
        n_scored=len(kept),
    )


@dataclass(frozen=True)
class ThresholdSweep:
    """Mean scores of heatmaps binarized at each threshold (heatmap >= t).

    thresholds, iou, f1, mcc: (T,) float64. iou averages every image; f1 and mcc average the
    n_scored images kept for them (see `pixel_scores`).
    """

    thresholds: np.ndarray
    iou: np.ndarray
    f1: np.ndarray
    mcc: np.ndarray
    n_images: int
    n_scored: int

    def best(self, metric: str) -> tuple[float, float]:
        """(threshold, value) maximizing "iou", "f1" or "mcc" (the lowest such threshold)."""
        values = {"iou": self.iou, "f1": self.f1, "mcc": self.mcc}[metric]
        index = int(np.nanargmax(values))
        return float(self.thresholds[index]), float(values[index])


def threshold_sweep(
    heatmaps: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    thresholds: Sequence[float] = DEFAULT_SWEEP,
    skip_empty_truth: bool = True,
) -> ThresholdSweep:
    """Mean IoU / F1 / MCC at every threshold; heatmaps (H_i, W_i) float, truths (H_i, W_i) bool.

    The best F1/MCC over the sweep is paper 000's "optimal score over the whole dataset".
    """
    _check_lengths(heatmaps, truths)
    grid = np.asarray(thresholds, dtype=np.float64)
    per_image = np.stack([_counts_per_threshold(h, t, grid) for h, t in zip(heatmaps, truths, strict=True)])
    tp, fp, fn, tn = (per_image[:, i, :] for i in range(4))
    kept = (tp[:, 0] + fn[:, 0] > 0) | (not skip_empty_truth)
    f1 = f1_of(tp, fp, fn)[kept].mean(axis=0) if kept.any() else np.full(len(grid), np.nan)
    mcc = mcc_of(tp, fp, fn, tn)[kept].mean(axis=0) if kept.any() else np.full(len(grid), np.nan)
    return ThresholdSweep(
        thresholds=grid,
        iou=iou_of(tp, fp, fn).mean(axis=0),
        f1=f1,
        mcc=mcc,
        n_images=len(heatmaps),
        n_scored=int(kept.sum()),
    )


def _counts_per_threshold(heatmap: np.ndarray, truth: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(4, T) int64 rows tp, fp, fn, tn of heatmap >= t for every t in grid."""
    values = np.asarray(heatmap, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    if values.shape != truth.shape:
        raise ValueError(f"shapes differ: {values.shape} vs {truth.shape}")
    positives = np.sort(values[truth])
    negatives = np.sort(values[~truth])
    tp = len(positives) - np.searchsorted(positives, grid, side="left")
    fp = len(negatives) - np.searchsorted(negatives, grid, side="left")
    return np.stack([tp, fp, len(positives) - tp, len(negatives) - fp])


# --- timing and memory -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Distribution of measurements (seconds, bytes...); statistics are NaN when count is 0."""

    count: int
    mean: float
    p50: float
    p95: float
    max: float
    total: float


def summarize(values: Iterable[float]) -> Summary:
    """Count, mean, median, 95th percentile (linear interpolation), max and total of values."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, 0.0)
    return Summary(
        count=int(array.size),
        mean=float(array.mean()),
        p50=float(np.percentile(array, 50)),
        p95=float(np.percentile(array, 95)),
        max=float(array.max()),
        total=float(array.sum()),
    )
