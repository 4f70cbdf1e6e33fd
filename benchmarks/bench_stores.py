"""The same collection in both stores: `imgprov migrate` to Milvus + PostgreSQL, then the benchmark
queries searched in each, their answers compared.

    python -m tests.servers &     # or your own servers: prints the --db URL to use
    python -m benchmarks.bench_stores --source data/bench/small-seed0/objects/db --db 'milvus://...'

The source collection is first copied (`imgprov migrate`) into a new embedded index directory, so
that the figures come from a collection nobody else writes to meanwhile; that copy is the "before",
its copy in the distributed store the "after". Both search with the default preset, one query at a
time. Two answers are identical when they name the same images in the same order with the same
inliers and roles, and scores equal to 1e-5. Exact vector search on both sides (collections below
the presets' exact thresholds) gives identical answers; past them the embedded store searches
IVF-PQ codes and Milvus an HNSW graph, so local k-NN lists, and sometimes answers, differ.

`--exact N` compares the stores where both search exactly: "before" is then a new index of the N
source originals that the queries' top matches come from first (RootSIFT extracted again; N small
enough for fewer than 50,000 local descriptors), copied to Milvus as above.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from imgprov import presets
from imgprov.images import load_image
from imgprov.index import index_paths
from imgprov.migrate import migrate, source_presets, vector_counts
from imgprov.search import search
from imgprov.storage import open_store, parse_location, store_writer

KINDS = ("benign", "manip-benign", "composite", "distinct")


def copy(source: str, target: str) -> float:
    """`imgprov migrate --from source --to target`; returns the seconds it took."""
    started = time.perf_counter()
    origin = open_store(source)
    with store_writer(target, presets=source_presets(origin)) as destination:
        migrate(origin, destination, batch_size=256)
    return time.perf_counter() - started


def queries(folder: Path, per_kind: int) -> list[Path]:
    """The first `per_kind` query images of each kind (masks and validity maps left out)."""
    chosen = []
    for kind in KINDS:
        files = sorted(p for p in (folder / kind).glob("*.png") if not p.stem.endswith(("_mask", "_valid")))
        chosen += files[:per_kind]
    return chosen


def answers(db: str, files: list[Path]) -> tuple[list[list[tuple]], float]:
    """Each query's matches as (id, rank, inliers, role, score), and the mean seconds per query."""
    store = open_store(db)
    conf = presets.search()
    found, started = [], time.perf_counter()
    for path in files:
        result = search(store, load_image(path).pixels, conf)
        found.append([(m.image_id, m.rank, m.inliers, m.role, round(m.score, 6)) for m in result.matches])
    return found, (time.perf_counter() - started) / max(len(files), 1)


def exact_subset(source: str, files: list[Path], count: int, target: str) -> list[int]:
    """Index into `target` the `count` originals of `source` that are top matches of `files`
    (in query order, then by id); returns their ids in `source`."""
    top, _ = answers(source, files)
    store = open_store(source)
    chosen = list(dict.fromkeys([found[0][0] for found in top if found]))
    chosen += [record.id for record in store.catalogue.all_images() if record.id not in chosen]
    chosen = chosen[:count]
    records = store.catalogue.images_by_ids(chosen)
    with store_writer(target, presets=source_presets(store)) as destination:
        index_paths(destination, [Path(records[image_id].path) for image_id in chosen])
    return chosen


def identical(first: list[tuple], second: list[tuple]) -> bool:
    return [m[:4] for m in first] == [m[:4] for m in second] and all(
        abs(a[4] - b[4]) <= 1e-5 for a, b in zip(first, second, strict=True)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_stores", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--source", required=True, help="the collection to copy (a --db value)")
    parser.add_argument("--db", required=True, help="the distributed store's --db URL to copy it to")
    parser.add_argument("--workdir", type=Path, default=Path("out/bench-stores"))
    parser.add_argument("--queries", type=Path, default=Path("data/bench/small-seed0/queries"))
    parser.add_argument("--per-kind", type=int, default=25)
    parser.add_argument("--exact", type=int, default=0, help="compare on N originals, searched exactly")
    args = parser.parse_args(argv)
    if parse_location(args.db).embedded:
        parser.error("--db must name a distributed store (milvus://...)")
    files = queries(args.queries, args.per_kind)
    before = str(args.workdir / "embedded")
    report: dict = {"source": args.source, "db": parse_location(args.db).describe()}
    report["copy_to_embedded_seconds"] = round(copy(args.source, before), 1)
    if args.exact:
        subset = str(args.workdir / f"embedded-{args.exact}")
        report["originals"] = exact_subset(before, files, args.exact, subset)
        before = subset
    report["copy_to_distributed_seconds"] = round(copy(before, args.db), 1)
    report["vectors"] = vector_counts(open_store(args.db))
    distributed = open_store(args.db)
    report["milvus_indexes"] = {s.name: s.index.describe() for s in distributed.vector_sets}
    report["embedded_indexes"] = {s.name: s.state.layout for s in open_store(before).vector_sets}
    embedded_answers, embedded_seconds = answers(before, files)
    distributed_answers, distributed_seconds = answers(args.db, files)
    same = [identical(a, b) for a, b in zip(embedded_answers, distributed_answers, strict=True)]
    same_top = [
        (a[0][:1] if a else None) == (b[0][:1] if b else None)
        for a, b in zip(embedded_answers, distributed_answers, strict=True)
    ]
    report.update(
        queries=len(files),
        identical_answers=sum(same),
        identical_top_match=sum(same_top),
        seconds_per_query={
            "embedded": round(embedded_seconds, 2),
            "distributed": round(distributed_seconds, 2),
        },
        differing=[
            {"query": str(path), "embedded": a, "distributed": b}
            for path, a, b, ok in zip(files, embedded_answers, distributed_answers, same, strict=True)
            if not ok
        ],
    )
    args.workdir.mkdir(parents=True, exist_ok=True)
    name = f"report-exact{args.exact}.json" if args.exact else "report.json"
    (args.workdir / name).write_text(json.dumps(report, indent=1) + "\n")
    summary = {key: value for key, value in report.items() if key != "differing"}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
