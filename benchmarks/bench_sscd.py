"""Speed and robustness of the SSCD global descriptors at several input sizes.

Speed: images/s for 1-megapixel JPEGs (mixed aspect ratios) in batches, decode reported apart.
Robustness: scikit-image's photos are the originals; each gets benign copies (JPEG q40, half size,
90% crop, 10% pad, 10 degree rotation, horizontal flip, Gaussian noise, blur, and JPEG + half size +
rotation together). For every copy, margin = cos(copy, its original) - max cos(copy, other originals).

    python -m benchmarks.bench_sscd [--sizes 224 288 320 384 448 512] [--threads 2]

Prints markdown tables and writes them as the "sscd_speed" section of docs/benchmarks.md. Speeds are
the best of several repeats. CPU milliseconds per image on one
thread are reported next to the wall clock because they change much less when other processes share
the cores.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import onnxruntime as ort
import skimage.data
from PIL import Image, ImageFilter

from benchmarks.report import write_section
from imgprov.extract.sscd import (
    EMBEDDING_DIM,
    EMBEDDING_OUTPUT,
    GLOBAL_PRESETS,
    IMAGE_INPUT,
    GlobalConf,
    ModelName,
    SSCDExtractor,
    available_cores,
    model_path,
    resize_square,
    session_options,
)
from imgprov.images import load_image

PHOTO_NAMES = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
"""Photos of skimage.data that need no download. `cat` is `chelsea` again and `motorcycle_right` is a
near-duplicate of `motorcycle_left`, so they are left out."""

MEGAPIXEL_ASPECTS = ((4, 3), (3, 4), (16, 9), (1, 1), (3, 2), (2, 3))
MODELS: tuple[ModelName, ...] = ("sscd", "sscd_distilled")
LETTERBOX_FILL = (124, 116, 104)
"""The ImageNet mean colour, which the graphs normalize to about zero."""

Resize = Callable[[np.ndarray], np.ndarray]
Embed = Callable[[Sequence[np.ndarray]], np.ndarray]
"""images -> (B, 512) float32, L2-normalized."""


def photos() -> list[np.ndarray]:
    """The originals: (H, W, 3) uint8 RGB, grey photos repeated over three channels."""
    images = [getattr(skimage.data, name)() for name in PHOTO_NAMES]
    images.append(skimage.data.stereo_motorcycle()[0])
    return [np.ascontiguousarray(np.dstack([i] * 3) if i.ndim == 2 else i[..., :3]) for i in images]


def jpeg(image: np.ndarray, quality: int = 40) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def half_size(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.resize(image, (width // 2, height // 2), interpolation=cv2.INTER_AREA)


def crop_90_percent_area(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    side = 0.9**0.5
    crop_h, crop_w = int(height * side), int(width * side)
    top, left = (height - crop_h) // 3, (width - crop_w) // 3
    return image[top : top + crop_h, left : left + crop_w].copy()


def pad_10_percent(image: np.ndarray) -> np.ndarray:
    border = round(0.05 * max(image.shape[:2]))
    return cv2.copyMakeBorder(image, border, border, border, border, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def rotate_10_degrees(image: np.ndarray) -> np.ndarray:
    """Rotation about the centre, same canvas: the corners are cut and filled with black."""
    return np.asarray(Image.fromarray(image).rotate(10, resample=Image.Resampling.BILINEAR))


def hflip(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


def gaussian_noise(image: np.ndarray) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0.0, 15.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def blur(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)))


def jpeg_half_rotate(image: np.ndarray) -> np.ndarray:
    return rotate_10_degrees(half_size(jpeg(image)))


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "jpeg q40": jpeg,
    "resize 0.5": half_size,
    "crop 90% area": crop_90_percent_area,
    "pad 10%": pad_10_percent,
    "rotate 10 deg": rotate_10_degrees,
    "hflip": hflip,
    "noise sigma 15": gaussian_noise,
    "blur sigma 2": blur,
    "jpeg+resize+rotate": jpeg_half_rotate,
}


def megapixel_jpegs(originals: Sequence[np.ndarray], count: int) -> list[bytes]:
    """`count` JPEGs (q90) of about 1 megapixel in mixed aspect ratios, with camera-like noise."""
    rng = np.random.default_rng(1)
    encoded = []
    for index in range(count):
        aspect_w, aspect_h = MEGAPIXEL_ASPECTS[index % len(MEGAPIXEL_ASPECTS)]
        height = round((1e6 * aspect_h / aspect_w) ** 0.5)
        width = round(1e6 / height)
        image = cv2.resize(originals[index % len(originals)], (width, height), interpolation=cv2.INTER_CUBIC)
        noisy = np.clip(image + rng.normal(0.0, 4.0, image.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


@dataclass(frozen=True)
class Timing:
    """Fastest of several runs: wall-clock seconds and CPU seconds of all this process's threads."""

    wall: float
    cpu: float


