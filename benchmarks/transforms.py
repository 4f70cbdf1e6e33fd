"""Benchmark image transforms that return their exact ground truth.

Every function takes RGB uint8 images ``(H, W, 3)`` and, where it draws random parameters, a
``numpy.random.Generator`` passed explicitly: the same generator state gives byte-identical outputs.

Coordinates follow OpenCV: pixel ``(row i, column j)`` has its centre at ``(x=j, y=i)`` and a 3x3
matrix maps homogeneous ``(x, y, 1)`` of an input image to the output image. So
``cv2.warpPerspective(original, homography, (width, height))`` brings an original into a query's
frame, and `warp_mask` carries masks the same way (nearest neighbour).

Three kinds of transform:

* benign (`benign_transform`, paper 004 section 4.1): the primary group (resize, then a real JPEG
  re-encode), then an in-place ImageNet-C corruption, an out-of-place warp, or both;
* manipulations (`manipulate`, `composite`): an editor's change, with ``mask`` = exactly the pixels
  whose value differs from the input;
* their combination (`carry_edit`): an edit followed by a benign transform, the edit mask warped
  into the query frame and restricted to pixels that came from the original.
"""

from __future__ import annotations

import functools
import importlib
import io
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

import cv2
import numpy as np
from PIL import Image
from skimage.filters import gaussian
from skimage.util import random_noise

JsonDict = dict[str, object]
Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in pixels, right/bottom exclusive."""

MIN_SIDE = 32
"""Smallest side a resize may produce (ImageNet-C corruptions need 32 pixels)."""
RESIZE_SCALE_RANGE = (0.5, 1.0)
RESIZE_MAX_SIDES = (320, 480, 512, 640, 800, 1024)
JPEG_QUALITY_RANGE = (40, 90)
CROP_AREA_RANGE = (0.85, 0.95)
CROP_ASPECT_JITTER = 1.1
PAD_MAX_FRACTION = 0.10
ROTATION_MAX_DEGREES = 15.0
SEVERITIES = (1, 2, 3, 4, 5)

BENIGN_GROUPS = ("in_place", "out_of_place", "both")
OUT_OF_PLACE_OPS = ("crop", "pad", "rotate", "flip")
IMAGECORRUPTIONS_NAMES = (
    "gaussian_noise",
    "shot_noise",
    "defocus_blur",
    "motion_blur",
    "brightness",
    "contrast",
    "snow",
    "frost",
)
"""ImageNet-C corruptions taken from the ``imagecorruptions`` package (they work on any size)."""
OWN_CORRUPTION_NAMES = ("impulse_noise", "gaussian_blur", "fog")
"""ImageNet-C corruptions re-implemented here: the package's gaussian_blur and fog fail with numpy 2 /
skimage 0.26, and its impulse_noise draws from an unseeded generator."""

MANIP_KINDS = ("splice", "inpaint", "copy_move", "recolour", "text", "logo", "blur")
REGION_FRACTION_RANGE = (0.02, 0.25)
"""Area of an edited region over the image area, drawn log-uniformly."""
COMPOSITE_FRACTION_RANGE = (0.02, 0.15)
COMPOSITE_DONORS_RANGE = (1, 3)
PASTE_SCALE_RANGE = (0.67, 1.5)
"""Query pixels per donor pixel of a pasted region, drawn log-uniformly."""
EDIT_ATTEMPTS = 8
MIN_CHANGED_SHARE = 0.25
"""An edit is redrawn (up to EDIT_ATTEMPTS) when it changes fewer than this share of its support,
e.g. a hue shift on a grey wall or a blur on a flat sky."""

TEXT_WORDS = ("SALE", "FAKE", "BREAKING", "EXCLUSIVE", "NEWS", "LOL", "WOW", "@imgprov", "#1", "2024", "OK")
TEXT_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)


# --- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Step:
    """One operation applied to an image.

    image: (H', W', 3) uint8, the result.
    matrix: (3, 3) float64, maps pixel coordinates of the input to the result (identity in place).
    op: JSON-serialisable name and parameters of the operation.
    """

    image: np.ndarray
    matrix: np.ndarray
    op: JsonDict


@dataclass(frozen=True, eq=False)
class Transformed:
    """A query image and its ground truth relative to the original it was made from.

    image: (H, W, 3) uint8, the query.
    homography: (3, 3) float64, H_query_from_original.
    valid: (H, W) bool, query pixels that came from the original (not padding or rotation corners).
    mask: (H, W) bool, query pixels an editor changed (all False for a benign transform).
    ops: the operations applied, in order.
    """

    image: np.ndarray
    homography: np.ndarray
    valid: np.ndarray
    mask: np.ndarray
    ops: tuple[JsonDict, ...]


@dataclass(frozen=True, eq=False)
class Region:
    """A region to edit: ``mask`` (h, w) bool is its shape inside the box whose top-left is (x0, y0)."""

    mask: np.ndarray
    x0: int
    y0: int
    shape: str

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def box(self) -> Box:
        return (self.x0, self.y0, self.x0 + self.width, self.y0 + self.height)

    def full_mask(self, image_hw: tuple[int, int]) -> np.ndarray:
        """The region as an (H, W) bool mask of an image of size image_hw."""
        full = np.zeros(image_hw, dtype=bool)
        full[self.y0 : self.y0 + self.height, self.x0 : self.x0 + self.width] = self.mask
        return full

    def record(self, image_hw: tuple[int, int]) -> JsonDict:
        return {
            "shape": self.shape,
            "box": list(self.box),
            "fraction": float(self.mask.sum() / (image_hw[0] * image_hw[1])),
        }


@dataclass(frozen=True, eq=False)
class DonorPaste:
    """Where pixels of one donor photo went in an edited image.

    source_box: the cut's bounding box in donor pixels.
    query_box: where that box was pasted in the edited image.
    homography: (3, 3) float64, H_edited_from_donor.
    mask: (H, W) bool, edited-image pixels that now hold this donor's pixels and differ from before.
    """

    source_box: Box
    query_box: Box
    homography: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True, eq=False)
class Edit:
    """An edited image.

    image: (H, W, 3) uint8, the result, same size as the input.
    mask: (H, W) bool, exactly the pixels whose value differs from the input.
    op: JSON-serialisable kind and parameters of the edit.
    pastes: one record per donor photo whose pixels were pasted in (splice, composite).
    """

    image: np.ndarray
    mask: np.ndarray
    op: JsonDict
    pastes: tuple[DonorPaste, ...] = ()


# --- geometry --------------------------------------------------------------------------------------


def translation(dx: float, dy: float) -> np.ndarray:
    """(3, 3) float64 matrix moving points by (dx, dy)."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def resize_matrix(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """(3, 3) float64 matrix of a resize from src_hw to dst_hw that keeps pixel edges on pixel edges."""
    sx = dst_hw[1] / src_hw[1]
    sy = dst_hw[0] / src_hw[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def flip_matrix(width: int) -> np.ndarray:
    """(3, 3) float64 matrix of a horizontal flip of an image `width` pixels wide."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def rotation_matrix(image_hw: tuple[int, int], degrees: float) -> np.ndarray:
    """(3, 3) float64 counter-clockwise rotation about the image centre (OpenCV's sense of angle)."""
    centre = ((image_hw[1] - 1) / 2.0, (image_hw[0] - 1) / 2.0)
    return np.vstack([cv2.getRotationMatrix2D(centre, degrees, 1.0), [0.0, 0.0, 1.0]])


def apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (N, 2) float (x, y) with a (3, 3) matrix; returns (N, 2) float64."""
    homogeneous = np.hstack([np.asarray(points, dtype=np.float64), np.ones((len(points), 1))])
    mapped = homogeneous @ matrix.T
    return mapped[:, :2] / mapped[:, 2:3]


def warp_mask(mask: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Carry a (H, W) bool mask through a (3, 3) matrix into an out_hw frame, nearest neighbour.

    Pixels that map from outside the input are False.
    """
    warped = cv2.warpPerspective(
        mask.astype(np.uint8),
        matrix,
        (out_hw[1], out_hw[0]),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return warped > 0


def hw(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of an image or mask."""
    return (int(image.shape[0]), int(image.shape[1]))


# --- benign operations with explicit parameters ----------------------------------------------------


def resize_to(image: np.ndarray, width: int, height: int) -> Step:
    """Resize to (width, height): area averaging when shrinking, bilinear when enlarging."""
    shrinking = width * height < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    op: JsonDict = {"op": "resize", "width": width, "height": height}
    return Step(resized, resize_matrix(hw(image), (height, width)), op)


def jpeg_recompress(image: np.ndarray, quality: int) -> Step:
    """Encode to JPEG with Pillow at `quality` and decode again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        recompressed = np.asarray(decoded.convert("RGB")).copy()
    return Step(recompressed, np.eye(3), {"op": "jpeg", "quality": quality})


def crop(image: np.ndarray, x0: int, y0: int, width: int, height: int) -> Step:
    """Keep the width x height window whose top-left pixel is (x0, y0)."""
    window = image[y0 : y0 + height, x0 : x0 + width].copy()
    op: JsonDict = {"op": "crop", "box": [x0, y0, x0 + width, y0 + height]}
    return Step(window, translation(-x0, -y0), op)


def pad(
    image: np.ndarray, sides: tuple[int, int, int, int], reflect: bool, colour: tuple[int, int, int]
) -> Step:
    """Add (left, top, right, bottom) pixels of border, mirrored or of a solid `colour`."""
    left, top, right, bottom = sides
    if reflect:
        padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    else:
        padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=colour)
    op: JsonDict = {"op": "pad", "sides": list(sides), "border": "reflect" if reflect else "solid"}
    if not reflect:
        op["colour"] = list(colour)
    return Step(padded, translation(left, top), op)


def rotate(image: np.ndarray, degrees: float, colour: tuple[int, int, int] = (0, 0, 0)) -> Step:
    """Rotate counter-clockwise about the centre on the same canvas; uncovered corners get `colour`."""
    matrix = rotation_matrix(hw(image), degrees)
    rotated = cv2.warpAffine(
        image,
        matrix[:2],
        (image.shape[1], image.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=colour,
    )
    return Step(rotated, matrix, {"op": "rotate", "degrees": degrees, "colour": list(colour)})


def flip_horizontal(image: np.ndarray) -> Step:
    """Mirror left to right."""
    return Step(image[:, ::-1].copy(), flip_matrix(image.shape[1]), {"op": "flip"})


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> Step:
    """Apply the ImageNet-C corruption `name` at `severity` (1-5); `seed` fixes its random draws."""
    corruptions = available_corruptions()
    if name not in corruptions:
        raise ValueError(f"unknown or unavailable corruption {name!r}; available: {sorted(corruptions)}")
    corrupted = corruptions[name](image, severity, np.random.default_rng(seed))
    implementation = "imgprov" if name in OWN_CORRUPTION_NAMES else "imagecorruptions"
    op: JsonDict = {
        "op": "corruption",
        "name": name,
        "severity": severity,
        "seed": seed,
        "implementation": implementation,
    }
    return Step(corrupted, np.eye(3), op)


# --- ImageNet-C corruptions ------------------------------------------------------------------------

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@functools.cache
def _imagecorruptions() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module("imagecorruptions")
        except ImportError:
            return None


def available_corruptions() -> dict[str, Corruption]:
    """Corruption name -> function(image, severity, rng) for every corruption usable here."""
    corruptions: dict[str, Corruption] = {
        "impulse_noise": impulse_noise,
        "gaussian_blur": gaussian_blur,
        "fog": fog,
    }
    if _imagecorruptions() is not None:
        for name in IMAGECORRUPTIONS_NAMES:
            corruptions[name] = functools.partial(_package_corruption, name)
    return dict(sorted(corruptions.items()))


@contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's legacy global generator for the duration, then restore its previous state.

    ``imagecorruptions`` draws from the global generator; this keeps it deterministic without
    disturbing anyone else's draws (not thread-safe, like the package itself).
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _package_corruption(name: str, image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    module = _imagecorruptions()
    assert module is not None
    seed = int(rng.integers(2**32))
    with _global_numpy_seed(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        corrupted = module.corrupt(image, severity=severity, corruption_name=name)
    return np.ascontiguousarray(corrupted, dtype=np.uint8)


def impulse_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C impulse (salt and pepper) noise on 3 %, 6 %, 9 %, 17 % or 27 % of the values."""
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    noisy = random_noise(image / 255.0, mode="s&p", amount=amount, rng=rng)
    return (np.clip(noisy, 0.0, 1.0) * 255).astype(np.uint8)


def gaussian_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C gaussian blur (sigma 1, 2, 3, 4, 6); rng is unused, kept for a common signature."""
    sigma = (1, 2, 3, 4, 6)[severity - 1]
    blurred = gaussian(image / 255.0, sigma=sigma, channel_axis=-1)
    return (np.clip(blurred, 0.0, 1.0) * 255).astype(np.uint8)


def fog(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C fog: a diamond-square plasma layer added and the result rescaled."""
    strength, decay = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    height, width = hw(image)
    size = 1 << (max(height, width) - 1).bit_length()
    layer = plasma_fractal(size, decay, rng)[:height, :width, np.newaxis]
    pixels = image / 255.0
    peak = pixels.max()
    fogged = (pixels + strength * layer) * peak / (peak + strength)
    return (np.clip(fogged, 0.0, 1.0) * 255).astype(np.uint8)


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map as in ImageNet-C: (size, size) float64 in [0, 1]; size a power of 2."""
    grid = np.zeros((size, size))
    step = size
    wibble = 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        square_sum = corners + np.roll(corners, -1, axis=0)
        square_sum = square_sum + np.roll(square_sum, -1, axis=1)
        grid[half:size:step, half:size:step] = _wibbled_mean(square_sum, wibble, rng)
        centres = grid[half:size:step, half:size:step]
        row_sum = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0:size:step, half:size:step] = _wibbled_mean(row_sum, wibble, rng)
        column_sum = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half:size:step, 0:size:step] = _wibbled_mean(column_sum, wibble, rng)
        step = half
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def _wibbled_mean(four_sum: np.ndarray, wibble: float, rng: np.random.Generator) -> np.ndarray:
    return four_sum / 4 + wibble * rng.uniform(-wibble, wibble, four_sum.shape)


# --- benign transform ------------------------------------------------------------------------------


def sample_resize(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Scale by U(0.5, 1.0), or shrink to a common web long side (never enlarging)."""
    height, width = hw(image)
    if rng.random() < 0.5:
        scale = float(rng.uniform(*RESIZE_SCALE_RANGE))
        mode: JsonDict = {"mode": "scale", "scale": scale}
    else:
        max_side = int(rng.choice(RESIZE_MAX_SIDES))
        scale = min(1.0, max_side / max(height, width))
        mode = {"mode": "max_side", "max_side": max_side}
    new_width = max(min(MIN_SIDE, width), round(width * scale))
    new_height = max(min(MIN_SIDE, height), round(height * scale))
    step = resize_to(image, new_width, new_height)
    return Step(step.image, step.matrix, {**step.op, **mode})


def sample_jpeg(image: np.ndarray, rng: np.random.Generator) -> Step:
    low, high = JPEG_QUALITY_RANGE
    return jpeg_recompress(image, int(rng.integers(low, high + 1)))


def sample_corruption(image: np.ndarray, rng: np.random.Generator, name: str | None = None) -> Step:
    """A random available ImageNet-C corruption (or `name`) at a random severity 1-5."""
    if name is None:
        name = str(rng.choice(list(available_corruptions())))
    severity = int(rng.choice(SEVERITIES))
    return corrupt(image, name, severity, int(rng.integers(2**31)))


def sample_crop(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Keep a random window of 85-95 % of the area, aspect ratio jittered by up to 10 %."""
    height, width = hw(image)
    area = rng.uniform(*CROP_AREA_RANGE)
    aspect = math.exp(rng.uniform(-math.log(CROP_ASPECT_JITTER), math.log(CROP_ASPECT_JITTER)))
    crop_width = min(width, max(1, round(width * math.sqrt(area * aspect))))
    crop_height = min(height, max(1, round(height * math.sqrt(area / aspect))))
    x0 = int(rng.integers(0, width - crop_width + 1))
    y0 = int(rng.integers(0, height - crop_height + 1))
    return crop(image, x0, y0, crop_width, crop_height)


def sample_pad(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Pad each side by U(0, 10 %) of its dimension, mirrored or with a random solid colour."""
    height, width = hw(image)
    fractions = rng.uniform(0.0, PAD_MAX_FRACTION, size=4)
    sides = (
        round(fractions[0] * width),
        round(fractions[1] * height),
        round(fractions[2] * width),
        round(fractions[3] * height),
    )
    reflect = bool(rng.random() < 0.5)
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    return pad(image, sides, reflect, colour)


def sample_rotation(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Rotate by U(-15, 15) degrees on the same canvas, black corners."""
    return rotate(image, float(rng.uniform(-ROTATION_MAX_DEGREES, ROTATION_MAX_DEGREES)))


def sample_out_of_place(image: np.ndarray, rng: np.random.Generator, name: str | None = None) -> Step:
    """One random out-of-place op (crop, pad, rotate or flip), or the one called `name`."""
    if name is None:
        name = str(rng.choice(OUT_OF_PLACE_OPS))
    samplers: dict[str, Callable[[np.ndarray, np.random.Generator], Step]] = {
        "crop": sample_crop,
        "pad": sample_pad,
        "rotate": sample_rotation,
        "flip": lambda img, _rng: flip_horizontal(img),
    }
    if name not in samplers:
        raise ValueError(f"unknown out-of-place op {name!r}; expected one of {OUT_OF_PLACE_OPS}")
    return samplers[name](image, rng)


def benign_transform(
    image: np.ndarray,
    rng: np.random.Generator,
    group: str | None = None,
    out_of_place: str | None = None,
    corruption: str | None = None,
) -> Transformed:
    """Paper 004's benign transform: resize + JPEG, then in-place, out-of-place or both.

    image: (H, W, 3) uint8. `group` (one of BENIGN_GROUPS), `out_of_place` (one of
    OUT_OF_PLACE_OPS) and `corruption` force a choice instead of drawing it. The result's mask is
    all False; its homography and valid mask describe where original pixels went.
    """
    if group is None:
        group = str(rng.choice(BENIGN_GROUPS))
    if group not in BENIGN_GROUPS:
        raise ValueError(f"unknown benign group {group!r}; expected one of {BENIGN_GROUPS}")
    steps = [sample_resize(image, rng)]
    steps.append(sample_jpeg(steps[-1].image, rng))
    if group in ("in_place", "both"):
        steps.append(sample_corruption(steps[-1].image, rng, corruption))
    if group in ("out_of_place", "both"):
        steps.append(sample_out_of_place(steps[-1].image, rng, out_of_place))
    return compose_steps(image, steps, group)


def compose_steps(original: np.ndarray, steps: Sequence[Step], group: str) -> Transformed:
    """Chain the steps' matrices into H_query_from_original and derive the valid mask."""
    homography = np.eye(3)
    for step in steps:
        homography = step.matrix @ homography
    query = steps[-1].image
    valid = warp_mask(np.ones(hw(original), dtype=bool), homography, hw(query))
    ops = ({"op": "benign", "group": group}, *(step.op for step in steps))
    return Transformed(query, homography, valid, np.zeros(hw(query), dtype=bool), ops)


def identity_transform(image: np.ndarray, mask: np.ndarray, ops: tuple[JsonDict, ...]) -> Transformed:
    """Ground truth of a query that is `image` itself: identity homography, every pixel valid."""
    return Transformed(image, np.eye(3), np.ones(hw(image), dtype=bool), mask, ops)


def carry_edit(edit: Edit, benign: Transformed) -> Transformed:
    """An edit followed by a benign transform of the edited image (Manip+Benign).

    The edit mask is warped with the benign homography (nearest neighbour) and AND-ed with valid.
    """
    mask = warp_mask(edit.mask, benign.homography, hw(benign.image)) & benign.valid
    return Transformed(benign.image, benign.homography, benign.valid, mask, (edit.op, *benign.ops))


def carry_pastes(pastes: Sequence[DonorPaste], benign: Transformed) -> tuple[DonorPaste, ...]:
    """Donor records of an edit, moved into the frame of a benign transform of the edited image."""
    return tuple(
        DonorPaste(
            source_box=paste.source_box,
            query_box=_bounding_box(apply_homography(benign.homography, _box_corners(paste.query_box))),
            homography=benign.homography @ paste.homography,
            mask=warp_mask(paste.mask, benign.homography, hw(benign.image)) & benign.valid,
        )
        for paste in pastes
    )


def _box_corners(box: Box) -> np.ndarray:
    left, top, right, bottom = box
    return np.array([[left, top], [right - 1, top], [left, bottom - 1], [right - 1, bottom - 1]], float)


def _bounding_box(points: np.ndarray) -> Box:
    low = np.floor(points.min(axis=0)).astype(int)
    high = np.ceil(points.max(axis=0)).astype(int) + 1
    return (int(low[0]), int(low[1]), int(high[0]), int(high[1]))


# --- regions ---------------------------------------------------------------------------------------


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw whose logarithm is uniform in [log(low), log(high)]: small and large equally likely."""
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def sample_region(image_hw: tuple[int, int], rng: np.random.Generator, fraction: float) -> Region:
    """A random ellipse or star-shaped polygon of about `fraction` of the image area, inside it."""
    if rng.random() < 0.5:
        shape, mask = "ellipse", _ellipse_mask(image_hw, rng, fraction)
    else:
        shape, mask = "polygon", _polygon_mask(image_hw, rng, fraction)
    x0 = int(rng.integers(0, image_hw[1] - mask.shape[1] + 1))
    y0 = int(rng.integers(0, image_hw[0] - mask.shape[0] + 1))
    return Region(mask, x0, y0, shape)


def _fit_scale(extent_x: float, extent_y: float, image_hw: tuple[int, int]) -> float:
    """Shrink factor (<= 1) that makes a shape of this extent fit in 95 % of the image."""
    return min(1.0, 0.95 * image_hw[1] / max(extent_x, 1.0), 0.95 * image_hw[0] / max(extent_y, 1.0))


def _ellipse_mask(image_hw: tuple[int, int], rng: np.random.Generator, fraction: float) -> np.ndarray:
    area = fraction * image_hw[0] * image_hw[1]
    aspect = log_uniform(rng, 0.5, 2.0)
    semi_x = math.sqrt(area * aspect / math.pi)
    semi_y = math.sqrt(area / (aspect * math.pi))
    fit = _fit_scale(2 * semi_x + 1, 2 * semi_y + 1, image_hw)
    axes = (max(1, round(semi_x * fit)), max(1, round(semi_y * fit)))
    canvas = np.zeros((2 * axes[1] + 1, 2 * axes[0] + 1), dtype=np.uint8)
    cv2.ellipse(canvas, (axes[0], axes[1]), axes, 0.0, 0.0, 360.0, 1, thickness=-1)
    return canvas > 0


def _polygon_mask(image_hw: tuple[int, int], rng: np.random.Generator, fraction: float) -> np.ndarray:
    vertices = int(rng.integers(5, 11))
    angles = np.sort(rng.uniform(0.0, 2 * math.pi, size=vertices))
    radii = rng.uniform(0.5, 1.0, size=vertices)
    aspect = log_uniform(rng, 0.5, 2.0)
    points = np.stack(
        [np.cos(angles) * radii * math.sqrt(aspect), np.sin(angles) * radii / math.sqrt(aspect)], 1
    )
    unit_area = _polygon_area(points)
    points *= math.sqrt(fraction * image_hw[0] * image_hw[1] / max(unit_area, 1e-9))
    extent = points.max(axis=0) - points.min(axis=0) + 1
    points *= _fit_scale(extent[0], extent[1], image_hw)
    points -= points.min(axis=0)
    size = np.ceil(points.max(axis=0)).astype(int) + 1
    canvas = np.zeros((size[1], size[0]), dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas > 0


def _polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a simple polygon, points (N, 2)."""
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


# --- manipulations ---------------------------------------------------------------------------------


def changed_pixels(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels where any channel differs between two (H, W, 3) images."""
    return np.any(before != after, axis=-1)


@dataclass(frozen=True, eq=False)
class _Draft:
    """An edit before its mask is measured: support (H, W) bool = every pixel it may have written."""

    image: np.ndarray
    support: np.ndarray
    op: JsonDict
    pastes: tuple[DonorPaste, ...] = ()


def manipulate(
    image: np.ndarray,
    rng: np.random.Generator,
    kind: str | None = None,
    donor: np.ndarray | None = None,
    stamp: np.ndarray | None = None,
) -> Edit:
    """Apply one editor's change of `kind` (one of MANIP_KINDS, random when None).

    image: (H, W, 3) uint8. A splice pastes `stamp` ((h, w, 4) uint8 RGBA cut-out) when given, else
    a random ellipse/polygon cut of `donor` ((h, w, 3) uint8). Regions cover 2-25 % of the image.
    The returned mask is exactly ``(edit.image != image).any(-1)``.
    """
    if kind is None:
        kinds = MANIP_KINDS if donor is not None or stamp is not None else MANIP_KINDS[1:]
        kind = str(rng.choice(kinds))
    draft_edit = _draft_maker(kind, donor, stamp)
    best: Edit | None = None
    for _ in range(EDIT_ATTEMPTS):
        draft = draft_edit(image, rng, log_uniform(rng, *REGION_FRACTION_RANGE))
        edit = _finish_edit(image, draft)
        if best is None or edit.mask.sum() > best.mask.sum():
            best = edit
        if edit.mask.sum() >= MIN_CHANGED_SHARE * draft.support.sum():
            return edit
    assert best is not None
    return best


def _draft_maker(
    kind: str, donor: np.ndarray | None, stamp: np.ndarray | None
) -> Callable[[np.ndarray, np.random.Generator, float], _Draft]:
    if kind == "splice":
        if stamp is not None:
            return functools.partial(_splice_stamp, stamp=stamp)
        if donor is not None:
            return functools.partial(_splice_photo, donor=donor)
        raise ValueError("a splice needs a donor photo or an RGBA stamp")
    makers: dict[str, Callable[[np.ndarray, np.random.Generator, float], _Draft]] = {
        "inpaint": _inpaint,
        "copy_move": _copy_move,
        "recolour": _recolour,
        "text": _text_overlay,
        "logo": _logo_overlay,
        "blur": _local_blur,
    }
    if kind not in makers:
        raise ValueError(f"unknown manipulation {kind!r}; expected one of {MANIP_KINDS}")
    return makers[kind]


def _finish_edit(before: np.ndarray, draft: _Draft) -> Edit:
    """Measure the mask (support AND changed) and restrict every donor mask to it."""
    mask = draft.support & changed_pixels(before, draft.image)
    image_area = mask.size
    op = {**draft.op, "changed_fraction": float(mask.sum() / image_area)}
    pastes = tuple(DonorPaste(p.source_box, p.query_box, p.homography, p.mask & mask) for p in draft.pastes)
    return Edit(draft.image, mask, op, pastes)


def _paste_inside(image: np.ndarray, region: Region, patch: np.ndarray) -> np.ndarray:
    """Copy of image with patch ((h, w, 3), the region's box size) written where region.mask."""
    edited = image.copy()
    window = edited[region.y0 : region.y0 + region.height, region.x0 : region.x0 + region.width]
    window[region.mask] = patch[region.mask]
    return edited


def _where_region(image: np.ndarray, region: Region, replacement: np.ndarray) -> np.ndarray:
    """Copy of image taking replacement ((H, W, 3), full size) inside the region."""
    left, top, right, bottom = region.box
    return _paste_inside(image, region, replacement[top:bottom, left:right])


def paste_from_donor(
    host: np.ndarray, donor: np.ndarray, region: Region, scale: float, rng: np.random.Generator
) -> tuple[np.ndarray, DonorPaste]:
    """Cut a region-shaped piece of donor at a random place and paste it into host at the region.

    scale: host pixels per donor pixel (the source box is clamped to the donor's size).
    Returns the edited (H, W, 3) uint8 host and the paste record (mask = the region's support).
    """
    donor_h, donor_w = hw(donor)
    source_w = max(1, min(donor_w, round(region.width / scale)))
    source_h = max(1, min(donor_h, round(region.height / scale)))
    sx0 = int(rng.integers(0, donor_w - source_w + 1))
    sy0 = int(rng.integers(0, donor_h - source_h + 1))
    piece = donor[sy0 : sy0 + source_h, sx0 : sx0 + source_w]
    patch = piece if piece.shape[:2] == region.mask.shape else _resize(piece, region.width, region.height)
    homography = (
        translation(region.x0, region.y0)
        @ resize_matrix((source_h, source_w), (region.height, region.width))
        @ translation(-sx0, -sy0)
    )
    source_box = (sx0, sy0, sx0 + source_w, sy0 + source_h)
    paste = DonorPaste(source_box, region.box, homography, region.full_mask(hw(host)))
    return _paste_inside(host, region, patch), paste


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return resize_to(image, width, height).image


def _splice_photo(image: np.ndarray, rng: np.random.Generator, fraction: float, donor: np.ndarray) -> _Draft:
    region = sample_region(hw(image), rng, fraction)
    scale = log_uniform(rng, *PASTE_SCALE_RANGE)
    edited, paste = paste_from_donor(image, donor, region, scale, rng)
    op: JsonDict = {
        "op": "manip",
        "kind": "splice",
        "source": "photo",
        "region": region.record(hw(image)),
        "source_box": list(paste.source_box),
        "scale": scale,
    }
    return _Draft(edited, paste.mask, op, (paste,))


def _splice_stamp(image: np.ndarray, rng: np.random.Generator, fraction: float, stamp: np.ndarray) -> _Draft:
    """Alpha-composite an RGBA cut-out scaled to cover about `fraction` of the image."""
    coverage = max(1, int(np.count_nonzero(stamp[..., 3])))
    height, width = hw(image)
    scale = math.sqrt(fraction * height * width / coverage)
    scale = min(scale, 0.95 * width / stamp.shape[1], 0.95 * height / stamp.shape[0])
    stamp_w = max(1, round(stamp.shape[1] * scale))
    stamp_h = max(1, round(stamp.shape[0] * scale))
    colour, alpha = _resize_premultiplied(stamp, stamp_w, stamp_h)
    x0 = int(rng.integers(0, width - stamp_w + 1))
    y0 = int(rng.integers(0, height - stamp_h + 1))
    edited, support = _alpha_composite(image, colour, alpha, x0, y0)
    op: JsonDict = {
        "op": "manip",
        "kind": "splice",
        "source": "stamp",
        "box": [x0, y0, x0 + stamp_w, y0 + stamp_h],
        "scale": scale,
    }
    return _Draft(edited, support, op)


def _resize_premultiplied(stamp: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an (h, w, 4) uint8 RGBA image; returns premultiplied colour (h', w', 3) and alpha
    (h', w') as float32 in [0, 1]. Premultiplying keeps transparent pixels' colour out of edges."""
    alpha = stamp[..., 3].astype(np.float32) / 255.0
    premultiplied = stamp[..., :3].astype(np.float32) / 255.0 * alpha[..., np.newaxis]
    shrinking = width * height < stamp.shape[0] * stamp.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    colour = cv2.resize(premultiplied, (width, height), interpolation=interpolation)
    alpha = cv2.resize(alpha, (width, height), interpolation=interpolation)
    return np.clip(colour, 0.0, 1.0), np.clip(alpha, 0.0, 1.0)


def _alpha_composite(
    image: np.ndarray, colour: np.ndarray, alpha: np.ndarray, x0: int, y0: int
) -> tuple[np.ndarray, np.ndarray]:
    """Composite premultiplied colour (h, w, 3) float with alpha (h, w) float over image at (x0, y0).

    Returns the (H, W, 3) uint8 result and the (H, W) bool support (alpha > 0 or colour > 0).
    """
    height, width = alpha.shape
    window = image[y0 : y0 + height, x0 : x0 + width].astype(np.float32)
    blended = colour * 255.0 + (1.0 - alpha[..., np.newaxis]) * window
    edited = image.copy()
    edited[y0 : y0 + height, x0 : x0 + width] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    support = np.zeros(hw(image), dtype=bool)
    support[y0 : y0 + height, x0 : x0 + width] = (alpha > 0) | np.any(colour > 0, axis=-1)
    return edited, support


def _inpaint(image: np.ndarray, rng: np.random.Generator, fraction: float) -> _Draft:
    """Object removal: fill a region from its surroundings with cv2.inpaint (Telea or Navier-Stokes)."""
    region = sample_region(hw(image), rng, fraction)
    support = region.full_mask(hw(image))
    radius = int(rng.integers(3, 10))
    method = str(rng.choice(["telea", "ns"]))
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    filled = cv2.inpaint(image, support.astype(np.uint8), radius, flag)
    op: JsonDict = {
        "op": "manip",
        "kind": "inpaint",
        "region": region.record(hw(image)),
        "radius": radius,
        "method": method,
    }
    return _Draft(_where_region(image, region, filled), support, op)


def _copy_move(image: np.ndarray, rng: np.random.Generator, fraction: float) -> _Draft:
    """Copy a region of the image to another place of the same image (not overlapping if possible)."""
    source = sample_region(hw(image), rng, fraction)
    target = _place_apart(source, hw(image), rng)
    left, top, right, bottom = source.box
    edited = _paste_inside(image, target, image[top:bottom, left:right])
    op: JsonDict = {
        "op": "manip",
        "kind": "copy_move",
        "region": target.record(hw(image)),
        "source_box": list(source.box),
    }
    return _Draft(edited, target.full_mask(hw(image)), op)


def _place_apart(region: Region, image_hw: tuple[int, int], rng: np.random.Generator) -> Region:
    """The same shape at a random new place, whose box avoids the original box when it can."""
    candidate = region
    for _ in range(20):
        x0 = int(rng.integers(0, image_hw[1] - region.width + 1))
        y0 = int(rng.integers(0, image_hw[0] - region.height + 1))
        candidate = Region(region.mask, x0, y0, region.shape)
        if _box_overlap(candidate.box, region.box) == 0:
            break
    return candidate


def _box_overlap(a: Box, b: Box) -> int:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, width) * max(0, height)


def _recolour(image: np.ndarray, rng: np.random.Generator, fraction: float) -> _Draft:
    """Shift the hue of a region by 60-300 degrees (grey pixels keep their value)."""
    region = sample_region(hw(image), rng, fraction)
    shift = float(rng.uniform(60.0, 300.0))
    left, top, right, bottom = region.box
    op: JsonDict = {"op": "manip", "kind": "recolour", "region": region.record(hw(image)), "hue_shift": shift}
    patch = _shift_hue(image[top:bottom, left:right], shift)
    return _Draft(_paste_inside(image, region, patch), region.full_mask(hw(image)), op)


def _shift_hue(pixels: np.ndarray, degrees: float) -> np.ndarray:
    """(h, w, 3) uint8 with every hue rotated by `degrees` (in float HSV: no 8-bit hue quantization)."""
    hsv = cv2.cvtColor(pixels.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + degrees) % 360.0
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _local_blur(image: np.ndarray, rng: np.random.Generator, fraction: float) -> _Draft:
    """Gaussian-blur a region (sigma 2-8) with a hard edge."""
    region = sample_region(hw(image), rng, fraction)
    sigma = float(rng.uniform(2.0, 8.0))
    blurred = cv2.GaussianBlur(image, (0, 0), sigma)
    op: JsonDict = {"op": "manip", "kind": "blur", "region": region.record(hw(image)), "sigma": sigma}
    return _Draft(_where_region(image, region, blurred), region.full_mask(hw(image)), op)


def _text_overlay(image: np.ndarray, rng: np.random.Generator, fraction: float) -> _Draft:
    """Anti-aliased cv2.putText caption whose bounding box covers about `fraction` of the image."""
    text = str(rng.choice(TEXT_WORDS))
    font = int(rng.choice(TEXT_FONTS))
    height, width = hw(image)
    (unit_w, unit_h), unit_base = cv2.getTextSize(text, font, 1.0, 1)
    font_scale = math.sqrt(fraction * height * width / (unit_w * (unit_h + unit_base)))
    font_scale = min(font_scale, 0.95 * width / unit_w, 0.95 * height / (unit_h + unit_base))
    thickness = max(1, round(font_scale * float(rng.uniform(1.0, 3.0))))
    coverage = _render_text(text, font, font_scale, thickness, hw(image))
    colour = rng.integers(0, 256, size=3)
    opacity = float(rng.uniform(0.7, 1.0))
    x0 = int(rng.integers(0, width - coverage.shape[1] + 1))
    y0 = int(rng.integers(0, height - coverage.shape[0] + 1))
    flat = np.broadcast_to(colour.astype(np.uint8), (*coverage.shape, 3))
    edited, support = _overlay(image, flat, coverage, opacity, x0, y0)
    op: JsonDict = {
        "op": "manip",
        "kind": "text",
        "text": text,
        "font": font,
        "font_scale": font_scale,
        "thickness": thickness,
        "colour": [int(c) for c in colour],
        "opacity": opacity,
        "box": [x0, y0, x0 + coverage.shape[1], y0 + coverage.shape[0]],
    }
    return _Draft(edited, support, op)


def _render_text(
    text: str, font: int, font_scale: float, thickness: int, limit_hw: tuple[int, int]
) -> np.ndarray:
    """(h, w) uint8 coverage of the text (255 = ink), cropped to at most limit_hw."""
    (text_w, text_h), base = cv2.getTextSize(text, font, font_scale, thickness)
    box_w = min(limit_hw[1], text_w + thickness)
    box_h = min(limit_hw[0], text_h + base + thickness)
    coverage = np.zeros((box_h, box_w), dtype=np.uint8)
    origin = (thickness // 2, text_h + thickness // 2)
    cv2.putText(coverage, text, origin, font, font_scale, 255, thickness, cv2.LINE_AA)
    return coverage


def _overlay(
    image: np.ndarray, colour: np.ndarray, coverage: np.ndarray, opacity: float, x0: int, y0: int
) -> tuple[np.ndarray, np.ndarray]:
    """Composite colour (h, w, 3) uint8 through coverage (h, w) uint8 (255 = opaque) x opacity at (x0, y0)."""
    alpha = coverage.astype(np.float32) / 255.0 * opacity
    premultiplied = colour.astype(np.float32) / 255.0 * alpha[..., np.newaxis]
    return _alpha_composite(image, premultiplied, alpha, x0, y0)


def _logo_overlay(image: np.ndarray, rng: np.random.Generator, fraction: float) -> _Draft:
    """A drawn two-colour logo (disc with a square or triangle inside), semi-transparent or opaque."""
    height, width = hw(image)
    side = max(8, min(round(math.sqrt(fraction * height * width)), round(0.95 * min(height, width))))
    outer = rng.integers(0, 256, size=3)
    inner = rng.integers(0, 256, size=3)
    glyph = str(rng.choice(["square", "triangle"]))
    colour, coverage = _draw_logo(side, outer, inner, glyph)
    opacity = float(rng.uniform(0.5, 1.0))
    x0 = int(rng.integers(0, width - side + 1))
    y0 = int(rng.integers(0, height - side + 1))
    edited, support = _overlay(image, colour, coverage, opacity, x0, y0)
    op: JsonDict = {
        "op": "manip",
        "kind": "logo",
        "glyph": glyph,
        "colours": [[int(c) for c in outer], [int(c) for c in inner]],
        "opacity": opacity,
        "box": [x0, y0, x0 + side, y0 + side],
    }
    return _Draft(edited, support, op)


def _draw_logo(side: int, outer: np.ndarray, inner: np.ndarray, glyph: str) -> tuple[np.ndarray, np.ndarray]:
    """A side x side logo: colour (side, side, 3) uint8 and disc coverage (side, side) uint8.

    The colour layer is outer everywhere with the glyph drawn over it, so anti-aliased edges blend
    only through the coverage.
    """
    colour = np.empty((side, side, 3), dtype=np.uint8)
    colour[:] = outer.astype(np.uint8)
    coverage = np.zeros((side, side), dtype=np.uint8)
    centre = side // 2
    radius = side // 2 - 1
    cv2.circle(coverage, (centre, centre), radius, 255, -1, cv2.LINE_AA)
    half = radius // 2
    if glyph == "square":
        outline = [
            [centre - half, centre - half],
            [centre + half, centre - half],
            [centre + half, centre + half],
        ]
        outline.append([centre - half, centre + half])
    else:
        outline = [[centre, centre - half], [centre - half, centre + half], [centre + half, centre + half]]
    cv2.fillPoly(colour, [np.array(outline, dtype=np.int32)], inner.tolist(), cv2.LINE_AA)
    return colour, coverage


# --- composites ------------------------------------------------------------------------------------


def composite(host: np.ndarray, donors: Sequence[np.ndarray], rng: np.random.Generator) -> Edit:
    """Paste a region of each donor photo into host (COCO-Fake / PIR style).

    host: (H, W, 3) uint8; donors: 1-3 images (h, w, 3) uint8. Each region covers 2-15 % of the
    host, scaled by 0.67-1.5, placed apart from earlier ones when it can. ``pastes[i].mask`` holds
    the pixels that come from donor i in the final image (later pastes win); the masks are disjoint
    and their union is the edit mask.
    """
    if not donors:
        raise ValueError("a composite needs at least one donor")
    edited = host
    pastes: list[DonorPaste] = []
    covered = np.zeros(hw(host), dtype=bool)
    for donor in donors:
        region = _region_apart(hw(host), covered, rng, log_uniform(rng, *COMPOSITE_FRACTION_RANGE))
        edited, paste = paste_from_donor(edited, donor, region, log_uniform(rng, *PASTE_SCALE_RANGE), rng)
        pastes.append(paste)
        covered |= paste.mask
    changed = changed_pixels(host, edited)
    final_pastes = _latest_owner_masks(pastes, changed)
    op: JsonDict = {
        "op": "manip",
        "kind": "composite",
        "donors": [
            {
                "source_box": list(p.source_box),
                "query_box": list(p.query_box),
                "fraction": float(p.mask.mean()),
            }
            for p in final_pastes
        ],
        "changed_fraction": float(changed.mean()),
    }
    return Edit(edited, changed, op, final_pastes)


def _region_apart(
    image_hw: tuple[int, int], covered: np.ndarray, rng: np.random.Generator, fraction: float
) -> Region:
    """A region that overlaps `covered` ((H, W) bool) the least of up to 20 draws (stops at zero)."""
    best: Region | None = None
    best_overlap = math.inf
    for _ in range(20):
        region = sample_region(image_hw, rng, fraction)
        left, top, right, bottom = region.box
        overlap = int(np.count_nonzero(covered[top:bottom, left:right] & region.mask))
        if overlap < best_overlap:
            best, best_overlap = region, overlap
        if overlap == 0:
            break
    assert best is not None
    return best


def _latest_owner_masks(pastes: Sequence[DonorPaste], changed: np.ndarray) -> tuple[DonorPaste, ...]:
    """Give each pixel to the last paste that wrote it, keeping only changed pixels."""
    taken = np.zeros_like(changed)
    owned: list[DonorPaste] = []
    for paste in reversed(pastes):
        mask = paste.mask & ~taken & changed
        taken |= paste.mask
        owned.append(DonorPaste(paste.source_box, paste.query_box, paste.homography, mask))
    return tuple(reversed(owned))
