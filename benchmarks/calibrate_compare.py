"""Fit compare's calibration (src/imgprov/compare/calibration.json) on training pairs only.

    python -m benchmarks.calibrate_compare                # corpus photos, 600 pairs per set
    python -m benchmarks.calibrate_compare --pairs 300    # quicker, noisier

Photos: the benchmark corpus (``make corpus``); its scenes are split with the seed into a train
part (70 %) and a test part (30 %) that `bench_compare` uses, so no photo, and no other shot of the
same scene, is ever seen by both. Within each part a quarter of the scenes are held out: their
photos only make the query side of Distinct pairs. Without the corpus, the scikit-image photos are
used (too few to calibrate well; the report says so). RGBA stamps of the corpus, split the same
way, are pasted by some splices.

The fit, in order:

1. `benchmarks.queries.generate_pairs` makes `--pairs` pairs of each set (Benign, Manip,
   Manip+Benign, Distinct) from the train photos with exact changed-pixel masks, plus `--pairs` / 3
   pairs of an original with itself (benign, as in paper 004's training and its "Original" test).
2. Each pair goes through F_A and the difference channels as compare does at run time (both cached
   under `--work`, keyed by the configuration and the source of the modules that compute them).
3. The training scenes are split into FOLDS folds. Pixel model: a one-hidden-layer perceptron
   (`--hidden` ReLU units) on the pixel features, trained with Adam on weighted binary
   cross-entropy over pixels sampled from Benign, Manip and Manip+Benign pairs (up to
   PIXELS_PER_CLASS changed and as many unchanged comparable pixels per pair; each pair weighs the
   same); the truth is the pair's mask shrunk to the working frame (> half changed). It is fitted
   once per fold on the other folds, which gives every pair an out-of-fold heatmap, and once on
   everything (the model compare ships).
4. Threshold: the heatmap value maximizing the mean mask IoU of the out-of-fold heatmaps over the
   manipulated pairs (the mask as compare makes it, small blobs removed), on a 0.05 grid.
5. Verdict model: class-balanced multinomial logistic regression (L2 `--l2`, Newton steps) of the
   labels on the `VERDICT_FEATURES` of the out-of-fold heatmaps, so that it learns from heatmaps
   as good as those of unseen pairs. Pairs F_A could not align give the no-transform probabilities
   (label frequencies with add-one smoothing).
6. Prior of "manipulated": class balance weighs the classes alike, but the target is an accuracy
   on every set, and a degraded copy's benign false alarms and a degraded edit's faint evidence
   compete. The verdict model is cross-validated over the folds (fitted on three, applied to the
   fourth), and the shift of the manipulated class's log-prior (added to its bias, on a grid of
   PRIOR_SHIFT_STEP up to `--max-prior-shift`) that maximizes the smallest per-set out-of-fold
   accuracy is kept (the smallest shift among equals).
7. Evidence: the per-set accuracy and mask IoU of that out-of-fold compare, with the shift, are
   reported in the calibration's provenance; choices about features are made on these figures,
   never on the test part. (The shift is chosen on the same out-of-fold answers, so these figures
   are slightly optimistic; the test part is the check.)

Everything is seeded; the same photos, seed and code give the same file.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import json
import pickle
import shlex
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from benchmarks import corpus as corpus_module
from benchmarks.queries import (
    GENERATOR_VERSION,
    PAIR_KINDS,
    Pair,
    generate_pairs,
    load_mask,
    load_pairs,
    load_rgb,
    save_pairs,
)
from imgprov.compare import align, deep, difference
from imgprov.compare.align import AlignedPair, GlobalFit
from imgprov.compare.calibration import CALIBRATION_RESOURCE, Calibration
from imgprov.compare.comparison import run_alignment
from imgprov.compare.conf import CompareConf, compare_preset
from imgprov.compare.difference import (
    DifferenceMaps,
    difference_maps,
    feature_count,
    masked_blur,
    pixel_features,
)
from imgprov.compare.models import VERDICTS, PixelModel, Standardizer, VerdictModel, softmax
from imgprov.compare.regions import threshold_mask
from imgprov.compare.verdict import VERDICT_FEATURES, verdict_features
from imgprov.demo import SKIMAGE_PHOTOS, skimage_data_dir

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
CALIBRATION_PATH = REPO / "src" / "imgprov" / "compare" / CALIBRATION_RESOURCE
TEST_FRACTION = 0.3
HELD_OUT_FRACTION = 0.25
FOLDS = 4
PIXELS_PER_CLASS = 1000
IDENTICAL_SALT = 17
THRESHOLD_GRID = tuple(float(t) for t in np.round(np.arange(0.3, 0.951, 0.05), 2))
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
LABEL_OF_KIND = {
    "benign": "benign",
    "manip": "manipulated",
    "manip+benign": "manipulated",
    "distinct": "distinct",
    "identical": "benign",
}
REPORTED_KINDS = ("benign", "identical", "manip", "manip+benign", "distinct")
PRIOR_SHIFT_STEP = 0.05


# --- photos and pairs (shared with bench_compare) ----------------------------------------------------


@dataclass(frozen=True)
class PhotoPart:
    """The photos of one part (train or test): originals, held-out photos (query side of Distinct
    pairs only), RGBA stamps, and the scene of every photo id."""

    originals: dict[str, Path]
    held_out: dict[str, Path]
    stamps: tuple[Path, ...]
    source: str
    scenes: dict[str, str]


def corpus_photos(
    data_dir: Path, photo_dir: Path | None = None
) -> tuple[list[tuple[str, Path, str]], list[Path], str]:
    """(photo id, path, scene) of every photo, the stamps, and a name for the source: the photos of
    photo_dir when given (each its own scene), else the corpus when it is fetched, else the
    scikit-image photos."""
    if photo_dir is not None:
        files = sorted(path for path in photo_dir.iterdir() if path.suffix.lower() in PHOTO_SUFFIXES)
        return [(path.stem, path, path.stem) for path in files], [], f"{len(files)} photos of {photo_dir}"
    try:
        photos = corpus_module.load_corpus(data_dir)
    except (corpus_module.CorpusError, OSError):
        skimage = [(Path(name).stem, skimage_data_dir() / name, Path(name).stem) for name in SKIMAGE_PHOTOS]
        return skimage, [], f"{len(skimage)} scikit-image photos (the corpus is not fetched)"
    stamps = sorted((data_dir / "stamps").glob("*.png"))
    listed = [(photo.photo_id, photo.path, photo.scene) for photo in photos]
    return listed, stamps, f"{len(listed)} corpus photos, {len(stamps)} stamps"


def split_photos(
    photos: Sequence[tuple[str, Path, str]], stamps: Sequence[Path], seed: int, source: str
) -> dict[str, PhotoPart]:
    """{"train": ..., "test": ...}: scenes split by a seeded hash, so both parts never share a scene."""
    parts: dict[str, PhotoPart] = {}
    for part in ("train", "test"):
        chosen = [(pid, path, scene) for pid, path, scene in photos if _part_of(scene, seed) == part]
        held = {
            pid: path for pid, path, scene in chosen if _unit(scene, seed, "held-out") < HELD_OUT_FRACTION
        }
        originals = {pid: path for pid, path, _ in chosen if pid not in held}
        part_stamps = tuple(path for path in stamps if _part_of(path.stem, seed) == part)
        scenes = {pid: scene for pid, _, scene in chosen}
        parts[part] = PhotoPart(originals, held, part_stamps, source, scenes)
    return parts


def _unit(key: str, seed: int, salt: str) -> float:
    """A seeded hash of key in [0, 1)."""
    return zlib.crc32(f"{seed}:{salt}:{key}".encode()) / 2**32


def _part_of(scene: str, seed: int) -> str:
    return "test" if _unit(scene, seed, "part") < TEST_FRACTION else "train"


def pair_sets(part: PhotoPart, count: int, seed: int, folder: Path) -> dict[str, list[Pair]]:
    """`count` pairs of each of PAIR_KINDS, generated once and loaded from folder after."""
    sets = {}
    for kind in PAIR_KINDS:
        out = folder / kind.replace("+", "-")
        key = _fingerprint(
            sorted(part.originals),
            sorted(part.held_out),
            [p.name for p in part.stamps],
            count,
            seed,
            GENERATOR_VERSION,
        )
        if (out / "pairs.json").is_file() and (out / "key").read_text() == key:
            sets[kind] = load_pairs(out)
            continue
        pairs = generate_pairs(part.originals, part.held_out, {}, part.stamps, kind, count, seed, out)
        save_pairs(pairs, out)
        (out / "key").write_text(key)
        sets[kind] = pairs
    return sets


def identical_pairs(part: PhotoPart, count: int, seed: int, folder: Path) -> list[Pair]:
    """`count` pairs of an original with itself (paper 004 trains and tests on these too), with an
    empty mask; the originals are drawn with the seed."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = sorted(part.originals)
    chosen = np.random.default_rng([seed, IDENTICAL_SALT]).choice(
        len(ids), min(count, len(ids)), replace=False
    )
    pairs = []
    for index, position in enumerate(sorted(chosen)):
        photo_id = ids[position]
        path = part.originals[photo_id]
        mask_path = folder / f"{photo_id}_mask.png"
        if not mask_path.is_file():
            with Image.open(path) as image:
                size = ImageOps.exif_transpose(image).size
            Image.new("L", size, 0).save(mask_path)
        pairs.append(
            Pair(
                pair_id=f"pair-identical-{index:05d}",
                kind="identical",
                label="benign",
                query_path=path,
                original_id=photo_id,
                original_path=path,
                mask_path=mask_path,
                valid_path=None,
                homography=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
                ops=({"op": "identical"},),
            )
        )
    return pairs


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _source_fingerprint(*modules) -> str:
    """A hash of the source of the modules whose output a cache holds (a code change invalidates it)."""
    return _fingerprint([inspect.getsource(module) for module in modules])


