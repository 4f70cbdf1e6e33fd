"""Speed of the EfficientNet-Lite0 feature maps and embeddings (imgprov.extract.effnet) on the CPU.

Inputs are 1-megapixel RGB photos (scikit-image's, enlarged to 4:3), so every one lands on the same
canvas (512 x 384 or 768 x 576) and `embed` can batch them. Times include the resize from 1 megapixel.
Also reported: building the ONNX graph from the state dict (cold cache) and loading it (warm cache).

    .venv/bin/python benchmarks/bench_effnet.py [--sides 512 768] [--threads 1 2] [--repeats 5]

Prints markdown tables. Speeds are the best of several repeats; CPU milliseconds (all threads of
this process) are reported next to the wall clock because they change much less when other
processes share the cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence

import cv2
import numpy as np
import skimage.data

from benchmarks.bench_sscd import Timing, timed
from imgprov.extract.effnet import EffNetFeatures, FeatureMapConf

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
MEGAPIXEL_SIZE = (1155, 866)
"""(width, height): 4:3, one megapixel."""
BATCH_SIZES = (1, 4, 8)


def megapixel_photos() -> list[np.ndarray]:
    """(866, 1155, 3) uint8 RGB photos."""
    photos = []
    for name in PHOTO_NAMES:
        image = getattr(skimage.data, name)()
        rgb = np.dstack([image] * 3) if image.ndim == 2 else image[..., :3]
        photos.append(cv2.resize(np.ascontiguousarray(rgb), MEGAPIXEL_SIZE, interpolation=cv2.INTER_CUBIC))
    return photos


def startup_timings() -> tuple[float, float]:
    """Seconds to build the graph into an empty cache, then to load it from that cache."""
    previous = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        try:
            start = time.perf_counter()
            EffNetFeatures(FeatureMapConf(name="cold", input_long_side=512), intra_op_threads=1)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            EffNetFeatures(FeatureMapConf(name="warm", input_long_side=512), intra_op_threads=1)
            warm = time.perf_counter() - start
        finally:
            if previous is None:
                del os.environ["XDG_CACHE_HOME"]
            else:
                os.environ["XDG_CACHE_HOME"] = previous
    return cold, warm


def speed_rows(
    photos: Sequence[np.ndarray], side: int, threads: int, repeats: int
) -> list[tuple[str, Timing, int]]:
    """(operation, timing, images per call) for one long side and thread count."""
    rows = []
    single = EffNetFeatures(
        FeatureMapConf(name=f"bench-{side}", input_long_side=side), intra_op_threads=threads
    )
    rows.append(("feature_maps", timed(lambda: single.feature_maps(photos[0]), repeats), 1))
    for batch_size in BATCH_SIZES:
        conf = FeatureMapConf(name=f"bench-{side}-b{batch_size}", input_long_side=side, batch_size=batch_size)
        extractor = EffNetFeatures(conf, intra_op_threads=threads)
        images = [photos[i % len(photos)] for i in range(batch_size)]
        rows.append(
            (
                f"embed, batch {batch_size}",
                timed(lambda e=extractor, i=images: e.embed(i), repeats),
                batch_size,
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    cold, warm = startup_timings()
    print(f"graph build (cold cache): {cold * 1000:.0f} ms; load from cache: {warm * 1000:.0f} ms\n")
    photos = megapixel_photos()
    print("| long side | threads | operation | wall ms/image | CPU ms/image |")
    print("|---|---|---|---|---|")
    for side in args.sides:
        for threads in args.threads:
            for operation, timing, count in speed_rows(photos, side, threads, args.repeats):
                wall, cpu = timing.wall * 1000 / count, timing.cpu * 1000 / count
                print(f"| {side} | {threads} | {operation} | {wall:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
