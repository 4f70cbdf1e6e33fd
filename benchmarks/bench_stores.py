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

`--exact N` (20 by default) adds the comparison where both stores search exactly: "before" is then a
new index of the N source originals that the queries' top matches come from first (RootSIFT
extracted again; N small enough for fewer than 50,000 local descriptors), copied to Milvus as above
into the collection NAME_exactN. Results: docs/benchmarks/stores.md and a section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.report import markdown_table, write_section
from benchmarks.run import git_commit, machine_description
from imgprov import presets
from imgprov.images import load_image
from imgprov.indexing.pipeline import index_paths
from imgprov.search.pipeline import search
from imgprov.storage import open_store, parse_location, store_writer
from imgprov.storage.migrate import migrate, source_presets, vector_counts

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


def compare_stores(source: str, db: str, files: list[Path], workdir: Path, exact: int) -> dict:
    """Copy `source` to a new index directory ("before"; with `exact`, a new index of that many
    originals instead) and from there to the distributed store `db` ("after"); search `files` in both."""
    shutil.rmtree(workdir, ignore_errors=True)
    before = str(workdir / "embedded")
    report: dict = {"db": parse_location(db).describe(), "exact": exact}
    report["copy_to_embedded_seconds"] = round(copy(source, before), 1)
    if exact:
        subset = str(workdir / f"embedded-{exact}")
        report["originals"] = exact_subset(before, files, exact, subset)
        before = subset
    report["copy_to_distributed_seconds"] = round(copy(before, db), 1)
    report["vectors"] = vector_counts(open_store(db))
    report["milvus_indexes"] = {s.name: s.index.describe() for s in open_store(db).vector_sets}
    report["embedded_indexes"] = {s.name: s.state.layout for s in open_store(before).vector_sets}
    embedded_answers, embedded_seconds = answers(before, files)
    distributed_answers, distributed_seconds = answers(db, files)
    pairs = list(zip(files, embedded_answers, distributed_answers, strict=True))
    report.update(
        images=open_store(before).catalogue.image_count(),
        queries=len(files),
        identical_answers=sum(identical(a, b) for _, a, b in pairs),
        identical_top_match=sum((a[0][:1] if a else None) == (b[0][:1] if b else None) for _, a, b in pairs),
        seconds_per_query={
            "embedded": round(embedded_seconds, 2),
            "distributed": round(distributed_seconds, 2),
        },
        differing=[
            {"query": str(path), "embedded": a, "distributed": b}
            for path, a, b in pairs
            if not identical(a, b)
        ],
    )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _top(found: list[tuple]) -> int | None:
    return found[0][0] if found else None


def with_collection_name(db: str, name: str) -> str:
    """The same servers' URL for the collection `name`."""
    location = parse_location(db)
    return db.replace(f"/{location.name}?", f"/{name}?", 1)


def markdown(reports: list[dict], command: str, seconds: float, load: tuple[float, float]) -> str:
    header = [
        "collection",
        "local descriptors",
        "embedded index (local)",
        "Milvus index (local)",
        "queries",
        "identical answers",
        "same top match",
        "s/query embedded",
        "s/query Milvus + PostgreSQL",
    ]
    rows = [
        [
            f"{report['images']} originals" + (" (searched exactly)" if report["exact"] else ""),
            f"{report['vectors']['local']:,}",
            f"`{report['embedded_indexes']['local']}`",
            f"`{report['milvus_indexes']['local']}`",
            str(report["queries"]),
            f"**{report['identical_answers']}**",
            f"**{report['identical_top_match']}**",
            str(report["seconds_per_query"]["embedded"]),
            str(report["seconds_per_query"]["distributed"]),
        ]
        for report in reports
    ]
    return "\n".join(
        [
            "Reproduce with:",
            "",
            "```sh",
            "make corpus && python -m benchmarks.bench_objects --size small  # the collection and queries",
            "python -m tests.servers &   # prints a --db URL: Milvus + PostgreSQL on loopback",
            command,
            "```",
            "",
            f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; commit: `{git_commit()}`",
            f"- machine: {machine_description()}; load average (1 min) during the run: {load[0]:.1f} to "
            f"{load[1]:.1f}; the Milvus standalone and PostgreSQL servers ran on the same 2 cores",
            f"- whole run {seconds:.0f} s",
            "",
            "Each collection is copied with `imgprov migrate` into a new index directory and from there",
            "to Milvus + PostgreSQL; the same benchmark queries are searched in both, one at a time.",
            "Identical: the same images, ranks, inliers and roles, scores within 1e-5. Below the presets'",
            "exact thresholds both stores search exactly; past them the embedded store searches IVF-PQ",
            "codes and Milvus an HNSW graph (docs/scaling.md).",
            "",
            markdown_table(header, rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_stores", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--source", required=True, help="the collection to copy (a --db value)")
    parser.add_argument(
        "--db",
        required=True,
        help="a distributed store's --db URL (its servers must hold no such collections)",
    )
    parser.add_argument("--workdir", type=Path, default=Path("out/bench-stores"))
    parser.add_argument("--queries", type=Path, default=Path("data/bench/small-seed0/queries"))
    parser.add_argument("--per-kind", type=int, default=15)
    parser.add_argument("--exact", type=int, default=20, help="also compare on N originals, searched exactly")
    args = parser.parse_args(argv)
    if parse_location(args.db).embedded:
        parser.error("--db must name a distributed store (milvus://...)")
    started, loads = time.perf_counter(), [os.getloadavg()[0]]
    files = queries(args.queries, args.per_kind)
    name = parse_location(args.db).name
    reports = [compare_stores(args.source, args.db, files, args.workdir / "all", 0)]
    loads.append(os.getloadavg()[0])
    if args.exact:
        exact_db = with_collection_name(args.db, f"{name}_exact{args.exact}")
        reports.append(compare_stores(args.source, exact_db, files, args.workdir / "exact", args.exact))
        loads.append(os.getloadavg()[0])
    command = (
        f'python -m benchmarks.bench_stores --source {args.source} --db "$DB" '
        f"--per-kind {args.per_kind} --exact {args.exact}"
    )
    summary = [{key: value for key, value in report.items() if key != "differing"} for report in reports]
    text = markdown(reports, command, time.perf_counter() - started, (min(loads), max(loads)))
    print(f"wrote {write_section('stores', text, summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