# --- F_A and the difference channels of every training pair, cached ---------------------------------


@dataclass(frozen=True)
class PreparedPair:
    """A training pair after F_A and the difference channels.

    fit, aligned: F_A's result (None when no transform was found); maps: the difference channels;
    truth: (h, w) bool, the changed mask in the working frame (None when not aligned).
    """

    pair_id: str
    kind: str
    fit: GlobalFit | None
    aligned: AlignedPair | None
    maps: DifferenceMaps | None
    truth: np.ndarray | None

    @property
    def label(self) -> int:
        return VERDICTS.index(LABEL_OF_KIND[self.kind])


def align_training_pair(
    pair: Pair, conf: CompareConf
) -> tuple[GlobalFit | None, AlignedPair | None, np.ndarray | None]:
    """F_A on one pair: the fit, the aligned pair and the (h, w) bool truth in the working frame
    (all None when no transform was found). Plain tuples pickle the same whichever module runs."""
    query, original = load_rgb(pair.query_path), load_rgb(pair.original_path)
    alignment = run_alignment(query, original, conf)
    if alignment.pair is None:
        return None, None, None
    height, width = alignment.pair.comparable.shape
    changed = load_mask(pair.mask_path).astype(np.float32)
    truth = cv2.resize(changed, (width, height), interpolation=cv2.INTER_AREA) > 0.5
    return alignment.fit, alignment.pair, truth


