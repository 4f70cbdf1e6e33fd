"""Fit the calibrated match models of `imgprov search` (src/imgprov/search/calibration/search.json).

    python -m benchmarks.calibrate_search            # training split: seed 1001, size "small"

The training queries come from their own seed, so their photo split, transforms and edits differ
from the benchmark's test queries (seed 0). Every candidate each stage finds for a query is one
sample: label 1 when it is an image the query is made of, 0 otherwise (images of the same scene
that are not the answer are left out). A logistic regression per stage maps the candidate's
features (`imgprov.search.calibration.MATCH_FEATURES`) to P(match), with the classes at their natural
frequencies among a query's candidates, so the probability means what it says for a shortlist; the
reported-match threshold is the probability that maximizes F1 over the training candidates.
The candidates' features are cached beside the training index; `--refit` fits them again without
searching.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks import corpus as corpus_module
from benchmarks import metrics
from benchmarks.methods import ImgprovMethod
from benchmarks.run import DATA, SIZES, git_commit, index_method, prepare
from imgprov import presets
from imgprov.images import load_image
from imgprov.search.calibration import MATCH_FEATURES
from imgprov.search.pipeline import find_candidates

CALIBRATION_FILE = Path(__file__).resolve().parent.parent / "src" / "imgprov" / "calibration" / "search.json"
STAGE_FEATURES = {
    "local": ("log_inliers", "support"),
    "global": ("cosine",),
    "both": MATCH_FEATURES,
}


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Newton's method for L2-regularized logistic regression; returns (bias, *weights).

    features: (N, F) float64; labels: (N,) bool.
    """
    design = np.column_stack([np.ones(len(features)), features])
    sample_weight = np.ones(len(labels))
    theta = np.zeros(design.shape[1])
    penalty = l2 * np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    for _ in range(steps):
        probability = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -60, 60)))
        gradient = design.T @ (sample_weight * (probability - labels)) + penalty @ theta
        curvature = (design * (sample_weight * probability * (1 - probability))[:, None]).T @ design + penalty
        step = np.linalg.solve(curvature + 1e-9 * np.eye(len(theta)), gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta


def collect_samples(method: ImgprovMethod, queries: dict, stages: Sequence[str]) -> dict[str, list]:
    """(features, label) of every candidate of every query, per stage."""
    samples: dict[str, list] = {stage: [] for stage in stages}
    conf = presets.search()
    collection = method.collection()
    total = sum(len(items) for items in queries.values())
    done = 0
    for items in queries.values():
        for query in items:
            done += 1
            print(f"  query {done}/{total}", file=sys.stderr, flush=True)
            pixels = load_image(query.image_path).pixels
            relevant = query.relevant_ids()
            related = set(query.related) - relevant
            for stage in stages:
                found = find_candidates(collection, pixels, conf, stage=stage, embedder=method.embedder())
                records = collection.images([candidate.image_id for candidate in found.items])
                for candidate in found.items:
                    image_id = method.id_of(records[candidate.image_id].path)
                    if image_id in related:
                        continue
                    samples[stage].append((candidate.features(), image_id in relevant))
    return samples


def calibrate_stage(samples: list, names: Sequence[str]) -> dict:
    features = np.array([[features[name] for name in names] for features, _ in samples], dtype=np.float64)
    labels = np.array([label for _, label in samples], dtype=bool)
    theta = fit_logistic(features, labels)
    probabilities = 1.0 / (1.0 + np.exp(-(theta[0] + features @ theta[1:])))
    calibration = metrics.calibrate_threshold(labels, probabilities, metrics.f1_criterion)
    counts = metrics.confusion_at_threshold(labels, probabilities, calibration.threshold)
    return {
        "weights": dict(zip(names, (round(float(w), 6) for w in theta[1:]), strict=True)),
        "bias": round(float(theta[0]), 6),
        "threshold": round(float(calibration.threshold), 6),
        "training": {
            "candidates": len(labels),
            "positives": int(labels.sum()),
            "precision": round(counts.precision, 4),
            "recall": round(counts.recall, 4),
            "average_precision": round(metrics.binary_average_precision(labels, probabilities), 4),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.calibrate_search", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=1001)
    parser.add_argument("--data", type=Path, default=DATA / "corpus")
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    parser.add_argument("--refit", action="store_true", help="fit the cached candidate features again")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    folder = DATA / "bench" / f"calibration-{size.name}-seed{args.seed}"
    try:
        setup = prepare(size, args.seed, args.data, folder)
    except corpus_module.CorpusError as exc:
        print(f"calibration: error: {exc}", file=sys.stderr)
        return 1
    collection, queries = setup.collection, setup.queries
    cache = folder / "candidates.json"
    if args.refit and cache.is_file():
        samples = json.loads(cache.read_text())
    else:
        method = ImgprovMethod(folder / "db", stage="both")
        index_method(method, collection, folder)
        samples = collect_samples(method, queries, tuple(STAGE_FEATURES))
        cache.write_text(json.dumps(samples))
    document = {
        "fitted_by": f"python -m benchmarks.calibrate_search --size {size.name} --seed {args.seed}",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "queries": {kind: len(items) for kind, items in queries.items()},
        "stages": {stage: calibrate_stage(samples[stage], names) for stage, names in STAGE_FEATURES.items()},
    }
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps(document["stages"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
