"""The calibrated parts of compare, read from the package's calibration.json.

benchmarks/calibrate_compare.py writes that file from training pairs only (its docstring describes
the fit); nothing here fits anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from imgprov.compare.models import VERDICTS, PixelModel, VerdictModel
from imgprov.compare.verdict import VERDICT_FEATURES
from imgprov.errors import ImgprovError

CALIBRATION_FORMAT = "imgprov-compare-calibration/1"
CALIBRATION_RESOURCE = "calibration.json"
PAPER_THRESHOLD = 0.35
"""Paper 004's heatmap threshold (section 4.5.1)."""


class CalibrationMissing(ImgprovError):
    """The packaged calibration of compare is absent or unreadable."""


@dataclass(frozen=True)
class Calibration:
    """threshold: heatmap value at and above which a pixel is changed (fitted on training pairs).
    no_transform: verdict probabilities when F_A finds no plausible transform."""

    threshold: float
    pixel_model: PixelModel
    verdict_model: VerdictModel
    no_transform: dict[str, float]
    provenance: dict

    def to_json(self) -> dict:
        return {
            "format": CALIBRATION_FORMAT,
            "threshold": round(self.threshold, 4),
            "paper_threshold": PAPER_THRESHOLD,
            "no_transform_probabilities": {k: round(v, 4) for k, v in self.no_transform.items()},
            "pixel_model": self.pixel_model.to_json(),
            "verdict_model": self.verdict_model.to_json(),
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        if data.get("format") != CALIBRATION_FORMAT:
            raise CalibrationMissing(f"not an {CALIBRATION_FORMAT} document")
        names = tuple(data["verdict_model"]["feature_names"])
        if names != VERDICT_FEATURES:
            raise CalibrationMissing(
                f"the verdict model was fitted on {len(names)} features, this code computes "
                f"{len(VERDICT_FEATURES)} ({', '.join(VERDICT_FEATURES)})"
            )
        no_transform = {name: float(data["no_transform_probabilities"][name]) for name in VERDICTS}
        return cls(
            threshold=float(data["threshold"]),
            pixel_model=PixelModel.from_json(data["pixel_model"]),
            verdict_model=VerdictModel.from_json(data["verdict_model"]),
            no_transform=no_transform,
            provenance=dict(data.get("provenance", {})),
        )


@cache
def packaged_calibration(resource: str = CALIBRATION_RESOURCE) -> Calibration:
    """The calibration shipped in this package (read once per process)."""
    try:
        text = resources.files("imgprov.compare").joinpath(resource).read_text()
        return Calibration.from_json(json.loads(text, parse_constant=_reject_non_finite))
    except (OSError, ValueError, KeyError, CalibrationMissing) as exc:
        raise CalibrationMissing(
            f"compare calibration {resource!r} is missing, damaged or out of date ({exc}); "
            "run `python -m benchmarks.calibrate_compare`"
        ) from None


def _reject_non_finite(name: str) -> float:
    raise ValueError(f"a fitted value is {name}")