def difference_training_pair(aligned: Path, conf: CompareConf) -> DifferenceMaps | None:
    """The difference channels (float16, the cache holds thousands of pairs) of a cached aligned pair."""
    _, aligned_pair, _ = pickle.loads(aligned.read_bytes())
    if aligned_pair is None:
        return None
    maps = difference_maps(aligned_pair, conf.difference)
    return DifferenceMaps(
        maps.channels.astype(np.float16), maps.raw.astype(np.float16), maps.image_stats, maps.comparable
    )


class PreparedStore:
    """The prepared pairs of a run, cached one file per pair and loaded one at a time: F_A's result
    under aligned/<key>/ (the key covers the align configuration and the source of the modules that
    align), the difference channels under maps/<key>/ (also covering the difference's)."""

    def __init__(self, pairs: Sequence[Pair], conf: CompareConf, cache: Path) -> None:
        align_key = _fingerprint(repr(conf.align), _source_fingerprint(align, deep))
        maps_key = _fingerprint(align_key, repr(conf.difference), _source_fingerprint(deep, difference))
        self.aligned_folder = cache / "aligned" / align_key[:16]
        self.maps_folder = cache / "maps" / maps_key[:16]
        self.pairs = list(pairs)
        self.conf = conf

    def fill(self, workers: int) -> None:
        """Align, then difference, every pair not cached yet, in `workers` processes."""
        self.aligned_folder.mkdir(parents=True, exist_ok=True)
        self.maps_folder.mkdir(parents=True, exist_ok=True)
        todo = [pair for pair in self.pairs if not self._path(self.aligned_folder, pair).is_file()]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            aligned = pool.map(align_training_pair, todo, [self.conf] * len(todo), chunksize=4)
            for pair, item in zip(todo, aligned, strict=True):
                self._path(self.aligned_folder, pair).write_bytes(pickle.dumps(item))
            todo = [pair for pair in self.pairs if not self._path(self.maps_folder, pair).is_file()]
            sources = [self._path(self.aligned_folder, pair) for pair in todo]
            maps = pool.map(difference_training_pair, sources, [self.conf] * len(todo), chunksize=4)
            for pair, item in zip(todo, maps, strict=True):
                self._path(self.maps_folder, pair).write_bytes(pickle.dumps(item))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> PreparedPair:
        pair = self.pairs[index]
        fit, aligned, truth = pickle.loads(self._path(self.aligned_folder, pair).read_bytes())
        maps = pickle.loads(self._path(self.maps_folder, pair).read_bytes())
        if maps is not None:
            maps = DifferenceMaps(
                maps.channels.astype(np.float32),
                maps.raw.astype(np.float32),
                maps.image_stats,
                maps.comparable,
            )
        return PreparedPair(pair.pair_id, pair.kind, fit, aligned, maps, truth)

    def __iter__(self):
        return (self[index] for index in range(len(self)))

    @staticmethod
    def _path(folder: Path, pair: Pair) -> Path:
        """Named after the pair's id and the sizes of its files (regenerated pairs reuse ids)."""
        files = (pair.query_path, pair.original_path, pair.mask_path)
        key = _fingerprint([str(path) for path in files], [path.stat().st_size for path in files])
        return folder / f"{pair.pair_id}-{key[:12]}.pkl"


