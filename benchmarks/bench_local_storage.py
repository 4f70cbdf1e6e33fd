"""What compressed local features cost verification, measured side by side in one process.

    python -m benchmarks.bench_local_storage      # after `python -m benchmarks.run --size small`

Opens the small benchmark's two `--vectors none` collections (exact `rootsift-u8` and
`rootsift-pq32` local features, data/bench/small-seed0/) and runs the first QUERIES_PER_SET queries
of the Benign, Manip and Manip+Benign sets on both, interleaved, so that the load of the machine
falls on both alike. Prints the verification time per query, the top match's inliers, and the time
to read and decode 100 images' stored features.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.queries import load_query_set
from imgprov import presets
from imgprov.extract.sscd import SSCDExtractor
from imgprov.images import load_image
from imgprov.search.pipeline import search
from imgprov.storage.embedded.collection import Collection

FOLDER = Path(__file__).resolve().parent.parent / "data" / "bench" / "small-seed0"
COLLECTIONS = ("db-verify-only", "db-verify-only-pq32")
QUERY_SETS = ("benign", "manip", "manip-benign")
QUERIES_PER_SET = 10


def read_ms(collection: Collection, count: int = 100) -> float:
    """Milliseconds to read and decode the stored local features of `count` images."""
    ids = [image.id for image in collection.catalogue.all_images()[:count]]
    started = time.perf_counter()
    for image_id in ids:
        collection.local_features(image_id)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    collections = {name: Collection.open(FOLDER / name) for name in COLLECTIONS}
    embedder = SSCDExtractor(collections[COLLECTIONS[0]].global_conf)
    queries = [
        q
        for kind in QUERY_SETS
        for q in load_query_set(FOLDER / "queries" / kind / "queries.json")[:QUERIES_PER_SET]
    ]
    verify_ms = {name: [] for name in COLLECTIONS}
    inliers = {name: [] for name in COLLECTIONS}
    for query in queries:
        pixels = load_image(query.image_path).pixels
        for name, collection in collections.items():
            result = search(collection, pixels, presets.search(), stage="both", top_k=10, embedder=embedder)
            verify_ms[name].append(result.timings["verify"] * 1000)
            inliers[name].append(result.matches[0].inliers if result.matches else 0)
    for name, collection in collections.items():
        times = verify_ms[name]
        print(
            f"{name} ({collection.local_storage.name}): verify ms mean {statistics.mean(times):.0f}, "
            f"median {statistics.median(times):.0f}; top-match inliers median "
            f"{statistics.median(inliers[name]):.0f}; read + decode 100 images {read_ms(collection):.0f} ms"
        )
    exact, compressed = (np.array(inliers[name]) for name in COLLECTIONS)
    both = (exact > 0) & (compressed > 0)
    one_only = int(np.sum((exact > 0) != (compressed > 0)))
    print(
        f"{len(queries)} queries; top-match inliers compressed / exact, median "
        f"{np.median(compressed[both] / exact[both]):.2f}; matched by one only: {one_only}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
