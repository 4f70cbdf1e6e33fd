"""The two small calibrated models of compare, as plain numpy, stored in calibration.json.

`PixelModel`: a one-hidden-layer perceptron from the difference features of a pixel to the
probability that an editor changed it (the heatmap). `VerdictModel`: a multinomial logistic
regression from a handful of interpretable pair features to the ICN's 3-way output (benign /
manipulated / distinct, paper 004 Eq. 8-9). Both are fitted by benchmarks/calibrate_compare.py on
training pairs only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

import numpy as np


class Verdict(StrEnum):
    """The comparator's 3-way answer; its values are the JSON strings."""

    BENIGN = "benign"
    MANIPULATED = "manipulated"
    DISTINCT = "distinct"


VERDICTS: tuple[Verdict, ...] = tuple(Verdict)
"""The verdicts in the order of the verdict model's outputs."""


@dataclass(frozen=True)
class Standardizer:
    """x -> (x - mean) / scale, feature-wise; mean, scale: (F,) float32."""

    mean: np.ndarray
    scale: np.ndarray

    def apply(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.scale

    @classmethod
    def fit(cls, features: np.ndarray) -> Standardizer:
        """From (N, F) samples; constant features keep scale 1."""
        if not np.isfinite(features).all():
            raise ValueError("features to standardize hold NaN or infinity")
        scale = features.std(axis=0)
        return cls(
            features.mean(axis=0).astype(np.float32), np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
        )

    def to_json(self) -> dict:
        return {"mean": _rounded(self.mean), "scale": _rounded(self.scale)}

    @classmethod
    def from_json(cls, data: dict) -> Standardizer:
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["scale"], np.float32))


@dataclass(frozen=True)
class PixelModel:
    """P(edited) = sigmoid(w2 . relu(W1^T z + b1) + b2) with z the standardized features.

    hidden_weights: (F, H) float32; hidden_bias: (H,); output_weights: (H,); output_bias: float.
    """

    standardizer: Standardizer
    hidden_weights: np.ndarray
    hidden_bias: np.ndarray
    output_weights: np.ndarray
    output_bias: float

    @property
    def feature_count(self) -> int:
        return int(self.hidden_weights.shape[0])

    def probability(self, features: np.ndarray) -> np.ndarray:
        """features: (..., F) float32 -> (...) float32 probabilities."""
        weights, bias = self._standardized_layer
        hidden = np.maximum(features.reshape(-1, self.feature_count) @ weights + bias, 0.0)
        logits = hidden @ self.output_weights + np.float32(self.output_bias)
        return _sigmoid(logits).reshape(features.shape[:-1]).astype(np.float32)

    @cached_property
    def _standardized_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """The hidden layer with the standardizer folded in: (F, H) and (H,) float32 that take the raw
        features (one matrix product per pixel instead of a pass over the features first)."""
        weights = self.hidden_weights / self.standardizer.scale[:, None]
        bias = self.hidden_bias - (self.standardizer.mean / self.standardizer.scale) @ self.hidden_weights
        return weights.astype(np.float32), bias.astype(np.float32)

    def to_json(self) -> dict:
        return {
            "standardizer": self.standardizer.to_json(),
            "hidden_weights": _rounded(self.hidden_weights),
            "hidden_bias": _rounded(self.hidden_bias),
            "output_weights": _rounded(self.output_weights),
            "output_bias": round(float(self.output_bias), 6),
        }

    @classmethod
    def from_json(cls, data: dict) -> PixelModel:
        return cls(
            standardizer=Standardizer.from_json(data["standardizer"]),
            hidden_weights=np.asarray(data["hidden_weights"], np.float32),
            hidden_bias=np.asarray(data["hidden_bias"], np.float32),
            output_weights=np.asarray(data["output_weights"], np.float32),
            output_bias=float(data["output_bias"]),
        )


@dataclass(frozen=True)
class VerdictModel:
    """softmax(W^T z + b) over VERDICTS with z the standardized pair features.

    feature_names: what each input is (see imgprov.compare.verdict); weights: (F, 3); bias: (3,).
    """

    feature_names: tuple[str, ...]
    standardizer: Standardizer
    weights: np.ndarray
    bias: np.ndarray

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """features: (F,) or (N, F) float -> (3,) or (N, 3) float64 probabilities over VERDICTS."""
        logits = self.standardizer.apply(np.asarray(features, np.float64)) @ self.weights + self.bias
        return softmax(logits)

    def to_json(self) -> dict:
        return {
            "feature_names": list(self.feature_names),
            "standardizer": self.standardizer.to_json(),
            "weights": _rounded(self.weights),
            "bias": _rounded(self.bias),
        }

    @classmethod
    def from_json(cls, data: dict) -> VerdictModel:
        return cls(
            feature_names=tuple(data["feature_names"]),
            standardizer=Standardizer.from_json(data["standardizer"]),
            weights=np.asarray(data["weights"], np.float64),
            bias=np.asarray(data["bias"], np.float64),
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def _rounded(array: np.ndarray) -> list:
    return np.round(np.asarray(array, np.float64), 6).tolist()
