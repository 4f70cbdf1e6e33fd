"""Capacity: bytes per image of each index part, extraction cost per core, search cost per query,
and the capacity model built on them (docs/scaling.md).

    python -m benchmarks.bench_capacity    # writes docs/benchmarks/capacity.md/.json, docs/scaling.md

Steps, each cached under data/bench/capacity/ so an interrupted run resumes:
1. A real collection of each of `--sizes` images (corpus originals of the benchmark split, then
   distractor tiles cut from other corpus photos, as benchmarks/run.py builds them) in its own
   index directory, the smallest from scratch and each larger one grown from a copy of the one
   before, indexed with the Ray pipeline (`imgprov.indexing.ray`) on a local cluster of `--workers`
   processes, default presets plus the default object preset: the growth gives the throughput.
2. At each size: bytes per image of the catalogue (by table) and of each vector file, and the cost
   per query of the local stage (OS2OS), the global stage and both, on benign copies of originals
   (crop, resize, JPEG), one query at a time.
3. Extraction CPU time per image on one core (the process pinned to one CPU, one thread) of each
   extractor on 1-megapixel JPEGs made from corpus photos; and on the collection's own tiles, whose
   single-core sum against the Ray throughput gives the parallel efficiency the model uses.
4. The global stage beyond the real sizes (`--scales`): synthetic vectors drawn from a Gaussian fitted
   to the collection's real embeddings, in the index imgprov builds for that many (IVF-PQ).
5. The largest collection copied into a verify-only collection (`--vectors none`) with compressed
   local features (`--local-storage rootsift-pq32`): its bytes per image.
6. The capacity model (benchmarks/capacity_model.py) at 100M and 1B images.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import faiss
import numpy as np

from benchmarks import capacity_model as model
from benchmarks import corpus as corpus_module
from benchmarks.bench_global_scale import build_index, synthetic_vectors
from benchmarks.report import markdown_table, write_section
from benchmarks.run import DATA, SIZES, git_commit, machine_description, split_corpus
from imgprov import presets
from imgprov.extract.objects.conf import DEFAULT_OBJECTS, object_preset
from imgprov.extract.objects.embed import crop_model_conf
from imgprov.extract.objects.stage import ObjectStage
from imgprov.extract.rootsift import extract_rootsift
from imgprov.extract.sscd import SSCDExtractor, global_preset
from imgprov.images import load_image, read_image_bytes
from imgprov.indexing.ray import RayConf, index_sources, ray_cluster
from imgprov.search.pipeline import search
from imgprov.storage.embedded.collection import Collection
from imgprov.storage.ids import ITEM_BITS
from imgprov.storage.migrate import image_copies, source_presets
from imgprov.storage.records import CollectionPresets

REPO = Path(__file__).resolve().parent.parent
WORK = DATA / "bench" / "capacity"
SCALING_DOC = REPO / "docs" / "scaling.md"
CAPACITY_HEADING = "## Capacity model"
SIZES_REAL = (1_000, 10_000)
SCALES = (100_000, 1_000_000)
TARGETS = (100_000_000, 1_000_000_000)
ONE_MEGAPIXEL = 1_000_000
TABLES = ("descriptors", "keypoints", "global_vectors", "objects", "credentials", "images")
COPY_BATCH = 256


def collection_sources(data: Path, count: int) -> tuple[list[str], list[str]]:
    """The first `count` collection images (originals, then tiles) and the originals among them."""
    photos = corpus_module.load_corpus(data)
    split = split_corpus(photos, SIZES["large"], seed=0)
    originals = [str(split.originals[key]) for key in sorted(split.originals)]
    tiles = corpus_module.build_distractors(
        split.distractor_sources, max(0, count - len(originals)), 0, WORK / "tiles"
    )
    sources = [*originals, *(str(tile.path) for tile in tiles)][:count]
    return sources, [source for source in sources if source in set(originals)]


def grow(db: Path, sources: list[str], workers: int) -> dict:
    """Index `sources` with Ray (what is already indexed is skipped); seconds and images added."""
    conf = RayConf("local", workers)
    with ray_cluster(conf):
        started = time.perf_counter()
        with Collection.writer(db, presets=CollectionPresets(objects=DEFAULT_OBJECTS)) as collection:
            report = index_sources(collection, sources, conf, batch_size=64)
        seconds = time.perf_counter() - started
    if report.failed:
        raise SystemExit(f"bench_capacity: {len(report.failed)} images failed, first: {report.failed[0]}")
    return {"added": len(report.added), "seconds": round(seconds, 1), "workers": workers}


def part_bytes(db: Path) -> dict:
    """Bytes of each part: the catalogue file (with its WAL) and the sum of each table's blobs,
    and each vector file."""
    collection = Collection.open(db)
    try:
        images = collection.catalogue.image_count()
        connection = collection.catalogue.connection
        blobs = {
            "descriptors": "SELECT SUM(LENGTH(data)) FROM descriptors",
            "keypoints": "SELECT SUM(LENGTH(geometry)) FROM keypoints",
            "global_vectors": "SELECT SUM(LENGTH(data)) FROM global_vectors",
            "objects": "SELECT SUM(LENGTH(boxes) + LENGTH(vectors)) FROM objects",
        }
        table_bytes = {name: int(connection.execute(sql).fetchone()[0] or 0) for name, sql in blobs.items()}
        keypoints = int(connection.execute("SELECT SUM(count) FROM keypoints").fetchone()[0])
        objects = int(connection.execute("SELECT COALESCE(SUM(count), 0) FROM objects").fetchone()[0])
        files = {
            name: (db / file).stat().st_size if file else 0
            for name, file in collection.vector_files().items()
        }
        layouts = {vector_set.name: vector_set.state.layout for vector_set in collection.vector_sets}
    finally:
        collection.close()
    catalogue = sum(path.stat().st_size for path in db.glob("imgprov.sqlite*"))
    return {
        "images": images,
        "keypoints": keypoints,
        "objects": objects,
        "catalogue": catalogue,
        "catalogue_blobs": table_bytes,
        "vector_files": files,
        "layouts": layouts,
    }


def compressed_copy(source_db: Path, db: Path) -> Path:
    """A new collection `db` with the presets of `source_db` but no local index and compressed local
    features (`--vectors none --local-storage rootsift-pq32`), holding every image of `source_db`,
    its stored features re-encoded, nothing extracted again."""
    shutil.rmtree(db, ignore_errors=True)
    source = Collection.open(source_db)
    try:
        records = source.catalogue.all_images()
        compressed = dataclasses.replace(
            source_presets(source), local_index="none", local_storage="rootsift-pq32"
        )
        with Collection.writer(db, presets=compressed) as target:
            for start in range(0, len(records), COPY_BATCH):
                target.apply(add=list(image_copies(source, records[start : start + COPY_BATCH])))
    finally:
        source.close()
    return db


def benign_copy(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A circulated copy: 5-15% cropped off each side, resized to 60-90%, JPEG quality 50-80."""
    height, width = rgb.shape[:2]
    top, left = (int(rng.uniform(0.05, 0.15) * side) for side in (height, width))
    bottom, right = (int(rng.uniform(0.05, 0.15) * side) for side in (height, width))
    crop = rgb[top : height - bottom, left : width - right]
    scale = rng.uniform(0.6, 0.9)
    resized = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    quality = int(rng.integers(50, 81))
    ok, data = cv2.imencode(
        ".jpg", np.ascontiguousarray(resized[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def search_costs(db: Path, originals: list[str], queries: int) -> dict:
    """Seconds per query of each stage (p50, p95, mean of each timing) and IR@1, one query at a time."""
    rng = np.random.default_rng(0)
    chosen = [originals[i] for i in rng.choice(len(originals), min(queries, len(originals)), replace=False)]
    copies = [benign_copy(load_image(path).pixels, rng) for path in chosen]
    collection = Collection.open(db)
    embedder = SSCDExtractor(collection.global_conf)
    conf = presets.search()
    costs: dict[str, dict] = {}
    try:
        for stage in ("local", "global", "both"):
            timings: dict[str, list[float]] = {"total": []}
            hits = 0
            for path, pixels in zip(chosen, copies, strict=True):
                started = time.perf_counter()
                result = search(collection, pixels, conf, stage=stage, top_k=1, embedder=embedder)
                timings["total"].append(time.perf_counter() - started)
                for name, seconds in result.timings.items():
                    timings.setdefault(name, []).append(seconds)
                hits += bool(result.matches) and result.matches[0].path == path
            costs[stage] = {name: _summary(values) for name, values in timings.items()}
            costs[stage]["IR@1"] = hits / len(chosen)
    finally:
        collection.close()
    return {"queries": len(chosen), "stages": costs}


def one_megapixel_jpegs(data: Path, count: int) -> list[Path]:
    """`count` corpus photos of at least 1 MP, resized to 1 MP and saved as JPEG q90 (cached)."""
    folder = WORK / "one-megapixel"
    folder.mkdir(parents=True, exist_ok=True)
    photos = [p for p in corpus_module.load_corpus(data) if p.width * p.height >= ONE_MEGAPIXEL]
    chosen = [photos[i] for i in np.random.default_rng(0).choice(len(photos), count, replace=False)]
    paths = []
    for photo in chosen:
        path = folder / f"{photo.photo_id}.jpg"
        if not path.is_file():
            rgb = load_image(photo.path).pixels
            scale = (ONE_MEGAPIXEL / (rgb.shape[0] * rgb.shape[1])) ** 0.5
            small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(path), np.ascontiguousarray(small[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def extraction_costs(paths: Sequence[Path]) -> dict:
    """CPU milliseconds per image of each extractor, this process pinned to one CPU, one thread each;
    the first image warms up and is not counted."""
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)
    try:
        data = [read_image_bytes(path) for path in paths]
        pixels = [load_image(blob).pixels for blob in data]
        features = presets.local_features()
        r50 = SSCDExtractor(global_preset("sscd-r50-320"), intra_op_threads=1)
        fast = SSCDExtractor(global_preset("fast"), intra_op_threads=1)
        objects = _single_thread_objects()
        steps = {
            "decode": lambda i: load_image(data[i]),
            "rootsift": lambda i: extract_rootsift(pixels[i], features),
            "sscd_r50": lambda i: r50.embed([pixels[i]]),
            "sscd_mnv4_fast": lambda i: fast.embed([pixels[i]]),
            "objects": lambda i: objects.collection_objects(pixels[i]),
        }
        costs = {name: _cpu_ms(step, len(paths)) for name, step in steps.items()}
    finally:
        os.sched_setaffinity(0, affinity)
        cv2.setNumThreads(-1)
        faiss.omp_set_num_threads(len(affinity))
    sizes = [p.shape[0] * p.shape[1] for p in pixels]
    return {"images": len(paths) - 1, "megapixels_mean": round(float(np.mean(sizes)) / 1e6, 3), "ms": costs}


def pipeline_cpu_ms(costs: dict, objects: bool = True) -> float:
    """What indexing one image costs on one core with the default presets."""
    parts = ["decode", "rootsift", "sscd_r50"] + (["objects"] if objects else [])
    return sum(costs["ms"][part] for part in parts)


def _single_thread_objects() -> ObjectStage:
    conf = object_preset(DEFAULT_OBJECTS)
    return ObjectStage(conf, sscd=SSCDExtractor(crop_model_conf(conf.embedding), intra_op_threads=1))


def _cpu_ms(step, count: int) -> float:
    step(0)
    started = time.process_time()
    for index in range(1, count):
        step(index)
    return round((time.process_time() - started) / (count - 1) * 1000, 1)


def global_scale(db: Path, scales: Sequence[int], queries: int) -> list[dict]:
    """Global-stage latency per query at each scale: the collection's real embeddings, then synthetic
    ones from a Gaussian fitted to them; the index imgprov builds for that many, its top
    `global_rerank` re-ranked by exact cosine, one query at a time on one thread."""
    collection = Collection.open(db)
    try:
        rows = collection.catalogue.connection.execute("SELECT data FROM global_vectors ORDER BY image_id")
        real = np.stack([np.frombuffer(data, np.float32) for (data,) in rows])
    finally:
        collection.close()
    rng = np.random.default_rng(1)
    conf = presets.global_index()
    rerank = presets.search().global_rerank
    rows = []
    for scale in scales:
        vectors = np.ascontiguousarray(
            np.concatenate([real, synthetic_vectors(real, scale - len(real), seed=scale)])
        )
        index, build_seconds, layout = build_index(vectors, conf)
        picks = rng.choice(len(real), queries, replace=False)
        noisy = real[picks] + rng.normal(0, 0.02, (queries, real.shape[1])).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        faiss.omp_set_num_threads(1)
        latencies, hits = [], 0
        for query, answer in zip(noisy, picks, strict=True):
            started = time.perf_counter()
            _, found = index.search(query.reshape(1, -1), rerank)
            rows_found = found[0][found[0] >= 0] >> ITEM_BITS
            best = rows_found[np.argsort(-(vectors[rows_found] @ query), kind="stable")[:100]]
            latencies.append(time.perf_counter() - started)
            hits += bool(len(best)) and best[0] == answer
        faiss.omp_set_num_threads(0)
        rows.append(
            {
                "vectors": scale,
                "real": len(real),
                "layout": layout,
                "build_s": round(build_seconds, 1),
                "index_bytes_per_vector": round(int(faiss.serialize_index(index).size) / scale, 1),
                "latency": _summary(latencies),
                "top1_of_noisy_copy": hits / queries,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        del index, vectors
    return rows


def _summary(values: Sequence[float]) -> dict:
    array = np.asarray(values, dtype=np.float64) * 1000
    return {
        "p50_ms": round(float(np.percentile(array, 50)), 1),
        "p95_ms": round(float(np.percentile(array, 95)), 1),
        "mean_ms": round(float(array.mean()), 1),
    }


STEPS: dict[str, str] = {}
"""Each step's cache file and when it was measured (its modification time), for the report."""


def _cached(path: Path, compute) -> dict | list:
    """The step's figures from `path` when present, else computed (with the machine's load) and saved."""
    if not path.is_file():
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=1) + "\n")
        STEPS[path.name] = f"measured in this run (load {_load()} after it)"
    else:
        measured = datetime.datetime.fromtimestamp(path.stat().st_mtime, tz=datetime.UTC)
        STEPS.setdefault(path.name, f"reused, measured {measured:%Y-%m-%d %H:%M UTC}")
    return json.loads(path.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_capacity", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES_REAL))
    parser.add_argument("--scales", type=int, nargs="*", default=list(SCALES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("--extraction-images", type=int, default=9)
    parser.add_argument("--data", type=Path, default=DATA / "corpus")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    points = []
    previous: Path | None = None
    for size in sorted(args.sizes):
        db = WORK / f"db-{size}"
        sources, originals = collection_sources(args.data, size)
        if previous is not None and not db.exists():
            shutil.copytree(previous, db)
        growth = _cached(WORK / f"growth-{size}.json", lambda s=sources, d=db: grow(d, s, args.workers))
        measured = _cached(
            WORK / f"point-{size}.json",
            lambda o=originals, d=db: {"bytes": part_bytes(d), "search": search_costs(d, o, args.queries)},
        )
        if measured["bytes"]["images"] != size:
            raise SystemExit(f"bench_capacity: {WORK / f'point-{size}.json'} is for another collection")
        points.append({"size": size, "growth": growth, **measured})
        previous = db
        print(json.dumps({"size": size, "growth": growth}), file=sys.stderr, flush=True)
    largest = points[-1]["size"]
    compressed = _cached(
        WORK / f"point-{largest}-pq32.json",
        lambda: part_bytes(compressed_copy(previous, WORK / f"db-{largest}-pq32")),
    )
    one_mp = one_megapixel_jpegs(args.data, args.extraction_images + 1)
    extraction = _cached(WORK / f"extraction-{len(one_mp)}.json", lambda: extraction_costs(one_mp))
    tile_paths = [
        Path(p) for p in collection_sources(args.data, max(args.sizes))[0][-(args.extraction_images + 1) :]
    ]
    tile_extraction = _cached(
        WORK / f"extraction-tiles-{len(tile_paths)}.json", lambda: extraction_costs(tile_paths)
    )
    scale_rows = _cached(
        WORK / f"global-scale-{'-'.join(map(str, args.scales))}.json",
        lambda: global_scale(previous, args.scales, 200),
    )
    figures = {
        "context": {
            "command": " ".join(
                ["python -m benchmarks.bench_capacity", shlex.join(sys.argv[1:] if argv is None else argv)]
            ).rstrip(),
            "date": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
            "commit": git_commit(),
            "machine": machine_description(),
            "load": _load(),
            "wall_seconds": round(time.perf_counter() - started),
            "steps": dict(STEPS),
        },
        "points": points,
        "compressed_verify_only": compressed,
        "extraction_1mp": extraction,
        "extraction_tiles": tile_extraction,
        "global_scale": scale_rows,
    }
    figures["model"] = capacity(figures)
    write_section("capacity", "\n".join(report_lines(figures)), figures)
    write_scaling_section("\n".join(model_lines(figures)))
    return 0


def capacity(figures: dict) -> dict:
    """The model's inputs (from the measurements) and its table at every size."""
    largest = figures["points"][-1]
    count = largest["bytes"]["images"]
    files = largest["bytes"]["vector_files"]
    global_large = figures["global_scale"][-1]
    per_image = model.PerImage(
        catalogue=largest["bytes"]["catalogue"] / count,
        local_index=files["local"] / count,
        global_index=global_large["index_bytes_per_vector"],
        object_index=files.get("objects", 0) / count,
    )
    node = model.NodeSpec()
    cpu_ms = pipeline_cpu_ms(figures["extraction_1mp"])
    growth = figures["points"][-1]["growth"]
    tiles_ms = pipeline_cpu_ms(figures["extraction_tiles"])
    throughput = growth["added"] / growth["seconds"]
    efficiency = min(1.0, throughput * tiles_ms / 1000 / growth["workers"])
    local_fit = model.fit_sqrt_law(
        [(p["size"], p["search"]["stages"]["local"]["search"]["p50_ms"] / 1000) for p in figures["points"]]
    )
    global_fit = model.fit_sqrt_law(
        [(row["vectors"], row["latency"]["p50_ms"] / 1000) for row in figures["global_scale"]]
    )
    per_node = model.images_per_node(per_image, node)
    # Beyond the embedded default: no feature-level index, local features stay in the catalogue and
    # only verify the global and object shortlists (docs/scaling.md, Local features at scale).
    verify_only = model.PerImage(per_image.catalogue, 0.0, per_image.global_index, per_image.object_index)
    per_node_verify_only = model.images_per_node(verify_only, node)
    compressed = figures["compressed_verify_only"]
    verify_only_pq32 = model.PerImage(
        compressed["catalogue"] / compressed["images"], 0.0, per_image.global_index, per_image.object_index
    )
    per_node_pq32 = model.images_per_node(verify_only_pq32, node)
    both = largest["search"]["stages"]["both"]
    fixed_ms = (
        both["extract"]["p50_ms"] + both["verify"]["p50_ms"] + both.get("objects", {}).get("p50_ms", 0.0)
    )
    rows = []
    sizes = (
        [p["size"] for p in figures["points"]]
        + [r["vectors"] for r in figures["global_scale"]]
        + list(TARGETS)
    )
    for size in sizes:
        shard = min(size, per_node)
        shard_verify_only = min(size, per_node_verify_only)
        rows.append(
            {
                "images": size,
                "disk_bytes": model.disk_bytes(size, per_image),
                "memory_bytes": model.memory_bytes(size, per_image),
                "shards": model.shards(size, per_node),
                "local_ms_per_shard": local_fit.at(shard) * 1000,
                "global_ms_per_shard": global_fit.at(shard) * 1000,
                "memory_bytes_verify_only": model.memory_bytes(size, verify_only),
                "shards_verify_only": model.shards(size, per_node_verify_only),
                "query_ms_verify_only": global_fit.at(shard_verify_only) * 1000 + fixed_ms,
                "disk_bytes_pq32": model.disk_bytes(size, verify_only_pq32),
                "shards_pq32": model.shards(size, per_node_pq32),
                "extraction_nodes_24h": model.extraction_nodes(size, cpu_ms / 1000, node, efficiency),
            }
        )
    return {
        "node": node.name,
        "usable": node.usable,
        "per_image": {
            "catalogue": per_image.catalogue,
            "local_index": per_image.local_index,
            "global_index": per_image.global_index,
            "object_index": per_image.object_index,
            "disk": per_image.disk,
            "memory": per_image.memory,
        },
        "cpu_ms_per_image_1mp": cpu_ms,
        "ray_images_per_s": throughput,
        "parallel_efficiency": efficiency,
        "local_fit": {"fixed_s": local_fit.fixed, "per_sqrt_s": local_fit.per_sqrt},
        "global_fit": {"fixed_s": global_fit.fixed, "per_sqrt_s": global_fit.per_sqrt},
        "images_per_node": per_node,
        "binding": model.binding_resource(per_image, node),
        "images_per_node_verify_only": per_node_verify_only,
        "binding_verify_only": model.binding_resource(verify_only, node),
        "catalogue_pq32": verify_only_pq32.catalogue,
        "images_per_node_pq32": per_node_pq32,
        "binding_pq32": model.binding_resource(verify_only_pq32, node),
        "query_fixed_ms": fixed_ms,
        "rows": rows,
    }


def report_lines(figures: dict) -> list[str]:
    context = figures["context"]
    lines = [
        "Reproduce with:",
        "",
        "```sh",
        "make corpus   # fetches and verifies the real photos (once)",
        context["command"],
        "```",
        "",
        f"- date: {context['date']}; commit: `{context['commit']}`; whole run {context['wall_seconds']} s",
        f"- machine: {context['machine']}; load average at the end: {context['load']}",
        "- steps (cached under data/bench/capacity/, reused when present): "
        + "; ".join(f"{name}: {when}" for name, when in context["steps"].items()),
        "- collection: corpus originals then distractor tiles (benchmarks/run.py's large split, seed 0),",
        "  default presets plus the default object preset, indexed with `imgprov.indexing.ray` (Ray)",
        "",
        "### Bytes per image",
        "",
        markdown_table(
            [
                "images",
                "keypoints/image",
                "catalogue",
                "descriptors",
                "geometry",
                "embedding",
                "objects",
                "local index",
                "global index",
                "object index",
                "layouts",
            ],
            [_bytes_row(point["bytes"]) for point in figures["points"]]
            + [_bytes_row(figures["compressed_verify_only"])],
        ),
        "",
        "Catalogue: the SQLite file with its WAL; descriptors .. objects: the sums of those blobs inside it.",
        "Last row: the largest collection copied into a verify-only collection (`--vectors none`) with",
        "compressed local features (`--local-storage rootsift-pq32`).",
        "",
        "### Indexing throughput (Ray, local cluster)",
        "",
        markdown_table(
            ["images", "added", "workers", "seconds", "images/s"],
            [
                [
                    str(p["size"]),
                    str(p["growth"]["added"]),
                    str(p["growth"]["workers"]),
                    str(p["growth"]["seconds"]),
                    f"{p['growth']['added'] / max(p['growth']['seconds'], 1e-9):.2f}",
                ]
                for p in figures["points"]
            ],
        ),
        "",
        "### Extraction CPU time per image on one core (ms)",
        "",
        markdown_table(
            ["images", "megapixels", *figures["extraction_1mp"]["ms"]],
            [
                [str(e["images"]), str(e["megapixels_mean"]), *(str(v) for v in e["ms"].values())]
                for e in (figures["extraction_1mp"], figures["extraction_tiles"])
            ],
        ),
        "",
        "First row: 1-MP JPEGs made from corpus photos; second: the collection's own tiles. `objects` is",
        "the default object preset (grid boxes, each crop embedded by the distilled MobileNetV4).",
        "",
        "### Search cost per query (ms, p50 / p95)",
        "",
        markdown_table(
            [
                "images",
                "queries",
                "local: extract",
                "local: search",
                "local: verify",
                "local total",
                "global total",
                "both total",
                "IR@1 local / global / both",
            ],
            [_search_row(point) for point in figures["points"]],
        ),
        "",
        "### Global stage beyond the real collection (synthetic vectors)",
        "",
        markdown_table(
            [
                "vectors",
                "real",
                "layout",
                "build s",
                "bytes/vector",
                "p50 ms",
                "p95 ms",
                "top-1 of a noisy copy",
            ],
            [
                [
                    str(r["vectors"]),
                    str(r["real"]),
                    r["layout"],
                    str(r["build_s"]),
                    str(r["index_bytes_per_vector"]),
                    str(r["latency"]["p50_ms"]),
                    str(r["latency"]["p95_ms"]),
                    f"{r['top1_of_noisy_copy']:.3f}",
                ]
                for r in figures["global_scale"]
            ],
        ),
        "",
        "The capacity model built on these figures is in docs/scaling.md (Capacity model).",
    ]
    return lines


def model_lines(figures: dict) -> list[str]:
    capacity_figures = figures["model"]
    per_image = capacity_figures["per_image"]
    measured_sizes = {p["size"] for p in figures["points"]}
    scale_sizes = {r["vectors"] for r in figures["global_scale"]}
    rows = []
    for row in capacity_figures["rows"]:
        size = row["images"]
        source = (
            "measured (real)"
            if size in measured_sizes
            else "global measured (synthetic), rest modelled"
            if size in scale_sizes
            else "extrapolated"
        )
        rows.append(
            [
                model.human_count(size),
                model.human_bytes(row["disk_bytes"]),
                model.human_bytes(row["memory_bytes"]),
                str(row["shards"]),
                f"{row['local_ms_per_shard']:.0f}",
                f"{row['global_ms_per_shard']:.1f}",
                model.human_bytes(row["memory_bytes_verify_only"]),
                str(row["shards_verify_only"]),
                f"{row['query_ms_verify_only']:.0f}",
                model.human_bytes(row["disk_bytes_pq32"]),
                str(row["shards_pq32"]),
                str(row["extraction_nodes_24h"]),
                source,
            ]
        )
    local, global_ = capacity_figures["local_fit"], capacity_figures["global_fit"]
    per_node = capacity_figures["images_per_node"]
    context = figures["context"]
    size = model.human_count(figures["points"][-1]["size"])
    largest_scale = model.human_count(figures["global_scale"][-1]["vectors"])
    bytes_of = {name: model.human_bytes(value) for name, value in per_image.items()}
    return [
        CAPACITY_HEADING,
        "",
        f"Written by `{context['command']}` on {context['date']} (commit `{context['commit']}`,",
        f"{context['machine']}); the measurements are in",
        "[docs/benchmarks/capacity.md](benchmarks/capacity.md), the formulas in",
        "`benchmarks/capacity_model.py`.",
        "",
        "Inputs, all measured here:",
        "",
        f"- bytes per image at {size} real images: catalogue {bytes_of['catalogue']}, local (OS2OS) index "
        f"{bytes_of['local_index']},",
        f"  object index {bytes_of['object_index']}; global index {bytes_of['global_index']} "
        f"(IVF-PQ at {largest_scale} vectors)",
        "- CPU per image on one core, 1-MP JPEG, default presets with objects: "
        f"{capacity_figures['cpu_ms_per_image_1mp']:.0f} ms (decode + RootSIFT + SSCD R50 + objects)",
        f"- Ray indexing throughput with {figures['points'][-1]['growth']['workers']} workers: "
        f"{capacity_figures['ray_images_per_s']:.2f} images/s on tiles,",
        f"  a parallel efficiency of {capacity_figures['parallel_efficiency']:.2f} against the single-core "
        "cost of the same tiles",
        "- local stage (OS2OS voting, `search` timing) p50 fitted on the real points: "
        f"{local['fixed_s'] * 1000:.0f} ms + {local['per_sqrt_s'] * 1000:.3f} ms * sqrt(N)",
        "- global stage (IVF-PQ search + exact re-ranking) p50 fitted on the synthetic points: "
        f"{global_['fixed_s'] * 1000:.2f} ms + {global_['per_sqrt_s'] * 1000:.5f} ms * sqrt(N)",
        "",
        f"Formulas (N images; per-image bytes as above; node: {capacity_figures['node']}, "
        f"{capacity_figures['usable']:.0%} of RAM and disk usable):",
        "",
        "```text",
        "disk(N)           = N * (catalogue + local index + global index + object index)",
        "memory(N)         = N * (local index + global index + object index)   # FAISS files are read whole",
        "images_per_node   = min(usable * RAM / memory per image, usable * disk / disk per image)",
        "shards(N)         = ceil(N / images_per_node)",
        "extraction nodes  = ceil(N * CPU s per image / (cores * efficiency * 86,400 s))",
        "latency(N)        = fixed + per_sqrt * sqrt(N) per shard (shards are searched in parallel):",
        "                    IVF lists grow as sqrt(N) and a fixed number is probed",
        "verify-only       = the same with local index bytes = 0: no OS2OS feature index, local features",
        "                    read from the catalogue for the shortlist only;",
        "                    query = extract + global(shard) + verify + objects",
        "                    (the last three measured at the largest real size)",
        "```",
        "",
        "Columns: *embedded* is the default index on every node, sharded by `images_per_node`; its query",
        "time is about the OS2OS time per shard plus the global one plus a fixed "
        f"{capacity_figures['query_fixed_ms']:.0f} ms (query extraction,",
        "verification, objects). *Verify-only* is the design past a few million images per shard (Local",
        "features at scale): "
        f"{model.human_count(capacity_figures['images_per_node_verify_only'])} images per node "
        f"({capacity_figures['binding_verify_only']} binds). *Verify-only pq32* keeps the local features",
        "compressed (`--local-storage rootsift-pq32`, 44 instead of 144 bytes per keypoint): catalogue "
        f"{model.human_bytes(capacity_figures['catalogue_pq32'])} per image (measured),",
        f"{model.human_count(capacity_figures['images_per_node_pq32'])} images per node "
        f"({capacity_figures['binding_pq32']} binds); its queries cost what verify-only ones do, plus",
        "the decoding of the shortlist's features (about 10 ms per 100 candidates,",
        "`python -m benchmarks.bench_local_storage`).",
        "Nodes to extract: the default presets with "
        "objects on 1-MP JPEGs, at the parallel efficiency measured with Ray.",
        "",
        markdown_table(
            [
                "images",
                "disk",
                "memory, embedded",
                "nodes, embedded",
                "OS2OS ms per shard",
                "global ms per shard",
                "memory, verify-only",
                "nodes, verify-only",
                "query ms, verify-only",
                "disk, verify-only pq32",
                "nodes, verify-only pq32",
                "nodes to extract in 24 h",
                "figures",
            ],
            rows,
        ),
        "",
        "**Where the embedded default stops being right:** one node holds about "
        f"{model.human_count(per_node)} images",
        f"with every index part on it ({capacity_figures['binding']} binds first: the local OS2OS "
        "index is read into memory whole). Past that the collection needs shards, and past a few million",
        "images per shard the local-stage latency (extrapolated, see the table) is no longer interactive:",
        "that is where the global stage shortlists and local features only verify (see Local features at",
        "scale), and where the catalogue belongs in a server database rather than one SQLite file per node.",
        "",
        "The OS2OS figures beyond the real sizes extrapolate the fit on the real points (two sizes on a",
        "loaded 2-core machine: take them as an order of magnitude); the global figures up to the largest",
        "synthetic size are measured, beyond it extrapolated with the fit.",
    ]


def write_scaling_section(markdown: str) -> None:
    """Replace (or append) the Capacity model section of docs/scaling.md."""
    text = SCALING_DOC.read_text() if SCALING_DOC.is_file() else "# Scaling\n"
    start = text.find(CAPACITY_HEADING)
    if start < 0:
        updated = text.rstrip() + "\n\n" + markdown.rstrip() + "\n"
    else:
        end = text.find("\n## ", start + len(CAPACITY_HEADING))
        rest = text[end:] if end >= 0 else "\n"
        updated = text[:start] + markdown.rstrip() + "\n" + rest
    SCALING_DOC.write_text(updated)


def _bytes_row(parts: dict) -> list[str]:
    count = parts["images"]
    blobs, files = parts["catalogue_blobs"], parts["vector_files"]
    human = lambda value: model.human_bytes(value / count)  # noqa: E731
    return [
        str(count),
        f"{parts['keypoints'] / count:.0f}",
        human(parts["catalogue"]),
        human(blobs["descriptors"]),
        human(blobs["keypoints"]),
        human(blobs["global_vectors"]),
        human(blobs["objects"]),
        human(files.get("local", 0)),
        human(files.get("global", 0)),
        human(files.get("objects", 0)),
        ", ".join(f"{name} {layout}" for name, layout in parts["layouts"].items()),
    ]


def _search_row(point: dict) -> list[str]:
    stages = point["search"]["stages"]
    cell = lambda summary: f"{summary['p50_ms']:.0f} / {summary['p95_ms']:.0f}"  # noqa: E731
    local = stages["local"]
    return [
        str(point["size"]),
        str(point["search"]["queries"]),
        cell(local["extract"]),
        cell(local["search"]),
        cell(local["verify"]),
        cell(local["total"]),
        cell(stages["global"]["total"]),
        cell(stages["both"]["total"]),
        " / ".join(f"{stages[s]['IR@1']:.2f}" for s in ("local", "global", "both")),
    ]


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
