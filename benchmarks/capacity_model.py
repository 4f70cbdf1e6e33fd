"""The capacity model: from measured per-image costs to memory, disk, nodes and latency at any size.

Every input is a measurement (benchmarks/bench_capacity.py); the formulas are here so that the
document (docs/scaling.md) and the tests quote the same code.

    disk(N)            = N * sum of the per-image bytes of every part (catalogue + vector files)
    memory(N)          = N * (local index + global index + object index bytes per image)
                         (the FAISS files are read whole into memory; the SQLite catalogue is not)
    images_per_node    = min(usable * node RAM / memory per image, usable * node disk / disk per image)
    shards(N)          = ceil(N / images_per_node)
    extraction_nodes   = ceil(N * CPU seconds per image / (cores * efficiency * seconds in the window))
    latency(N)         = fixed + per_sqrt * sqrt(N), fitted to measured points (see `SqrtLaw`)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

GIB = 1 << 30
TIB = 1 << 40
DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class NodeSpec:
    """A reference machine; `usable`: the share of RAM and disk an index may fill (the rest is the
    OS, page cache, the process and the room a rewrite of a vector file needs)."""

    name: str = "32 cores, 256 GiB RAM, 8 TiB NVMe"
    cores: int = 32
    memory_bytes: int = 256 * GIB
    disk_bytes: int = 8 * TIB
    usable: float = 0.7


@dataclass(frozen=True)
class PerImage:
    """Measured bytes per image of each part of an index, at the largest measured size.

    catalogue: the SQLite file (keypoint geometry, quantized descriptors, embedding, objects...);
    local_index / global_index / object_index: the FAISS files, read into memory to search.
    """

    catalogue: float
    local_index: float
    global_index: float
    object_index: float

    @property
    def disk(self) -> float:
        return self.catalogue + self.local_index + self.global_index + self.object_index

    @property
    def memory(self) -> float:
        return self.local_index + self.global_index + self.object_index


@dataclass(frozen=True)
class SqrtLaw:
    """latency(N) = fixed + per_sqrt * sqrt(N), fitted on measured (N, seconds) points.

    Why this shape: imgprov's IVF indexes get about sqrt(N) lists (`ivf_lists_for`) and probe a fixed
    number of them, so a search compares against O(sqrt(N)) centroids and scans O(N / sqrt(N)) codes
    per probed list; what remains (query extraction, OS2OS voting on the neighbours found,
    re-ranking a fixed shortlist) does not grow with N.
    """

    fixed: float
    per_sqrt: float

    def at(self, count: float) -> float:
        return self.fixed + self.per_sqrt * math.sqrt(count)


def disk_bytes(count: float, per_image: PerImage) -> float:
    return count * per_image.disk


def memory_bytes(count: float, per_image: PerImage) -> float:
    return count * per_image.memory


def images_per_node(per_image: PerImage, node: NodeSpec) -> int:
    """The most images one node holds with every index part on it (memory or disk, whichever binds)."""
    by_memory = node.usable * node.memory_bytes / per_image.memory
    by_disk = node.usable * node.disk_bytes / per_image.disk
    return int(min(by_memory, by_disk))


def binding_resource(per_image: PerImage, node: NodeSpec) -> str:
    """ "memory" or "disk": what limits `images_per_node`."""
    by_memory = node.usable * node.memory_bytes / per_image.memory
    by_disk = node.usable * node.disk_bytes / per_image.disk
    return "memory" if by_memory <= by_disk else "disk"


def shards(count: float, capacity: int) -> int:
    return max(1, math.ceil(count / capacity))


def extraction_nodes(
    count: float,
    cpu_seconds_per_image: float,
    node: NodeSpec,
    efficiency: float,
    window_s: float = DAY_SECONDS,
) -> int:
    """Nodes needed to extract `count` images within `window_s`, each core at `efficiency` of the
    single-core rate (what the Ray run measured)."""
    return max(1, math.ceil(count * cpu_seconds_per_image / (node.cores * efficiency * window_s)))


def fit_sqrt_law(points: Sequence[tuple[float, float]]) -> SqrtLaw:
    """Least squares of seconds on sqrt(N) over (N, seconds) points (at least two distinct N), with
    both coefficients kept non-negative (noise must not make latency fall as N grows)."""
    if len({n for n, _ in points}) < 2:
        raise ValueError("a fit needs measurements at two sizes at least")
    xs = [math.sqrt(n) for n, _ in points]
    ys = [seconds for _, seconds in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    if slope <= 0:
        return SqrtLaw(mean_y, 0.0)
    fixed = mean_y - slope * mean_x
    if fixed < 0:
        return SqrtLaw(0.0, sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs))
    return SqrtLaw(fixed, slope)


def human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{value:.0f} B"
        value /= 1024
    raise AssertionError("unreachable")


def human_count(value: float) -> str:
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.0f}"