def timed(run: Callable[[], object], repeats: int) -> Timing:
    """Best of `repeats` runs after one warm-up: the least disturbed by other processes."""
    run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(wall=min(walls), cpu=min(cpus))


def decode_loader(data: bytes) -> np.ndarray:
    return load_image(data).pixels


def decode_pil_draft(data: bytes, size: int) -> np.ndarray:
    """PIL with JPEG DCT scaling: decodes at 1/2, 1/4 or 1/8 scale while both sides stay >= size."""
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (size, size))
    return np.asarray(image.convert("RGB"))


def decode_opencv(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Robustness:
    """Over every (original, transform) copy: cosine to its original and margin over the best other."""

    mean_cosine: float
    mean_margin: float
    min_margin: float
    top1: float
    per_transform: dict[str, tuple[float, float]]


def robustness(
    embed: Embed, originals: Sequence[np.ndarray], copies: dict[str, list[np.ndarray]]
) -> Robustness:
    original_embeddings = embed(originals)
    cosines, margins, per_transform = [], [], {}
    for name, transformed in copies.items():
        similarity = embed(transformed) @ original_embeddings.T
        own = np.diag(similarity).copy()
        np.fill_diagonal(similarity, -np.inf)
        margin = own - similarity.max(axis=1)
        cosines.append(own)
        margins.append(margin)
        per_transform[name] = (float(own.mean()), float(margin.mean()))
    all_cosines, all_margins = np.concatenate(cosines), np.concatenate(margins)
    return Robustness(
        mean_cosine=float(all_cosines.mean()),
        mean_margin=float(all_margins.mean()),
        min_margin=float(all_margins.min()),
        top1=float((all_margins > 0).mean()),
        per_transform=per_transform,
    )


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
    """Aspect-preserving resize so that the short side is `size`."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    target = (max(size, round(width * scale)), max(size, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), target, interpolation=interpolation)


def letterbox(images: Sequence[np.ndarray]) -> np.ndarray:
    """(b, H, W, 3) uint8: each image at the top left of the largest canvas, the rest mean colour."""
    height = max(i.shape[0] for i in images)
    width = max(i.shape[1] for i in images)
    canvas = np.empty((len(images), height, width, 3), np.uint8)
    canvas[:] = LETTERBOX_FILL
    for slot, image in zip(canvas, images, strict=True):
        slot[: image.shape[0], : image.shape[1]] = image
    return canvas


class ShortSideEmbedder:
    """Aspect-preserving SSCD embeddings, for comparison with the extractor's square resize."""

    def __init__(self, model: ModelName, size: int, threads: int, batch_size: int):
        self.session = ort.InferenceSession(
            str(model_path(model)), session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.size = size
        self.batch_size = batch_size

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([EMBEDDING_OUTPUT], {IMAGE_INPUT: batch})[0]

    def embed_grouped(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Images of the same resized shape share batches; (B, 512) float32 in input order."""
        resized = [resize_short_side(i, self.size) for i in images]
        embeddings = np.zeros((len(images), EMBEDDING_DIM), np.float32)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(resized):
            by_shape.setdefault(image.shape, []).append(index)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                embeddings[chunk] = self.run(np.stack([resized[i] for i in chunk]))
        return embeddings

    def embed_letterboxed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Consecutive images share a batch, padded to a common canvas; (B, 512) float32."""
        resized = [resize_short_side(i, self.size) for i in images]
        chunks = [resized[s : s + self.batch_size] for s in range(0, len(resized), self.batch_size)]
        return np.concatenate([self.run(letterbox(chunk)) for chunk in chunks])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class Speed:
    """Per-image cost of resize + inference on the megapixel set.

    resize_ms, infer_ms: CPU milliseconds per image on one thread, which depend much less than the
        wall clock on what else runs on the machine.
    wall_rate: images/s with every thread, measured on this machine as it is (maybe shared).
    """

    resize_ms: float
    infer_ms: float
    wall_rate: float

    def cores_rate(self, cores: int, decode_ms: float = 0.0) -> float:
        """Images/s of `cores` idle cores each running decode + resize + inference on its own images."""
        return 1000 * cores / (decode_ms + self.resize_ms + self.infer_ms)


@dataclass(frozen=True)
class SpeedSet:
    """The decoded megapixel images and how to time work on them."""

    images: list[np.ndarray]
    decode_ms: float
    threads: int
    repeats: int

    def measure(self, make_embed: Callable[[int], Embed], resize: Resize) -> Speed:
        """make_embed: intra-op threads -> an embedding function that resizes with `resize`."""
        count = len(self.images)
        resize_cpu = timed(lambda: [resize(image) for image in self.images], self.repeats).cpu
        one_thread = make_embed(1)
        embed_cpu = timed(lambda: one_thread(self.images), self.repeats).cpu
        all_threads = make_embed(self.threads)
        wall = timed(lambda: all_threads(self.images), self.repeats).wall
        return Speed(
            resize_ms=1000 * resize_cpu / count,
            infer_ms=1000 * max(embed_cpu - resize_cpu, 0.0) / count,
            wall_rate=count / wall,
        )


def decode_table(jpegs: Sequence[bytes], extractor: SSCDExtractor, repeats: int) -> str:
    """Single-threaded decode speed of each decoder, and how much its pixels change the embedding."""
    size = extractor.conf.input_size
    decoders: dict[str, Callable[[bytes], np.ndarray]] = {
        "imgprov.images.load_image (PIL, full size)": decode_loader,
        "OpenCV imdecode (full size)": decode_opencv,
        f"PIL draft (DCT scaling, sides >= {size})": partial(decode_pil_draft, size=size),
    }
    reference = extractor.embed([decode_loader(data) for data in jpegs])
    rows = []
    for name, decode in decoders.items():
        timing = timed(lambda decode=decode: [decode(data) for data in jpegs], repeats)
        per_image = min(timing.wall, timing.cpu) / len(jpegs)
        cosine = float(np.sum(extractor.embed([decode(data) for data in jpegs]) * reference, axis=1).min())
        rows.append((name, f"{1000 * per_image:.1f}", f"{cosine:.4f}"))
    return markdown_table(("decoder", "ms/img", f"min cos vs full decode ({extractor.conf.name})"), rows)


def square_embedder(conf: GlobalConf) -> Callable[[int], Embed]:
    return lambda threads: SSCDExtractor(conf, intra_op_threads=threads).embed


def short_side_embedder(conf: GlobalConf, letterboxed: bool = False) -> Callable[[int], Embed]:
    def make(threads: int) -> Embed:
        embedder = ShortSideEmbedder(conf.model, conf.input_size, threads, conf.batch_size)
        return embedder.embed_letterboxed if letterboxed else embedder.embed_grouped

    return make


def size_sweep_rows(
    model: ModelName,
    sizes: Sequence[int],
    batch_size: int,
    speed_set: SpeedSet,
    originals: Sequence[np.ndarray],
    copies: dict[str, list[np.ndarray]],
) -> list[tuple[object, ...]]:
    """One row per (resize rule, size): speed on the megapixel set and robustness on the photos."""
    rows = []
    cores = speed_set.threads
    for size in sizes:
        conf = GlobalConf(name=f"bench-{size}", model=model, input_size=size, batch_size=batch_size)
        rules = {
            "square": (square_embedder(conf), partial(resize_square, size=size)),
            "short side": (short_side_embedder(conf), partial(resize_short_side, size=size)),
        }
        for rule, (make_embed, resize) in rules.items():
            speed = speed_set.measure(make_embed, resize)
            scores = robustness(make_embed(speed_set.threads), originals, copies)
            rows.append(
                (
                    model,
                    rule,
                    size,
                    f"{speed.resize_ms:.1f} + {speed.infer_ms:.1f}",
                    f"{speed.cores_rate(cores):.0f}",
                    f"{speed.cores_rate(cores, speed_set.decode_ms):.0f}",
                    f"{speed.wall_rate:.1f}",
                    f"{scores.mean_cosine:.3f}",
                    f"{scores.mean_margin:.3f}",
                    f"{scores.min_margin:+.3f}",
                    f"{scores.top1:.3f}",
                )
            )
            print(f"  {model} {rule} {size}: done", flush=True)
    return rows


def per_transform_table(
    presets: Sequence[GlobalConf],
    threads: int,
    originals: Sequence[np.ndarray],
    copies: dict[str, list[np.ndarray]],
) -> str:
    rows = []
    for conf in presets:
        scores = robustness(SSCDExtractor(conf, intra_op_threads=threads).embed, originals, copies)
        for name, (cosine, margin) in scores.per_transform.items():
            rows.append((conf.name, name, f"{cosine:.3f}", f"{margin:.3f}"))
    return markdown_table(("preset", "copy", "mean cos to original", "mean margin"), rows)


def batching_table(presets: Sequence[GlobalConf], speed_set: SpeedSet) -> str:
    """Mixed aspect ratios: square resize vs short side grouped by shape vs short side letterboxed."""
    rows = []
    for conf in presets:
        grouped = short_side_embedder(conf)(speed_set.threads)(speed_set.images)
        letterboxed = short_side_embedder(conf, letterboxed=True)(speed_set.threads)(speed_set.images)
        cosines = np.sum(grouped * letterboxed, axis=1)
        short_side = partial(resize_short_side, size=conf.input_size)
        strategies = {
            "square resize": (square_embedder(conf), partial(resize_square, size=conf.input_size), "-"),
            "short side, grouped by shape": (short_side_embedder(conf), short_side, "1"),
            "short side, letterboxed": (
                short_side_embedder(conf, letterboxed=True),
                short_side,
                f"mean {cosines.mean():.3f}, min {cosines.min():.3f}",
            ),
        }
        for name, (make_embed, resize, cosine) in strategies.items():
            speed = speed_set.measure(make_embed, resize)
            rows.append(
                (conf.name, name, f"{speed.resize_ms + speed.infer_ms:.1f}", f"{speed.wall_rate:.1f}", cosine)
            )
    header = ("preset", "batching", "CPU ms/img", "wall img/s", "cos vs unpadded")
    return markdown_table(header, rows)


def batch_size_table(presets: Sequence[GlobalConf], speed_set: SpeedSet) -> str:
    rows = []
    for conf in presets:
        for batch_size in (1, 2, 4, 8, 16):
            sized = GlobalConf(
                name=conf.name, model=conf.model, input_size=conf.input_size, batch_size=batch_size
            )
            speed = speed_set.measure(square_embedder(sized), partial(resize_square, size=conf.input_size))
            rows.append(
                (conf.name, batch_size, f"{speed.resize_ms + speed.infer_ms:.1f}", f"{speed.wall_rate:.1f}")
            )
    return markdown_table(("preset", "batch size", "CPU ms/img", "wall img/s"), rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 288, 320, 384, 448, 512])
    parser.add_argument("--threads", type=int, default=available_cores())
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--jpegs", type=int, default=24, help="1-megapixel JPEGs in the speed set")
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cv2.setNumThreads(1)
    originals = photos()
    copies = {name: [transform(image) for image in originals] for name, transform in TRANSFORMS.items()}
    jpegs = megapixel_jpegs(originals, args.jpegs)
    decode = timed(lambda: [decode_loader(data) for data in jpegs], args.repeats)
    speed_set = SpeedSet(
        images=[decode_loader(data) for data in jpegs],
        decode_ms=1000 * min(decode.wall, decode.cpu) / len(jpegs),
        threads=args.threads,
        repeats=args.repeats,
    )
    presets = list(GLOBAL_PRESETS.values())
    load_before = os.getloadavg()[0]

    sweep = []
    for model in MODELS:
        sweep += size_sweep_rows(model, args.sizes, args.batch_size, speed_set, originals, copies)
    cores = args.threads
    sweep_header = (
        "model",
        "resize",
        "size",
        "CPU ms/img resize + infer",
        f"img/s resize+infer, {cores} cores",
        f"img/s decode+resize+infer, {cores} cores",
        f"wall img/s resize+infer, {cores} threads",
        "mean cos copy-original",
        "mean margin",
        "min margin",
        "top-1",
    )
    load_after = os.getloadavg()[0]
    lines: list[str] = []

    def out(*parts: str, end: str = "\n") -> None:
        print(*parts, end=end)
        lines.append(" ".join(parts) + end)

    out(f"\nonnxruntime {ort.__version__}; load average {load_before:.2f} before, {load_after:.2f} after")
    out(f"{len(originals)} originals x {len(TRANSFORMS)} copies; {len(jpegs)} JPEGs of 1 megapixel,", end=" ")
    out(f"mean {sum(map(len, jpegs)) / len(jpegs) / 1024:.0f} KiB, aspect ratios {MEGAPIXEL_ASPECTS}")
    out(f"decode with imgprov.images.load_image: {speed_set.decode_ms:.1f} ms/img")
    out("\n### Input size sweep\n")
    out(markdown_table(sweep_header, sweep))
    out(
        f"\nCPU ms: one thread's CPU time. 'img/s, {cores} cores' = {cores} x 1000 / CPU ms: {cores} idle"
        " cores each embedding its own images. The wall column is this machine as it was (see load average)."
    )
    out("\n### Decoding 1-megapixel JPEGs (single thread)\n")
    out(decode_table(jpegs, SSCDExtractor(presets[0], intra_op_threads=args.threads), args.repeats))
    out("\n### Copies, per transform, at the presets\n")
    out(per_transform_table(presets, args.threads, originals, copies))
    out("\n### Batching images of mixed aspect ratios\n")
    out(batching_table(presets, speed_set))
    out("\n### Batch size\n")
    out(batch_size_table(presets, speed_set))
    command = " ".join(["python -m benchmarks.bench_sscd", *map(shlex.quote, sys.argv[1:])])
    out(f"\n- command: `{command}`")
    out(f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"wrote {write_section('sscd_speed', ''.join(lines), {'sweep': sweep})}")


if __name__ == "__main__":
    main()
