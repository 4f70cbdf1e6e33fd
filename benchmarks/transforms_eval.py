"""A second benign-transform family, for EVALUATION ONLY: compare's calibration never sees it.

`benchmarks.transforms.benign_transform` (the training family) resizes with OpenCV, re-encodes
with Pillow's default JPEG settings, then applies ImageNet-C corruptions and OpenCV warps. This
family makes benign copies by other code paths and with other parameter ranges, the way copies
are made outside the lab:

* resampling: Pillow's Lanczos, bicubic, bilinear or box filters, or OpenCV's cubic and Lanczos,
  shrinking and enlarging (scale 0.3 to 1.25);
* out of place: crops of 70-97 % of the area; rotations by up to 12 degrees on an expanded canvas
  (Pillow's affine resampler) with black, white or a random fill; pads of any solid colour, up to
  30 % of a side each; mirroring; screenshot-like framing (bars with text, margins); a mild
  re-photographed screen (a slight perspective, vignetting, defocus, sensor noise, faint moire);
* in place: brightness, contrast and gamma with clipping and a white-balance shift; unsharp
  masking; saturation changes and a YCbCr round trip; chroma subsampling; Gaussian, Poisson-like
  or salt noise; Gaussian, box or median blur;
* encoding: one JPEG (quality 35-95, 4:4:4, 4:2:2 or 4:2:0 chroma) or a social-media chain of
  2-3 downscale + JPEG rounds.

Every copy draws from its own generator (`numpy.random.default_rng([seed, kind code, index])`),
so a seed gives byte-identical pairs. `generate_eval_pairs` writes Benign, Manip, Manip+Benign and
Distinct pairs in the format of `benchmarks.queries` (the edits are those of the training family's
generator, `benchmarks.queries._manip_edit`), so `bench_compare` scores both families alike.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from benchmarks.queries import (
    PAIR_LABELS,
    Pair,
    _manip_edit,
    _photos,
    _pick,
    _Sample,
    _write_pair,
    _write_png,
    load_rgb,
)
from benchmarks.transforms import (
    Step,
    Transformed,
    carry_edit,
    compose_steps,
    flip_matrix,
    hw,
    identity_transform,
    translation,
)

EVAL_GENERATOR_VERSION = 1
"""Bumped whenever a change alters the pairs written from the same photos and seed."""
FAMILY = "eval"
SCALE_RANGE = (0.3, 1.25)
PIL_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
}
CV_FILTERS = {"cv-cubic": cv2.INTER_CUBIC, "cv-lanczos": cv2.INTER_LANCZOS4}
CROP_AREA_RANGE = (0.70, 0.97)
ROTATION_MAX_DEGREES = 12.0
PAD_MAX_FRACTION = 0.30
JPEG_QUALITY_RANGE = (35, 95)
SUBSAMPLINGS = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
GEOMETRIC = ("crop", "mirror", "rotate")
PHOTOMETRIC = ("tone", "sharpen", "colour", "chroma", "noise", "blur")
FRAMING = ("pad", "screenshot", "rephoto")
EVAL_TRANSFORMS = ("resize", *GEOMETRIC, *PHOTOMETRIC, *FRAMING, "jpeg", "social")
"""The names a benign copy of this family records in its ops' "transform" key."""
MAX_EXTRA_TRANSFORMS = 3


# --- geometry in Pillow's pixel convention -----------------------------------------------------------


def _pil_affine(
    image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], fill: tuple[int, int, int]
) -> np.ndarray:
    """(h, w, 3) uint8: `image` through the (3, 3) matrix (OpenCV pixel centres, input to output)
    onto a canvas of size (w, h), by Pillow's bicubic affine resampler, `fill` outside."""
    to_corner = translation(0.5, 0.5)
    inverse = np.linalg.inv(to_corner @ matrix @ np.linalg.inv(to_corner))
    coefficients = tuple(float(v) for v in inverse[:2].ravel())
    warped = Image.fromarray(image).transform(
        size, Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BICUBIC, fillcolor=fill
    )
    return np.asarray(warped).copy()


