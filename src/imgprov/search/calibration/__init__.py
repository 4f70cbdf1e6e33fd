"""Calibrated decisions: logistic models fitted by the benchmark scripts, stored as JSON beside this file.

`search.json` holds one model per search stage ("local", "global", "both"), fitted by
`benchmarks/calibrate_search.py` on queries of a training split (seed and photos disjoint from the
benchmark's test queries): P(match) = sigmoid(bias + sum of weight * feature), and the probability
threshold above which a candidate is reported as a match.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

from imgprov.errors import ImgprovError

MATCH_FEATURES = ("log_inliers", "support", "cosine")
"""log_inliers: log(1 + verified inliers); support: best region's inlier fraction; cosine: exact
cosine similarity of the global embeddings."""


@dataclass(frozen=True)
class MatchModel:
    """P(match) = sigmoid(bias + sum(weights[f] * features[f])); a match when P >= threshold."""

    weights: dict[str, float]
    bias: float
    threshold: float

    def probability(self, features: dict[str, float]) -> float:
        logit = self.bias + sum(weight * features.get(name, 0.0) for name, weight in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))


@cache
def match_model(stage: str) -> MatchModel:
    """The calibrated model of a search stage ("local", "global" or "both")."""
    try:
        document = json.loads(resources.files(__package__).joinpath("search.json").read_text())
        entry = document["stages"][stage]
        return MatchModel(
            weights=dict(entry["weights"]), bias=float(entry["bias"]), threshold=float(entry["threshold"])
        )
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ImgprovError(f"search calibration for stage {stage!r} is missing or damaged ({exc})") from None
