"""Global-stage scaling: search latency, memory and IR@k from 1k to 1M vectors (SImProv Fig. 6 analogue).

    python -m benchmarks.bench_global_scale    # writes docs/benchmarks/global_scaling.md

What the collection holds at each size, in this order of preference:
1. real SSCD embeddings of the corpus originals of the benchmark split (the queries' answers);
2. real SSCD embeddings of distractor tiles cut from other corpus photos (`--real-tiles` of them);
3. beyond that, synthetic vectors drawn from a Gaussian fitted to the real tile embeddings (mean and
   full covariance, then L2-normalized): 2 cores embed about 20-40 images/s, so a million real
   embeddings would take most of a day. The report says how many of each were used.
Queries are the benchmark's Benign and Manip+Benign query images (seed 0), embedded with the same
model. The index at each size is what imgprov builds for that many vectors (exact below the
preset's threshold, OPQ + IVF + 16-byte PQ above), searched one query at a time on one thread.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from benchmarks import corpus as corpus_module
from benchmarks.report import write_section
from benchmarks.run import DATA, SIZES, git_commit, machine_description, query_sets, split_corpus
from imgprov import presets
from imgprov.extract.sscd import SSCDExtractor, global_preset
from imgprov.images import load_image
from imgprov.storage.embedded.vectors import (
    ITEM_BITS,
    IndexLayout,
    layout_of,
    new_flat,
    set_nprobe,
    train_ivfpq,
)
from imgprov.storage.vector_sets import ivf_lists_for

SCALES = (1_000, 10_000, 100_000, 1_000_000)


def embed_paths(extractor: SSCDExtractor, paths: Sequence[Path], cache: Path) -> np.ndarray:
    """(N, 512) float32 embeddings of image files, cached in an .npy keyed by the path list."""
    key = cache.with_suffix(".paths.json")
    if cache.is_file() and key.is_file() and json.loads(key.read_text()) == [str(p) for p in paths]:
        return np.load(cache)
    vectors = np.zeros((len(paths), 512), np.float32)
    for start in range(0, len(paths), 32):
        chunk = paths[start : start + 32]
        vectors[start : start + len(chunk)] = extractor.embed([load_image(path).pixels for path in chunk])
        print(f"  embedded {start + len(chunk)}/{len(paths)}", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    key.write_text(json.dumps([str(p) for p in paths]))
    return vectors


def synthetic_vectors(real: np.ndarray, count: int, seed: int) -> np.ndarray:
    """(count, 512) float32 unit vectors from a Gaussian with the real vectors' mean and covariance."""
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0)
    covariance = np.cov(real, rowvar=False) + 1e-6 * np.eye(real.shape[1])
    factor = np.linalg.cholesky(covariance)
    out = np.empty((count, real.shape[1]), np.float32)
    for start in range(0, count, 100_000):
        size = min(100_000, count - start)
        block = mean + rng.standard_normal((size, real.shape[1])) @ factor.T
        out[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def build_index(vectors: np.ndarray, conf: presets.VectorIndexConf) -> tuple[faiss.Index, float, str]:
    """The index imgprov builds for this many vectors; returns it, build seconds and its layout."""
    started = time.perf_counter()
    ids = np.arange(len(vectors), dtype=np.int64) << ITEM_BITS
    if len(vectors) <= conf.exact_max_vectors:
        index = new_flat(vectors.shape[1], conf.metric)
        layout = f"Flat{vectors.shape[1]}"
    else:
        nlist = ivf_lists_for(len(vectors), conf.ivf_lists_per_sqrt)
        spec = IndexLayout("ivfpq", vectors.shape[1], nlist, conf.pq_bytes, conf.metric, conf.opq)
        rng = np.random.default_rng(0)
        sample = vectors[
            rng.choice(len(vectors), min(len(vectors), conf.train_points_per_list * nlist), False)
        ]
        index = train_ivfpq(sample, spec)
        layout = spec.describe()
    index.add_with_ids(vectors, ids)
    set_nprobe(index, conf.nprobe)
    return index, time.perf_counter() - started, layout


def index_bytes(index: faiss.Index) -> int:
    return int(faiss.serialize_index(index).size)


def measure(
    index: faiss.Index,
    vectors: np.ndarray,
    queries: np.ndarray,
    answers: np.ndarray,
    exact: np.ndarray,
    rerank: int,
) -> dict:
    """Latency per query (one at a time), IR@k against the true originals, recall vs exact search.

    "index" columns: the index's own top 100. "re-ranked" columns: what `imgprov search` does, the
    index's top `rerank` (top 100 for an exact index) re-ordered by exact cosine with the full
    embeddings stored beside the codes, top 100 kept; its latency includes gathering those vectors."""
    faiss.omp_set_num_threads(1)
    proposed = 100 if layout_of(index).kind == "flat" else rerank
    index_latencies, latencies, found, reranked = [], [], [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = index.search(query.reshape(1, -1), proposed)
        index_latencies.append(time.perf_counter() - started)
        rows = ids[0][ids[0] >= 0] >> ITEM_BITS
        order = np.argsort(-(vectors[rows] @ query), kind="stable")[:100]
        latencies.append(time.perf_counter() - started)
        found.append(ids[0][:100] >> ITEM_BITS)
        reranked.append(np.pad(rows[order], (0, 100 - len(order)), constant_values=-1))
    faiss.omp_set_num_threads(0)
    found, reranked = np.array(found), np.array(reranked)
    hits = found == answers[:, None]
    reranked_hits = reranked == answers[:, None]
    return {
        "index_ms_p50": float(np.percentile(index_latencies, 50) * 1000),
        "latency_ms_mean": float(np.mean(latencies) * 1000),
        "latency_ms_p50": float(np.percentile(latencies, 50) * 1000),
        "latency_ms_p99": float(np.percentile(latencies, 99) * 1000),
        "IR@1 index": float(hits[:, :1].any(axis=1).mean()),
        "IR@100 index": float(hits.any(axis=1).mean()),
        "IR@1": float(reranked_hits[:, :1].any(axis=1).mean()),
        "IR@10": float(reranked_hits[:, :10].any(axis=1).mean()),
        "IR@100": float(reranked_hits.any(axis=1).mean()),
        "IR@1 exact": float(np.mean(exact == answers)),
        "recall_vs_exact@10": float(np.mean([exact[i] in reranked[i][:10] for i in range(len(reranked))])),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_global_scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--global-preset", default="sscd-r50-320")
    parser.add_argument("--index-preset", default=presets.DEFAULT_GLOBAL_INDEX)
    parser.add_argument("--real-tiles", type=int, default=10_000)
    parser.add_argument("--scales", type=int, nargs="*", default=list(SCALES))
    parser.add_argument("--data", type=Path, default=DATA / "corpus")
    args = parser.parse_args(argv)
    size = SIZES["medium"]
    photos = corpus_module.load_corpus(args.data)
    stamps = corpus_module.load_stamps(args.data)
    split = split_corpus(photos, size, seed=0)
    tiles = corpus_module.build_distractors(
        split.distractor_sources, args.real_tiles, 0, args.data / "distractors"
    )
    queries = query_sets(split, stamps, size, 0, DATA / "bench" / f"{size.name}-seed0")
    benign = [q for kind in ("benign", "manip+benign") for q in queries[kind]]
    conf = global_preset(args.global_preset)
    extractor = SSCDExtractor(conf)
    cache = DATA / "bench" / "embeddings" / conf.name
    original_ids = sorted(split.originals)
    originals = embed_paths(extractor, [split.originals[i] for i in original_ids], cache / "originals.npy")
    tile_vectors = embed_paths(extractor, [tile.path for tile in tiles], cache / f"tiles-{len(tiles)}.npy")
    query_vectors = embed_paths(extractor, [q.image_path for q in benign], cache / "queries.npy")
    answers = np.array([original_ids.index(q.source_id) for q in benign])
    index_conf = presets.global_index(args.index_preset)
    search_conf = presets.search()
    rows = []
    for scale in sorted(args.scales):
        real = np.concatenate([originals, tile_vectors])[:scale]
        synthetic = synthetic_vectors(tile_vectors, max(0, scale - len(real)), seed=scale)
        vectors = np.ascontiguousarray(np.concatenate([real, synthetic]).astype(np.float32))
        exact_ids = (vectors @ query_vectors.T).argmax(axis=0)
        index, build_seconds, layout = build_index(vectors, index_conf)
        row = {
            "vectors": scale,
            "real": len(real),
            "synthetic": len(synthetic),
            "layout": layout,
            "build_s": round(build_seconds, 1),
            "index_bytes_per_vector": round(index_bytes(index) / scale, 1),
            **measure(index, vectors, query_vectors, answers, exact_ids, search_conf.global_rerank),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        del index, vectors
    write_scaling_section(conf.name, index_conf.name, len(benign), rows)
    return 0


def write_scaling_section(model: str, index_preset: str, query_count: int, rows: list) -> None:
    columns = [
        "vectors",
        "real",
        "synthetic",
        "layout",
        "build_s",
        "index_bytes_per_vector",
        "index_ms_p50",
        "latency_ms_mean",
        "latency_ms_p50",
        "latency_ms_p99",
        "IR@1 index",
        "IR@100 index",
        "IR@1",
        "IR@10",
        "IR@100",
        "IR@1 exact",
        "recall_vs_exact@10",
    ]
    lines = [
        f"`python -m benchmarks.bench_global_scale {' '.join(sys.argv[1:])}`".replace("  ", " "),
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}; commit `{git_commit()}`; "
        f"machine: {machine_description()}",
        f"- model `{model}`, index preset `{index_preset}`; "
        f"{query_count} queries (Benign + Manip+Benign, seed 0)",
        "- collection: real embeddings of the corpus originals and of distractor tiles, then synthetic",
        "  vectors from a Gaussian fitted to the real tile embeddings (see the script's docstring)",
        "- index columns: the compressed index's own top 100 (IR@1 index, IR@100 index, index_ms_p50)",
        "- IR@k, latency: what `imgprov search` does, the index's top "
        f"{presets.search().global_rerank} re-ranked by exact cosine with the stored full embeddings",
        "  (an exact index: its top 100), one query at a time on one thread; imgprov reads those",
        "  embeddings from its SQLite catalogue, here they are in memory",
        "- IR@1 exact: brute-force cosine over the full embeddings (the ceiling); bytes per vector: the",
        "  serialized index (codes, ids and quantizers; the full embeddings are stored apart, on disk)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[column]) for column in columns) + " |")
    write_section("global_scaling", "\n".join(lines), rows)


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) and value < 10 else str(value)


if __name__ == "__main__":
    sys.exit(main())