def _pil_perspective(image: np.ndarray, matrix: np.ndarray, fill: tuple[int, int, int]) -> np.ndarray:
    """(H, W, 3) uint8: `image` through the (3, 3) homography (OpenCV pixel centres) on its own
    canvas, by Pillow's bilinear perspective resampler."""
    to_corner = translation(0.5, 0.5)
    inverse = np.linalg.inv(to_corner @ matrix @ np.linalg.inv(to_corner))
    inverse = inverse / inverse[2, 2]
    coefficients = tuple(float(v) for v in inverse.ravel()[:8])
    height, width = hw(image)
    warped = Image.fromarray(image).transform(
        (width, height), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR, fillcolor=fill
    )
    return np.asarray(warped).copy()


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Black, white or a random solid colour."""
    draw = rng.random()
    if draw < 0.3:
        return (0, 0, 0)
    if draw < 0.6:
        return (255, 255, 255)
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


# --- the operations ----------------------------------------------------------------------------------


def resample(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Scale by U(0.3, 1.25) with a random Pillow or OpenCV filter."""
    height, width = hw(image)
    scale = float(rng.uniform(*SCALE_RANGE))
    size = (max(16, round(width * scale)), max(16, round(height * scale)))
    name = str(rng.choice([*PIL_FILTERS, *CV_FILTERS]))
    if name in PIL_FILTERS:
        resized = np.asarray(Image.fromarray(image).resize(size, PIL_FILTERS[name])).copy()
    else:
        resized = cv2.resize(image, size, interpolation=CV_FILTERS[name])
    sx, sy = size[0] / width, size[1] / height
    matrix = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return Step(resized, matrix, {"op": "resize", "transform": "resize", "filter": name, "scale": scale})