def scene_folds(pairs: Sequence[Pair], scenes: dict[str, str], seed: int) -> np.ndarray:
    """(N,) int fold of every pair, FOLDS folds by a seeded hash of its original's scene."""
    return np.array(
        [int(_unit(scenes.get(pair.original_id, pair.original_id), seed, "fold") * FOLDS) for pair in pairs]
    )


# --- pixel model -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PixelSamples:
    """Sampled pixels: features (N, F) float32, labels (N,) float32 in {0, 1}, weights (N,) float64
    (each pair weighs 1), and the index of the pair each came from (N,) int."""

    features: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    pair_index: np.ndarray

    def subset(self, keep: np.ndarray) -> PixelSamples:
        return PixelSamples(self.features[keep], self.labels[keep], self.weights[keep], self.pair_index[keep])


def pixel_samples(store: PreparedStore, conf: CompareConf, seed: int) -> PixelSamples:
    """Up to PIXELS_PER_CLASS changed and unchanged comparable pixels of every aligned Benign, Manip,
    Manip+Benign or identical pair."""
    parts = []
    for index, item in enumerate(store):
        if item.maps is None or item.kind == "distinct":
            continue
        rng = np.random.default_rng([seed, index])
        features = pixel_features(item.maps, conf.difference).reshape(-1, feature_count(conf.difference))
        comparable, truth = item.aligned.comparable.ravel(), item.truth.ravel()
        chosen = np.concatenate(
            [
                _sample(np.flatnonzero(comparable & truth), rng),
                _sample(np.flatnonzero(comparable & ~truth), rng),
            ]
        )
        if chosen.size:
            parts.append((features[chosen], truth[chosen], np.full(chosen.size, index)))
    return PixelSamples(
        features=np.concatenate([features for features, _, _ in parts]),
        labels=np.concatenate([labels for _, labels, _ in parts]).astype(np.float32),
        weights=np.concatenate([np.full(len(labels), 1.0 / len(labels)) for _, labels, _ in parts]),
        pair_index=np.concatenate([indices for _, _, indices in parts]),
    )


