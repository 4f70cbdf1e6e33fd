"""Oracle: how much of a Manip+Benign edit is left in the query, beside what the benign transform changed.

A Manip+Benign query is an edited original that was then resized, JPEG-compressed and perhaps
corrupted, cropped, padded or rotated. The generator is deterministic, so the same pair can be made
again with the same benign transform (the same draws) applied to the unedited original: its twin.
Inside the edit's mask, in the query's pixels:

* edit: mean |query - twin|, what the edit still changes after the benign transform;
* benign: mean |twin - original warped into the query frame|, what the benign transform changed there.

Both are grey levels (0-255, mean over RGB). A local blur of sigma 3 on a photo later shrunk to a
third and blurred again by a corruption leaves an edit far below the benign change: no comparator
sees it, since the query is what it would have been without the edit. `bench_compare` splits its
Manip+Benign accuracy by `EditSurvival.ratio`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmarks.queries import Pair, PhotoSource, load_rgb, manip_benign_twin
from benchmarks.transforms import hw

BENIGN_FLOOR = 0.5
"""Grey levels: a benign change below this counts as this much (rounding alone moves pixels by 0.5)."""


@dataclass(frozen=True)
class EditSurvival:
    """edit, benign: mean grey-level changes inside the edit mask (see the module docstring)."""

    edit: float
    benign: float

    @property
    def ratio(self) -> float:
        """What the edit changes over what the benign transform changes, where the edit is."""
        return self.edit / max(self.benign, BENIGN_FLOOR)


def edit_survival(
    query: np.ndarray, twin: np.ndarray, original: np.ndarray, homography: np.ndarray, mask: np.ndarray
) -> EditSurvival:
    """query, twin: (H, W, 3) uint8, the edited and unedited benign copies; original: (h, w, 3) uint8;
    homography: (3, 3) float64, H_query_from_original; mask: (H, W) bool, the edit in the query."""
    if query.shape != twin.shape:
        raise ValueError(f"the twin has shape {twin.shape}, the query {query.shape}")
    if not mask.any():
        return EditSurvival(0.0, 0.0)
    height, width = hw(query)
    warped = cv2.warpPerspective(original, homography, (width, height), flags=cv2.INTER_AREA)
    query_f, twin_f = query.astype(np.float32), twin.astype(np.float32)
    edit = np.abs(query_f - twin_f).mean(axis=2)[mask]
    benign = np.abs(twin_f - warped.astype(np.float32)).mean(axis=2)[mask]
    return EditSurvival(float(edit.mean()), float(benign.mean()))


def pair_survival(
    pair: Pair,
    index: int,
    originals: PhotoSource,
    held_out: PhotoSource,
    stamps: Sequence[str | Path],
    seed: int,
) -> EditSurvival:
    """The survival of Manip+Benign pair number `index` of a set generated with these photos and
    seed (`benchmarks.queries.generate_pairs`, no donors); checks that it is made again exactly."""
    if pair.kind != "manip+benign":
        raise ValueError(f"{pair.pair_id} is a {pair.kind} pair, not manip+benign")
    query, twin, original = manip_benign_twin(originals, held_out, {}, stamps, seed, index)
    if not np.array_equal(query.image, load_rgb(pair.query_path)):
        raise ValueError(f"{pair.pair_id} is not Manip+Benign pair {index} of seed {seed}")
    return edit_survival(query.image, twin.image, original, query.homography, query.mask)
