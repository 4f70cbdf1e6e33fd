"""Hand-computed cases for benchmarks.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.metrics import (
    ConfusionCounts,
    RetrievalCase,
    accuracy_criterion,
    answered_no_match,
    average_precision,
    binarize,
    binary_average_precision,
    calibrate_threshold,
    confusion_at_threshold,
    confusion_counts,
    decision_mask,
    donor_recall_at_k,
    evaluate_retrieval,
    f1_criterion,
    heatmap_iou,
    hits_at_k,
    instance_recall_at_k,
    mask_iou,
    mean_average_precision,
    mean_iou,
    no_match_scores,
    pixel_f1,
    pixel_mcc,
    pixel_scores,
    recall_at_precision_criterion,
    soft_iou,
    summarize,
    threshold_sweep,
    total_recall_at_k,
    worst_case_hits,
)


def case(ids, scores=None, relevant=(), donors=(), related=()) -> RetrievalCase:
    return RetrievalCase(tuple(ids), scores, frozenset(relevant), frozenset(donors), frozenset(related))


# --- retrieval -------------------------------------------------------------------------------------


def test_tied_relevant_item_is_ranked_after_tied_non_relevant_ones():
    tied = case(["b", "a", "c"], [0.9, 0.9, 0.5], relevant={"b"})
    assert worst_case_hits(tied).tolist() == [False, True, False]
    assert hits_at_k(tied, 1) == 0
    assert hits_at_k(tied, 2) == 1
    assert average_precision(tied) == pytest.approx(0.5)


def test_all_items_tied_puts_every_relevant_item_last():
    tied = case(["r1", "x", "r2", "y"], [1.0, 1.0, 1.0, 1.0], relevant={"r1", "r2"})
    assert worst_case_hits(tied).tolist() == [False, False, True, True]
    assert average_precision(tied) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_scores_order_the_results_whatever_the_input_order():
    shuffled = case(["x", "a", "y"], [0.1, 0.9, 0.5], relevant={"a"})
    assert worst_case_hits(shuffled).tolist() == [True, False, False]
    assert average_precision(shuffled) == 1.0


def test_empty_result_list_is_a_miss():
    empty = case([], [], relevant={"a"})
    assert hits_at_k(empty, 100) == 0
    assert average_precision(empty) == 0.0
    assert instance_recall_at_k([empty], (1, 10)) == {1: 0.0, 10: 0.0}


def test_all_results_relevant():
    everything = case(["a", "b", "c"], [3.0, 2.0, 1.0], relevant={"a", "b", "c"})
    assert average_precision(everything) == 1.0
    assert total_recall_at_k([everything], 1) == pytest.approx(1 / 3)
    assert total_recall_at_k([everything], 10) == 1.0


def test_no_relevant_item_returned():
    misses = case(["x", "y"], [0.9, 0.8], relevant={"a"})
    assert average_precision(misses) == 0.0
    assert instance_recall_at_k([misses], (1, 100)) == {1: 0.0, 100: 0.0}


def test_related_ids_are_removed_not_counted_as_false_positives():
    with_related = case(["r", "x", "a"], [0.9, 0.8, 0.7], relevant={"a"}, related={"r"})
    without = case(["r", "x", "a"], [0.9, 0.8, 0.7], relevant={"a"})
    assert average_precision(with_related) == pytest.approx(1 / 2)
    assert average_precision(without) == pytest.approx(1 / 3)
    assert hits_at_k(with_related, 2) == 1
    assert hits_at_k(without, 2) == 0


def test_average_precision_hand_computed_with_a_missed_relevant_image():
    ranking = case(["a", "x", "b", "y", "c"], relevant={"a", "b", "c", "d"})
    assert average_precision(ranking) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)


def test_mean_average_precision_and_ir_skip_queries_without_relevant_images():
    hit = case(["a"], [1.0], relevant={"a"})
    second = case(["x", "b"], [0.9, 0.8], relevant={"b"})
    distinct = case(["z"], [0.5])
    assert mean_average_precision([hit, second, distinct]) == pytest.approx(0.75)
    assert instance_recall_at_k([hit, second, distinct], (1, 2)) == {1: 0.5, 2: 1.0}


def test_donor_and_total_recall():
    composite = case(["h", "d1", "x", "d2"], relevant={"h", "d1", "d2"}, donors={"d1", "d2"})
    assert donor_recall_at_k([composite], 2) == pytest.approx(1 / 2)
    assert donor_recall_at_k([composite], 4) == 1.0
    assert total_recall_at_k([composite], 2) == pytest.approx(2 / 3)


def test_donor_recall_breaks_ties_against_donors():
    tied = case(["h", "d1", "x"], [1.0, 0.5, 0.5], relevant={"h", "d1"}, donors={"d1"})
    assert donor_recall_at_k([tied], 2) == 0.0
    assert total_recall_at_k([tied], 2) == pytest.approx(1 / 2)


def test_evaluate_retrieval_report():
    cases = [
        case(["h", "d"], [0.9, 0.8], relevant={"h", "d"}, donors={"d"}),
        case(["x", "a"], [0.9, 0.8], relevant={"a"}),
        case([], []),
    ]
    report = evaluate_retrieval(cases, ks=(1, 2))
    assert report.ir_at_k == {1: 0.5, 2: 1.0}
    assert report.total_recall_at_k == {1: pytest.approx(0.25), 2: 1.0}
    assert report.donor_recall_at_k == {1: 0.0, 2: 1.0}
    assert report.mean_average_precision == pytest.approx((1.0 + 0.5) / 2)
    assert (report.n_scored, report.n_with_donors, report.n_without_relevant) == (2, 1, 1)


def test_retrieval_case_rejects_inconsistent_input():
    with pytest.raises(ValueError):
        case(["a", "a"], [1.0, 0.5], relevant={"a"})
    with pytest.raises(ValueError):
        case(["a"], [1.0, 0.5], relevant={"a"})
    with pytest.raises(ValueError):
        case(["a"], relevant={"a"}, donors={"d"})
    with pytest.raises(ValueError):
        case(["a"], relevant={"a"}, related={"a"})
    with pytest.raises(ValueError):
        average_precision(case(["a"]))


# --- decisions -------------------------------------------------------------------------------------


def test_binary_average_precision_hand_computed():
    labels = np.array([True, False, True, False])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert binary_average_precision(labels, scores) == pytest.approx((1 + 2 / 3) / 2)


def test_binary_average_precision_ties_are_worst_case():
    assert binary_average_precision(np.array([True, False]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert binary_average_precision(np.array([True, False]), np.array([0.6, 0.5])) == 1.0
    with pytest.raises(ValueError):
        binary_average_precision(np.array([False, False]), np.array([0.6, 0.5]))


def test_precision_recall_f1_at_threshold():
    counts = confusion_at_threshold(np.array([1, 1, 0, 0]), np.array([0.9, 0.6, 0.6, 0.1]), 0.6)
    assert counts == ConfusionCounts(tp=2, fp=1, fn=0, tn=1)
    assert counts.precision == pytest.approx(2 / 3)
    assert counts.recall == 1.0
    assert counts.f1 == pytest.approx(0.8)


def test_zero_denominators_score_one_only_when_exactly_right():
    nothing = ConfusionCounts(tp=0, fp=0, fn=0, tn=5)
    assert (nothing.precision, nothing.recall, nothing.f1, nothing.iou, nothing.mcc) == (
        1.0,
        1.0,
        1.0,
        1.0,
        0.0,
    )
    missed = ConfusionCounts(tp=0, fp=0, fn=3, tn=5)
    assert (missed.precision, missed.recall, missed.f1, missed.mcc) == (0.0, 0.0, 0.0, 0.0)
    false_alarm = ConfusionCounts(tp=0, fp=2, fn=0, tn=5)
    assert (false_alarm.precision, false_alarm.recall, false_alarm.f1) == (0.0, 0.0, 0.0)


def test_no_match_precision_and_recall():
    scores = no_match_scores(np.array([True, True, False, False]), np.array([True, False, True, False]))
    assert (scores.precision, scores.recall) == (0.5, 0.5)
    assert (scores.correct, scores.answered, scores.distinct) == (1, 2, 2)
    silent = no_match_scores(np.array([False, False]), np.array([True, False]))
    assert (silent.precision, silent.recall) == (0.0, 0.0)


def test_answer_with_only_related_ids_counts_as_no_match():
    assert answered_no_match(case([], []))
    assert answered_no_match(case(["r"], [0.9], related={"r"}))
    assert not answered_no_match(case(["r", "x"], [0.9, 0.1], related={"r"}))


def test_calibration_picks_the_best_threshold():
    labels = np.array([True, True, False, False])
    scores = np.array([0.9, 0.7, 0.6, 0.1])
    best = calibrate_threshold(labels, scores, f1_criterion)
    assert (best.threshold, best.value) == (0.7, 1.0)
    assert calibrate_threshold(labels, scores, accuracy_criterion).threshold == 0.7
    strict = calibrate_threshold(labels, np.array([0.9, 0.5, 0.6, 0.1]), recall_at_precision_criterion(0.99))
    assert (strict.threshold, strict.value) == (0.9, 0.5)


def test_calibration_without_positives_predicts_nothing():
    best = calibrate_threshold(np.array([False, False]), np.array([0.3, 0.2]))
    assert best.threshold == math.inf
    assert best.counts == ConfusionCounts(0, 0, 0, 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=1, max_size=12))
def test_calibration_matches_brute_force(pairs):
    labels = np.array([label for label, _ in pairs])
    scores = np.array([score / 5 for _, score in pairs])
    best = calibrate_threshold(labels, scores, f1_criterion)
    candidates = [*np.unique(scores), math.inf]
    brute = max(confusion_at_threshold(labels, scores, t).f1 for t in candidates)
    assert best.value == pytest.approx(brute)
    assert confusion_at_threshold(labels, scores, best.threshold) == best.counts


# --- localization ----------------------------------------------------------------------------------

PRED = np.array([[True, True], [False, False]])
TRUTH = np.array([[True, False], [True, False]])


def test_iou_f1_mcc_on_tiny_masks():
    assert confusion_counts(PRED, TRUTH) == ConfusionCounts(tp=1, fp=1, fn=1, tn=1)
    assert mask_iou(PRED, TRUTH) == pytest.approx(1 / 3)
    assert pixel_f1(PRED, TRUTH) == pytest.approx(0.5)
    assert pixel_mcc(PRED, TRUTH) == pytest.approx(0.0)
    assert pixel_mcc(np.array([[1, 1, 0]]), np.array([[1, 0, 0]])) == pytest.approx(0.5)
    assert pixel_f1(np.array([[1, 1, 0]]), np.array([[1, 0, 0]])) == pytest.approx(2 / 3)


def test_degenerate_masks():
    empty = np.zeros((3, 3), dtype=bool)
    full = np.ones((3, 3), dtype=bool)
    spot = empty.copy()
    spot[1, 1] = True
    assert (mask_iou(empty, empty), pixel_f1(empty, empty), pixel_mcc(empty, empty)) == (1.0, 1.0, 0.0)
    assert (mask_iou(empty, spot), pixel_f1(empty, spot), pixel_mcc(empty, spot)) == (0.0, 0.0, 0.0)
    assert pixel_mcc(full, spot) == 0.0
    assert pixel_mcc(spot, spot) == 1.0
    with pytest.raises(ValueError):
        mask_iou(empty, np.zeros((2, 3), dtype=bool))


def test_decision_mask_is_paper_004s_s_of_u():
    assert decision_mask(PRED, "manipulated").tolist() == PRED.tolist()
    assert not decision_mask(PRED, "benign").any()
    assert decision_mask(PRED, "distinct").all()
    with pytest.raises(ValueError):
        decision_mask(PRED, "maybe")


def test_mean_iou_with_decisions():
    zeros = np.zeros((2, 2), dtype=bool)
    ones = np.ones((2, 2), dtype=bool)
    truths = [TRUTH, zeros, ones]
    predictions = [PRED, PRED, zeros]
    decisions = ["manipulated", "benign", "distinct"]
    assert mean_iou(predictions, truths, decisions) == pytest.approx((1 / 3 + 1 + 1) / 3)
    assert mean_iou(predictions, truths) == pytest.approx((1 / 3 + 0 + 0) / 3)


def test_heatmap_iou_at_default_threshold():
    heatmap = np.array([[0.4, 0.3], [0.35, 0.0]])
    truth = np.array([[True, False], [False, False]])
    assert binarize(heatmap).tolist() == [[True, False], [True, False]]
    assert heatmap_iou([heatmap], [truth]) == pytest.approx(0.5)


def test_threshold_sweep_hand_computed():
    heatmap = np.array([[0.2, 0.5, 0.8, 0.9]])
    truth = np.array([[False, True, True, False]])
    sweep = threshold_sweep([heatmap], [truth], thresholds=(0.5, 0.85))
    assert sweep.iou.tolist() == pytest.approx([2 / 3, 0.0])
    assert sweep.f1.tolist() == pytest.approx([0.8, 0.0])
    assert sweep.best("iou") == (0.5, pytest.approx(2 / 3))


def test_threshold_sweep_matches_per_threshold_scores():
    rng = np.random.default_rng(0)
    heatmaps = [rng.random((6, 7)) for _ in range(4)]
    truths = [rng.random((6, 7)) > 0.6 for _ in range(3)] + [np.zeros((6, 7), dtype=bool)]
    sweep = threshold_sweep(heatmaps, truths)
    for index, threshold in enumerate(sweep.thresholds):
        scores = pixel_scores([binarize(h, threshold) for h in heatmaps], truths)
        assert sweep.iou[index] == pytest.approx(scores.iou)
        assert sweep.f1[index] == pytest.approx(scores.f1)
        assert sweep.mcc[index] == pytest.approx(scores.mcc)
    assert (sweep.n_images, sweep.n_scored) == (4, 3)


def test_pixel_scores_skip_empty_truth_by_default():
    empty = np.zeros((2, 2), dtype=bool)
    scores = pixel_scores([empty, PRED], [empty, TRUTH])
    assert (scores.f1, scores.mcc, scores.n_scored, scores.n_images) == (0.5, 0.0, 1, 2)
    assert scores.iou == pytest.approx((1 + 1 / 3) / 2)
    assert pixel_scores([empty, PRED], [empty, TRUTH], skip_empty_truth=False).f1 == pytest.approx(0.75)


def test_soft_iou():
    assert soft_iou(np.array([[0.5, 0.0]]), np.array([[True, False]])) == pytest.approx(0.5)
    assert soft_iou(np.zeros((2, 2)), np.zeros((2, 2), dtype=bool)) == 1.0


# --- timing ----------------------------------------------------------------------------------------


def test_summarize():
    summary = summarize([4.0, 1.0, 3.0, 2.0])
    assert (summary.count, summary.mean, summary.p50, summary.max, summary.total) == (4, 2.5, 2.5, 4.0, 10.0)
    assert summary.p95 == pytest.approx(3.85)
    nothing = summarize([])
    assert nothing.count == 0 and math.isnan(nothing.mean)