def _sample(indices: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (
        indices if indices.size <= PIXELS_PER_CLASS else rng.choice(indices, PIXELS_PER_CLASS, replace=False)
    )


def train_pixel_model(samples: PixelSamples, hidden: int, seed: int, epochs: int = 8) -> PixelModel:
    """Adam on weighted binary cross-entropy, mini-batches of 4,096 pixels, L2 1e-4."""
    rng = np.random.default_rng(seed)
    standardizer = Standardizer.fit(samples.features)
    inputs = standardizer.apply(samples.features).astype(np.float32)
    count, dims = inputs.shape
    params = {
        "w1": (rng.standard_normal((dims, hidden)) * np.sqrt(2.0 / dims)).astype(np.float32),
        "b1": np.zeros(hidden, np.float32),
        "w2": (rng.standard_normal(hidden) * np.sqrt(1.0 / hidden)).astype(np.float32),
        "b2": np.zeros(1, np.float32),
    }
    moments = {name: (np.zeros_like(value), np.zeros_like(value)) for name, value in params.items()}
    weights = (samples.weights / samples.weights.mean()).astype(np.float32)
    step = 0
    for epoch in range(epochs):
        rate = 3e-3 * (0.5 ** (epoch // 3))
        for batch in np.array_split(rng.permutation(count), max(1, count // 4096)):
            step += 1
            gradients = _mlp_gradients(params, inputs[batch], samples.labels[batch], weights[batch])
            for name, gradient in gradients.items():
                first, second = moments[name]
                first[...] = 0.9 * first + 0.1 * gradient
                second[...] = 0.999 * second + 0.001 * gradient**2
                corrected = first / (1 - 0.9**step) / (np.sqrt(second / (1 - 0.999**step)) + 1e-8)
                params[name] -= rate * corrected
    return PixelModel(standardizer, params["w1"], params["b1"], params["w2"], float(params["b2"][0]))


def _mlp_gradients(params: dict, inputs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> dict:
    pre = inputs @ params["w1"] + params["b1"]
    hidden = np.maximum(pre, 0.0)
    logits = hidden @ params["w2"] + params["b2"][0]
    probabilities = 0.5 * (1.0 + np.tanh(0.5 * logits))
    delta = (probabilities - labels) * weights / len(labels)
    hidden_delta = np.outer(delta, params["w2"]) * (pre > 0)
    return {
        "w1": inputs.T @ hidden_delta + 1e-4 * params["w1"],
        "b1": hidden_delta.sum(axis=0),
        "w2": hidden.T @ delta + 1e-4 * params["w2"],
        "b2": np.array([delta.sum()], np.float32),
    }


def heatmap_of(item: PreparedPair, model: PixelModel, conf: CompareConf) -> np.ndarray:
    """(h, w) float32 heatmap of a prepared pair, as `comparison.working_heatmap` computes it."""
    probability = model.probability(pixel_features(item.maps, conf.difference))
    weights = item.aligned.comparable.astype(np.float32)
    heatmap = masked_blur(probability, weights, conf.heat_smoothing) * weights
    return np.clip(heatmap, 0.0, 1.0).astype(np.float32)


def out_of_fold_heatmaps(
    store: PreparedStore, samples: PixelSamples, folds: np.ndarray, conf: CompareConf, hidden: int, seed: int
) -> list[np.ndarray | None]:
    """Every aligned pair's heatmap by a pixel model fitted without its fold (float16, to save memory)."""
    models = {
        fold: train_pixel_model(samples.subset(folds[samples.pair_index] != fold), hidden, seed)
        for fold in range(FOLDS)
    }
    return [
        None if item.maps is None else heatmap_of(item, models[folds[index]], conf).astype(np.float16)
        for index, item in enumerate(store)
    ]


# --- threshold and verdict -------------------------------------------------------------------------------


def best_threshold(
    store: PreparedStore, heatmaps: Sequence[np.ndarray | None], conf: CompareConf
) -> tuple[float, float]:
    """(threshold, mean IoU) over the aligned manipulated pairs on THRESHOLD_GRID."""
    scores = np.zeros(len(THRESHOLD_GRID))
    count = 0
    for item, heatmap in zip(store, heatmaps, strict=True):
        if heatmap is None or LABEL_OF_KIND[item.kind] != "manipulated":
            continue
        count += 1
        for position, threshold in enumerate(THRESHOLD_GRID):
            mask = threshold_mask(heatmap, item.aligned.comparable, threshold, conf.min_region_fraction)
            scores[position] += _iou(mask, item.truth)
    best = int(np.argmax(scores))
    return THRESHOLD_GRID[best], float(scores[best] / max(count, 1))


def _iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = int((predicted | truth).sum())
    return 1.0 if union == 0 else int((predicted & truth).sum()) / union


@dataclass(frozen=True)
class VerdictRows:
    """Verdict features of the aligned pairs: rows (N, F) float64, labels (N,) int indices into
    VERDICTS, positions (N,) int of each pair in the store, and masks (the pair's mask at the
    threshold, for IoU)."""

    rows: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    masks: list[np.ndarray]


def verdict_rows(
    store: PreparedStore, heatmaps: Sequence[np.ndarray | None], threshold: float, conf: CompareConf
) -> VerdictRows:
    rows, labels, positions, masks = [], [], [], []
    for index, (item, heatmap) in enumerate(zip(store, heatmaps, strict=True)):
        if heatmap is None:
            continue
        heat = heatmap.astype(np.float32)
        mask = threshold_mask(heat, item.aligned.comparable, threshold, conf.min_region_fraction)
        rows.append(verdict_features(item.fit, item.aligned, item.maps, heat, mask))
        labels.append(item.label)
        positions.append(index)
        masks.append(mask)
    return VerdictRows(np.array(rows), np.array(labels), np.array(positions), masks)


def train_verdict_model(features: np.ndarray, labels: np.ndarray, l2: float) -> VerdictModel:
    """Class-balanced multinomial logistic regression by Newton's method; labels: (N,) indices into
    VERDICTS. Every class present weighs the same in total."""
    standardizer = Standardizer.fit(features)
    inputs = np.column_stack([standardizer.apply(features).astype(np.float64), np.ones(len(features))])
    classes = len(VERDICTS)
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    present = counts > 0
    weights = (len(labels) / (present.sum() * counts[labels]))[:, None]
    targets = np.eye(classes)[labels]
    params = np.zeros((inputs.shape[1], classes))
    penalty = np.full(inputs.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(50):
        probabilities = softmax(inputs @ params)
        gradient = (inputs.T @ (weights * (probabilities - targets))) / len(inputs) + penalty[
            :, None
        ] * params
        hessian = (
            _softmax_hessian(inputs, probabilities, weights[:, 0])
            + np.diag(np.tile(penalty, classes))
            + 1e-9 * np.eye(params.size)
        )
        update = np.linalg.solve(hessian, gradient.T.ravel()).reshape(classes, -1).T
        params -= update
        if np.abs(update).max() < 1e-7:
            break
    return VerdictModel(VERDICT_FEATURES, standardizer, params[:-1], params[-1])


def _softmax_hessian(inputs: np.ndarray, probabilities: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Hessian of the weighted mean cross-entropy, blocks ordered class-major: (F*K, F*K)."""
    count, dims = inputs.shape
    classes = probabilities.shape[1]
    hessian = np.zeros((classes * dims, classes * dims))
    for a in range(classes):
        for b in range(classes):
            coupling = weights * probabilities[:, a] * ((a == b) - probabilities[:, b])
            hessian[a * dims : (a + 1) * dims, b * dims : (b + 1) * dims] = (
                inputs * coupling[:, None]
            ).T @ inputs
    return hessian / count


def no_transform_probabilities(store: PreparedStore) -> dict[str, float]:
    counts = {name: 1.0 for name in VERDICTS}
    for pair, item in zip(store.pairs, store, strict=True):
        if item.fit is None:
            counts[LABEL_OF_KIND[pair.kind]] += 1
    total = sum(counts.values())
    return {name: count / total for name, count in counts.items()}


def out_of_fold_log_probabilities(rows: VerdictRows, folds: np.ndarray, l2: float) -> np.ndarray:
    """(N, 3) log-probabilities of each aligned pair's verdicts from a verdict model fitted without
    the pair's fold (`folds`: (pairs,) int over the whole store)."""
    logs = np.zeros((len(rows.labels), len(VERDICTS)))
    row_folds = folds[rows.positions]
    for fold in range(FOLDS):
        train, held = row_folds != fold, row_folds == fold
        if held.any():
            model = train_verdict_model(rows.rows[train], rows.labels[train], l2)
            logs[held] = np.log(np.maximum(model.probabilities(rows.rows[held]), 1e-300))
    return logs


def shifted_verdicts(
    pair_count: int, positions: np.ndarray, log_probabilities: np.ndarray, shift: float
) -> np.ndarray:
    """(pair_count,) int verdicts with the manipulated log-prior raised by `shift`; positions: (N,)
    the aligned pairs whose (N, 3) log-probabilities are given; the others answer "distinct"."""
    logits = log_probabilities.copy()
    logits[:, VERDICTS.index("manipulated")] += shift
    predicted = np.full(pair_count, VERDICTS.index("distinct"))
    predicted[positions] = np.argmax(logits, axis=1)
    return predicted


def set_accuracies(kinds: Sequence[str], predicted: np.ndarray) -> dict[str, float]:
    """Accuracy of (pairs,) int verdicts on each of REPORTED_KINDS among the pairs' kinds."""
    kinds = np.asarray(kinds)
    accuracies = {}
    for kind in REPORTED_KINDS:
        members = kinds == kind
        if members.any():
            accuracies[kind] = float(np.mean(predicted[members] == VERDICTS.index(LABEL_OF_KIND[kind])))
    return accuracies


def best_prior_shift(
    kinds: Sequence[str], positions: np.ndarray, log_probabilities: np.ndarray, max_shift: float
) -> float:
    """The manipulated log-prior shift in [0, max_shift] (steps of PRIOR_SHIFT_STEP) that maximizes
    the smallest per-set accuracy of the verdicts; the smallest such shift."""
    grid = np.round(np.arange(0.0, max_shift + 1e-9, PRIOR_SHIFT_STEP), 4)
    worst = [
        min(set_accuracies(kinds, shifted_verdicts(len(kinds), positions, log_probabilities, s)).values())
        for s in grid
    ]
    return float(grid[int(np.argmax(worst))])


def cross_validated_report(
    store: PreparedStore, rows: VerdictRows, log_probabilities: np.ndarray, shift: float
) -> dict[str, dict[str, float]]:
    """Per set: accuracy of the out-of-fold verdicts with the prior shift, and for manipulated sets
    paper 004's mean IoU of S(U)."""
    kinds = [pair.kind for pair in store.pairs]
    predicted = shifted_verdicts(len(kinds), rows.positions, log_probabilities, shift)
    ious = _manipulated_ious(store, rows, predicted)
    report = {}
    for kind, accuracy in set_accuracies(kinds, predicted).items():
        members = [index for index, pair_kind in enumerate(kinds) if pair_kind == kind]
        entry = {"pairs": len(members), "accuracy": round(accuracy, 4)}
        if kind in ("manip", "manip+benign"):
            entry["mean_iou"] = round(float(np.mean([ious[index] for index in members])), 4)
        report[kind] = entry
    return report


def _manipulated_ious(store: PreparedStore, rows: VerdictRows, predicted: np.ndarray) -> dict[int, float]:
    """IoU of S(U) in the working frame for every manipulated pair: the mask when answered
    "manipulated", nothing when "benign", everything when "distinct"; 0 for a pair F_A could not
    align (its working frame does not exist)."""
    masks = dict(zip(rows.positions.tolist(), rows.masks, strict=True))
    ious = {}
    for index, pair in enumerate(store.pairs):
        if LABEL_OF_KIND[pair.kind] != "manipulated":
            continue
        if index not in masks:
            ious[index] = 0.0
            continue
        truth = store[index].truth
        answer = VERDICTS[predicted[index]]
        decided = {
            "manipulated": masks[index],
            "benign": np.zeros_like(truth),
            "distinct": np.ones_like(truth),
        }
        ious[index] = _iou(decided[answer], truth)
    return ious


# --- main ------------------------------------------------------------------------------------------------


def calibrate(
    store: PreparedStore, folds: np.ndarray, conf: CompareConf, args: argparse.Namespace, provenance: dict
) -> Calibration:
    """Fit the calibrated parts in order (see the module docstring); returns the calibration, whose
    provenance holds the fit's summary and the cross-validated evidence."""
    log = _logger()
    samples = pixel_samples(store, conf, args.seed)
    log(f"{len(samples.labels)} pixels sampled")
    heatmaps = out_of_fold_heatmaps(store, samples, folds, conf, args.hidden, args.seed)
    threshold, oof_iou = best_threshold(store, heatmaps, conf)
    log(f"out-of-fold heatmaps; threshold {threshold:.2f}")
    rows = verdict_rows(store, heatmaps, threshold, conf)
    log_probabilities = out_of_fold_log_probabilities(rows, folds, args.l2)
    kinds = [pair.kind for pair in store.pairs]
    shift = best_prior_shift(kinds, rows.positions, log_probabilities, args.max_prior_shift)
    log(f"manipulated log-prior shift {shift:.2f}")
    unshifted = cross_validated_report(store, rows, log_probabilities, 0.0)
    evidence = cross_validated_report(store, rows, log_probabilities, shift)
    fitted = train_verdict_model(rows.rows, rows.labels, args.l2)
    bias = fitted.bias.copy()
    bias[VERDICTS.index("manipulated")] += shift
    verdict_model = replace(fitted, bias=bias)
    pixel_model = train_pixel_model(samples, args.hidden, args.seed)
    log("final models fitted")
    summary = {
        "pixels": len(samples.labels),
        "changed_pixels": int(samples.labels.sum()),
        "hidden_units": args.hidden,
        "verdict_l2": args.l2,
        "manipulated_prior_shift": shift,
        "threshold": threshold,
        "out_of_fold_mean_iou_manipulated_aligned": round(oof_iou, 4),
        "aligned_pairs": len(rows.labels),
        "unaligned_pairs": len(store) - len(rows.labels),
        "cross_validated": evidence,
        "cross_validated_without_shift": unshifted,
    }
    return Calibration(
        threshold,
        pixel_model,
        verdict_model,
        no_transform_probabilities(store),
        {**provenance, "fit": summary},
    )


def _logger() -> Callable[[str], None]:
    started = time.perf_counter()
    return lambda message: print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)


def training_pairs(part: PhotoPart, count: int, seed: int, work: Path) -> list[Pair]:
    sets = pair_sets(part, count, seed, work / f"train-seed{seed}-n{count}")
    identical = identical_pairs(part, count // 3, seed, work / f"train-seed{seed}-identical")
    return [pair for kind in PAIR_KINDS for pair in sets[kind]] + identical


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.calibrate_compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--pairs", type=int, default=600, help="pairs per set (Benign, Manip, Manip+Benign, Distinct)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA / "corpus")
    parser.add_argument("--photo-dir", type=Path, help="use this folder's photos instead of the corpus")
    parser.add_argument("--work", type=Path, default=DATA / "compare", help="generated pairs and caches")
    parser.add_argument("--preset", default="rootsift-dis-mlp-512")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units of the pixel model")
    parser.add_argument("--l2", type=float, default=1e-2, help="L2 penalty of the verdict model")
    parser.add_argument(
        "--max-prior-shift",
        type=float,
        default=1.5,
        help="largest shift of the manipulated log-prior tried (0: keep the class-balanced prior)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    log = _logger()
    conf = compare_preset(args.preset)
    photos, stamps, source = corpus_photos(args.data, args.photo_dir)
    part = split_photos(photos, stamps, args.seed, source)["train"]
    pairs = training_pairs(part, args.pairs, args.seed, args.work)
    log(f"{len(pairs)} training pairs from {source}")
    store = PreparedStore(pairs, conf, args.work)
    store.fill(args.workers)
    log("aligned and differenced")
    provenance = {
        "command": "python -m benchmarks.calibrate_compare "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "photos": source,
        "train_originals": len(part.originals),
        "train_held_out": len(part.held_out),
        "pairs_per_set": args.pairs,
        "identical_pairs": args.pairs // 3,
        "seed": args.seed,
        "preset": conf.name,
        "pixel_features": feature_count(conf.difference),
    }
    calibration = calibrate(store, scene_folds(pairs, part.scenes, args.seed), conf, args, provenance)
    args.out.write_text(json.dumps(calibration.to_json(), indent=1) + "\n")
    print(json.dumps(calibration.provenance["fit"], indent=1))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