def crop_window(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Keep a window of 70-97 % of the area, anywhere."""
    height, width = hw(image)
    area = float(rng.uniform(*CROP_AREA_RANGE))
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    crop_width = min(width, round(width * math.sqrt(area * aspect)))
    crop_height = min(height, round(height * math.sqrt(area / aspect)))
    x0 = int(rng.integers(0, width - crop_width + 1))
    y0 = int(rng.integers(0, height - crop_height + 1))
    window = image[y0 : y0 + crop_height, x0 : x0 + crop_width].copy()
    op = {"op": "crop", "transform": "crop", "box": [x0, y0, x0 + crop_width, y0 + crop_height]}
    return Step(window, translation(-x0, -y0), op)


def mirror(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Mirror left to right (Pillow)."""
    flipped = np.asarray(Image.fromarray(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT)).copy()
    return Step(flipped, flip_matrix(image.shape[1]), {"op": "mirror", "transform": "mirror"})


def rotate_expanded(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Rotate by up to 12 degrees onto a canvas grown to hold the whole image, corners filled."""
    height, width = hw(image)
    degrees = float(rng.uniform(-ROTATION_MAX_DEGREES, ROTATION_MAX_DEGREES))
    radians = math.radians(degrees)
    cosine, sine = abs(math.cos(radians)), abs(math.sin(radians))
    size = (math.ceil(width * cosine + height * sine), math.ceil(width * sine + height * cosine))
    rotation = np.vstack(
        [cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0), [0, 0, 1]]
    )
    matrix = translation((size[0] - width) / 2, (size[1] - height) / 2) @ rotation
    fill = _colour(rng)
    rotated = _pil_affine(image, matrix, size, fill)
    return Step(
        rotated, matrix, {"op": "rotate", "transform": "rotate", "degrees": degrees, "fill": list(fill)}
    )


def tone(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Gamma 0.6-1.5, contrast x0.7-1.45 about mid-grey, brightness -35..+35 and a white-balance
    gain of 0.9-1.1 per channel, clipped to [0, 255] (highlights and shadows saturate)."""
    gamma = math.exp(rng.uniform(math.log(0.6), math.log(1.5)))
    contrast = float(rng.uniform(0.7, 1.45))
    brightness = float(rng.uniform(-35, 35))
    balance = rng.uniform(0.9, 1.1, size=3)
    values = 255.0 * (image.astype(np.float32) / 255.0) ** gamma
    values = (values - 128.0) * contrast + 128.0 + brightness
    toned = np.clip(values * balance, 0, 255).round().astype(np.uint8)
    op = {"op": "tone", "transform": "tone", "gamma": gamma, "contrast": contrast, "brightness": brightness}
    return Step(toned, np.eye(3), op)


def sharpen(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Pillow's unsharp mask, radius 0.8-3, 40-180 %."""
    radius, percent = float(rng.uniform(0.8, 3.0)), int(rng.integers(40, 181))
    unsharp = ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=int(rng.integers(0, 4)))
    sharpened = np.asarray(Image.fromarray(image).filter(unsharp)).copy()
    return Step(
        sharpened, np.eye(3), {"op": "sharpen", "transform": "sharpen", "radius": radius, "percent": percent}
    )


def colour(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Saturation x0.5-1.5 (Pillow), sometimes through a YCbCr round trip."""
    factor = float(rng.uniform(0.5, 1.5))
    picture = ImageEnhance.Color(Image.fromarray(image)).enhance(factor)
    via_ycbcr = bool(rng.random() < 0.5)
    if via_ycbcr:
        picture = picture.convert("YCbCr").convert("RGB")
    op = {"op": "colour", "transform": "colour", "saturation": factor, "ycbcr": via_ycbcr}
    return Step(np.asarray(picture).copy(), np.eye(3), op)


def chroma(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Chroma subsampled by 2 or 4 in YCrCb (OpenCV) and brought back with a linear filter."""
    factor = int(rng.choice([2, 4]))
    height, width = hw(image)
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    small = cv2.resize(
        ycrcb[:, :, 1:], (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA
    )
    ycrcb[:, :, 1:] = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    restored = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    return Step(restored, np.eye(3), {"op": "chroma", "transform": "chroma", "factor": factor})


def noise(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Gaussian (sigma 3-12), signal-dependent (Poisson-like) or sparse salt-and-pepper noise."""
    kind = str(rng.choice(["gaussian", "poisson", "salt"]))
    values = image.astype(np.float32)
    strength = float(rng.uniform(3.0, 12.0))
    if kind == "gaussian":
        values = values + rng.normal(0.0, strength, values.shape)
    elif kind == "poisson":
        values = values + rng.normal(0.0, 1.0, values.shape) * np.sqrt(values + 1.0) * strength / 10.0
    else:
        strength = float(rng.uniform(0.002, 0.01))
        hit = rng.random(values.shape[:2]) < strength
        values[hit] = rng.choice([0.0, 255.0], size=(int(hit.sum()), 1))
    noisy = np.clip(values, 0, 255).round().astype(np.uint8)
    return Step(noisy, np.eye(3), {"op": "noise", "transform": "noise", "kind": kind, "strength": strength})


def blur(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Pillow's Gaussian (radius 0.5-2.5) or box blur, or a 3-pixel median filter."""
    kind = str(rng.choice(["gaussian", "box", "median"]))
    radius = float(rng.uniform(0.5, 2.5))
    filters = {
        "gaussian": ImageFilter.GaussianBlur(radius),
        "box": ImageFilter.BoxBlur(radius / 2),
        "median": ImageFilter.MedianFilter(3),
    }
    blurred = np.asarray(Image.fromarray(image).filter(filters[kind])).copy()
    return Step(blurred, np.eye(3), {"op": "blur", "transform": "blur", "kind": kind, "radius": radius})


def pad_any(image: np.ndarray, rng: np.random.Generator) -> Step:
    """Pad each side by 0-30 % of its dimension with one solid colour (Pillow canvas)."""
    height, width = hw(image)
    fractions = rng.uniform(0.0, PAD_MAX_FRACTION, size=4)
    left, top, right, bottom = (
        round(fractions[0] * width),
        round(fractions[1] * height),
        round(fractions[2] * width),
        round(fractions[3] * height),
    )
    fill = _colour(rng)
    canvas = Image.new("RGB", (width + left + right, height + top + bottom), fill)
    canvas.paste(Image.fromarray(image), (left, top))
    op = {"op": "pad", "transform": "pad", "sides": [left, top, right, bottom], "colour": list(fill)}
    return Step(np.asarray(canvas).copy(), translation(left, top), op)


def screenshot(image: np.ndarray, rng: np.random.Generator) -> Step:
    """The picture framed as in a screenshot: a title bar with text above, a caption bar below and
    thin margins, in a light or dark theme."""
    height, width = hw(image)
    dark = bool(rng.random() < 0.5)
    background = (18, 18, 18) if dark else (250, 250, 250)
    ink = (230, 230, 230) if dark else (20, 20, 20)
    margin = int(rng.integers(0, max(2, width // 25)))
    top, bottom = (
        int(rng.integers(height // 12, height // 5 + 2)),
        int(rng.integers(height // 14, height // 4 + 2)),
    )
    canvas = Image.new("RGB", (width + 2 * margin, height + top + bottom), background)
    canvas.paste(Image.fromarray(image), (margin, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((margin + 8, top // 3), "@someone  2h", fill=ink)
    draw.text((margin + 8, top + height + bottom // 3), "12 likes  reply  share", fill=ink)
    op = {
        "op": "screenshot",
        "transform": "screenshot",
        "margin": margin,
        "bars": [top, bottom],
        "dark": dark,
    }
    return Step(np.asarray(canvas).copy(), translation(margin, top), op)


def rephoto(image: np.ndarray, rng: np.random.Generator) -> Step:
    """A mild re-photographed screen: corners moved by up to 3 % (Pillow perspective), vignetting,
    a faint moire pattern, defocus (sigma 0.5-1.2) and sensor noise (sigma 1.5-4)."""
    height, width = hw(image)
    corners = np.float32([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]])
    jitter = rng.uniform(-0.03, 0.03, size=(4, 2)) * np.float32([width, height])
    moved = (corners + jitter).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(corners, moved).astype(np.float64)
    fill = tuple(int(c) for c in rng.integers(0, 60, size=3))
    warped = _pil_perspective(image, matrix, fill).astype(np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = np.hypot((xs - width / 2) / width, (ys - height / 2) / height)
    vignette = 1.0 - float(rng.uniform(0.1, 0.3)) * radius**2
    period = float(rng.uniform(3.0, 7.0))
    moire = 1.0 + 0.02 * np.sin(2 * np.pi * (xs * 0.97 + ys * 0.23) / period)
    shot = cv2.GaussianBlur(warped * (vignette * moire)[:, :, None], (0, 0), float(rng.uniform(0.5, 1.2)))
    shot = shot + rng.normal(0.0, float(rng.uniform(1.5, 4.0)), shot.shape)
    result = np.clip(shot, 0, 255).round().astype(np.uint8)
    return Step(
        result, matrix, {"op": "rephoto", "transform": "rephoto", "corners": jitter.round(2).tolist()}
    )


def jpeg(image: np.ndarray, rng: np.random.Generator) -> Step:
    """One Pillow JPEG at quality 35-95 with 4:4:4, 4:2:2 or 4:2:0 chroma."""
    quality = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
    subsampling = str(rng.choice(list(SUBSAMPLINGS)))
    encoded = _jpeg_round_trip(image, quality, SUBSAMPLINGS[subsampling])
    return Step(
        encoded,
        np.eye(3),
        {"op": "jpeg", "transform": "jpeg", "quality": quality, "subsampling": subsampling},
    )


def social_chain(image: np.ndarray, rng: np.random.Generator) -> Step:
    """2-3 rounds of a platform's upload: shrink the long side to a platform size (never enlarge)
    with Pillow's Lanczos, then JPEG 60-85 at 4:2:0."""
    matrix = np.eye(3)
    rounds = int(rng.integers(2, 4))
    qualities = []
    for _ in range(rounds):
        height, width = hw(image)
        long_side = int(rng.choice([1080, 960, 720, 640, 480]))
        scale = min(1.0, long_side / max(height, width))
        size = (max(16, round(width * scale)), max(16, round(height * scale)))
        if size != (width, height):
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS)).copy()
            sx, sy = size[0] / width, size[1] / height
            matrix = (
                np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]]) @ matrix
            )
        qualities.append(int(rng.integers(60, 86)))
        image = _jpeg_round_trip(image, qualities[-1], SUBSAMPLINGS["4:2:0"])
    return Step(image, matrix, {"op": "social", "transform": "social", "qualities": qualities})


def _jpeg_round_trip(image: np.ndarray, quality: int, subsampling: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB")).copy()


OPERATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], Step]] = {
    "crop": crop_window,
    "mirror": mirror,
    "rotate": rotate_expanded,
    "tone": tone,
    "sharpen": sharpen,
    "colour": colour,
    "chroma": chroma,
    "noise": noise,
    "blur": blur,
    "pad": pad_any,
    "screenshot": screenshot,
    "rephoto": rephoto,
}


# --- the copy ----------------------------------------------------------------------------------------


def eval_benign_transform(image: np.ndarray, rng: np.random.Generator) -> Transformed:
    """A benign copy of this family: a resampling, 1-3 other operations drawn without replacement
    (applied in the order geometric, photometric, framing; at most one framing), then one JPEG or a
    social-media chain. image: (H, W, 3) uint8; the result's mask is all False."""
    chosen = set(
        rng.choice(list(OPERATIONS), size=int(rng.integers(1, MAX_EXTRA_TRANSFORMS + 1)), replace=False)
    )
    framing = [name for name in FRAMING if name in chosen]
    chosen -= set(framing[1:])
    steps = [resample(image, rng)]
    for name in (*GEOMETRIC, *PHOTOMETRIC, *FRAMING):
        if name in chosen:
            steps.append(OPERATIONS[name](steps[-1].image, rng))
    encode = social_chain if rng.random() < 0.3 else jpeg
    steps.append(encode(steps[-1].image, rng))
    return compose_steps(image, steps, FAMILY)


def transforms_present(ops: Sequence[dict]) -> tuple[str, ...]:
    """The benign transforms a pair's ops record, of either family, by the names of the per-transform
    table: this family's "transform" keys, and for the training family its ops (a corruption by its
    name, "flip" as "mirror")."""
    names = []
    for op in ops:
        if "transform" in op:
            names.append(str(op["transform"]))
        elif op.get("op") == "corruption":
            names.append(str(op.get("name")))
        elif op.get("op") in ("resize", "jpeg", "crop", "pad", "rotate", "flip"):
            names.append("mirror" if op["op"] == "flip" else str(op["op"]))
    return tuple(dict.fromkeys(names))


# --- pairs -------------------------------------------------------------------------------------------


def generate_eval_pairs(
    originals: dict[str, Path],
    held_out: dict[str, Path],
    stamps: Sequence[Path],
    kind: str,
    count: int,
    seed: int,
    out_dir: Path,
) -> list[Pair]:
    """`count` pairs of `kind` (benign, manip, manip+benign or distinct) of this family, files under
    out_dir (call `benchmarks.queries.save_pairs` to keep them)."""
    photos = _photos(originals, held_out, {}, stamps)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(count):
        rng = np.random.default_rng([seed, zlib.crc32(f"eval-pair:{kind}".encode()), index])
        pair_id = f"pair-eval-{kind.replace('+', '_')}-{index:05d}"
        if kind == "distinct":
            pairs.append(_distinct_pair(pair_id, photos, rng, out_dir))
            continue
        pairs.append(_write_pair(pair_id, kind, _sample(kind, photos, rng), photos, out_dir))
    return pairs


def _sample(kind: str, photos, rng: np.random.Generator) -> _Sample:
    if kind == "benign":
        original_id = _pick(photos.originals, rng)
        copy = eval_benign_transform(load_rgb(photos.originals[original_id]), rng)
        return _Sample(copy, original_id, (), ())
    original_id, edit, _ = _manip_edit(photos, rng)
    if kind == "manip":
        return _Sample(identity_transform(edit.image, edit.mask, (edit.op,)), original_id, (), ())
    return _Sample(carry_edit(edit, eval_benign_transform(edit.image, rng)), original_id, (), ())


def _distinct_pair(pair_id: str, photos, rng: np.random.Generator, out_dir: Path) -> Pair:
    original_id = _pick(photos.originals, rng)
    other_id = _pick(photos.held_out, rng) if photos.held_out else _pick(photos.originals, rng, original_id)
    other_path = (photos.held_out or photos.originals)[other_id]
    copy = eval_benign_transform(load_rgb(other_path), rng)
    return Pair(
        pair_id=pair_id,
        kind="distinct",
        label=PAIR_LABELS["distinct"],
        query_path=_write_png(out_dir / f"{pair_id}.png", copy.image),
        original_id=original_id,
        original_path=photos.originals[original_id],
        mask_path=_write_png(out_dir / f"{pair_id}_mask.png", np.ones(copy.mask.shape, dtype=bool)),
        valid_path=None,
        homography=None,
        ops=({"op": "distinct", "query_source": other_id}, *copy.ops),
    )
