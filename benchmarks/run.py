"""The benchmark suite: corpus split, query sets, every method side by side, one report.

    python -m benchmarks.run --size small            # what docs/benchmarks.md reports by default

Steps: verify the corpus (``make corpus`` fetches it), split its scenes into collection originals,
held-out photos (distinct queries) and distractor sources, cut distractor tiles, generate the query
sets deterministically from the seed, index the collection with each method, run every query, and
write docs/benchmarks.md and docs/benchmarks.json. Generated queries and indexes are cached under
data/bench/<size>-seed<seed>/ and reused when their inputs are unchanged.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks import corpus as corpus_module
from benchmarks import metrics
from benchmarks.baseline import BaselineMethod
from benchmarks.methods import (
    Answer,
    CompressedLocalMethod,
    HashBaseline,
    ImgprovMethod,
    IndexStats,
    Method,
    RootSiftRansac,
    VerifyOnlyMethod,
)
from benchmarks.queries import (
    GENERATOR_VERSION,
    QUERY_KINDS,
    ROLE_DONOR,
    Query,
    generate_query_set,
    load_query_set,
    save_query_set,
)
from benchmarks.report import write_report
from imgprov import presets
from imgprov.storage.presets import NO_LOCAL_INDEX

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"


@dataclass(frozen=True)
class BenchSize:
    """How big a run is: originals in the collection, distractor tiles, queries per query set."""

    name: str
    originals: int
    held_out: int
    distractors: int
    queries_per_set: int


SIZES = {
    size.name: size
    for size in (
        BenchSize(name="small", originals=100, held_out=30, distractors=300, queries_per_set=30),
        BenchSize(name="medium", originals=400, held_out=60, distractors=2000, queries_per_set=100),
        BenchSize(name="large", originals=400, held_out=60, distractors=10000, queries_per_set=200),
    )
}


@dataclass(frozen=True)
class CorpusSplit:
    """Photo ids by use; scenes never straddle two uses."""

    originals: dict[str, Path]
    held_out: dict[str, Path]
    distractor_sources: list[corpus_module.CorpusPhoto]
    scenes: dict[str, str]


@dataclass(frozen=True)
class BenchSetup:
    """Everything a run needs: the split, the collection (originals + distractor tiles), the queries."""

    folder: Path
    split: CorpusSplit
    collection: dict[str, Path]
    distractors: int
    queries: dict[str, list[Query]]


@dataclass(frozen=True)
class QueryRun:
    """One method's answer to one query, with the ground truth needed to score it."""

    query_id: str
    kind: str
    answer: Answer
    case: metrics.RetrievalCase


def split_corpus(photos: Sequence[corpus_module.CorpusPhoto], size: BenchSize, seed: int) -> CorpusSplit:
    """Shuffle scenes with the seed; two fifths of the high-resolution ones become distractor sources
    (enough for 10,000 tiles), then `size.held_out` photos' scenes are held out and up to
    `size.originals` photos are originals."""
    by_scene: dict[str, list[corpus_module.CorpusPhoto]] = {}
    for photo in photos:
        by_scene.setdefault(photo.scene, []).append(photo)
    scenes = sorted(by_scene)
    order = [scenes[i] for i in np.random.default_rng(seed).permutation(len(scenes))]
    high_res = [scene for scene in order if max(max(p.width, p.height) for p in by_scene[scene]) >= 1024]
    distractor_scenes = set(high_res[: 2 * len(high_res) // 5])
    rest = [scene for scene in order if scene not in distractor_scenes]
    held_out, originals = _take_photos(rest, by_scene, size.held_out)
    originals, _ = _take_photos([s for s in rest if s not in held_out], by_scene, size.originals)
    return CorpusSplit(
        originals={p.photo_id: p.path for scene in originals for p in by_scene[scene]},
        held_out={p.photo_id: p.path for scene in held_out for p in by_scene[scene]},
        distractor_sources=[p for scene in sorted(distractor_scenes) for p in by_scene[scene]],
        scenes={photo.photo_id: photo.scene for photo in photos},
    )


def _take_photos(scenes: list[str], by_scene: dict, limit: int) -> tuple[list[str], list[str]]:
    taken, count = [], 0
    for scene in scenes:
        if count >= limit:
            break
        taken.append(scene)
        count += len(by_scene[scene])
    return taken, [scene for scene in scenes if scene not in taken]


def query_sets(split: CorpusSplit, stamps: list[Path], size: BenchSize, seed: int, folder: Path) -> dict:
    """The five query sets, generated once per configuration and loaded from the cache after."""
    sets = {}
    for kind in QUERY_KINDS:
        out = folder / "queries" / kind.replace("+", "-")
        key = _fingerprint(
            sorted(split.originals),
            sorted(split.held_out),
            [p.name for p in stamps],
            kind,
            seed,
            GENERATOR_VERSION,
        )
        cached = out / "queries.json"
        if cached.is_file() and (out / "key").read_text() == key:
            sets[kind] = load_query_set(cached)
            continue
        queries = generate_query_set(
            split.originals, split.held_out, {}, stamps, kind, size.queries_per_set, seed, out, split.scenes
        )
        save_query_set(queries, out)
        (out / "key").write_text(key)
        sets[kind] = queries
    return sets


def prepare(size: BenchSize, seed: int, data: Path, folder: Path) -> BenchSetup:
    """Verify the corpus, split it, cut distractors and generate (or load) the query sets.

    Raises `corpus.CorpusError` when photos or stamps are missing or changed.
    """
    photos = corpus_module.load_corpus(data)
    stamps = corpus_module.load_stamps(data)
    split = split_corpus(photos, size, seed)
    tiles = corpus_module.build_distractors(
        split.distractor_sources, size.distractors, seed, data / "distractors"
    )
    collection = dict(split.originals) | {tile.tile_id: tile.path for tile in tiles}
    queries = query_sets(split, stamps, size, seed, folder)
    return BenchSetup(folder, split, collection, len(tiles), queries)


def run_method(method: Method, queries: dict[str, list[Query]], top_k: int) -> list[QueryRun]:
    runs = []
    for kind, items in queries.items():
        for query in items:
            answer = method.query(query.image_path, top_k)
            runs.append(QueryRun(query.query_id, kind, answer, _case(query, answer)))
    return runs


def _case(query: Query, answer: Answer) -> metrics.RetrievalCase:
    related = frozenset(query.related) - query.relevant_ids()
    ids = [image_id for image_id in answer.ids]
    return metrics.RetrievalCase(
        ids=tuple(ids),
        scores=answer.scores,
        relevant=query.relevant_ids(),
        donors=query.relevant_ids([ROLE_DONOR]) if query.kind == "composite" else frozenset(),
        related=related,
    )


def score_runs(runs: list[QueryRun]) -> dict:
    """Metrics per query set plus no-match decisions and per-stage timing over all queries."""
    by_kind: dict[str, list[QueryRun]] = {}
    for run in runs:
        by_kind.setdefault(run.kind, []).append(run)
    scores: dict = {"sets": {}}
    for kind, items in by_kind.items():
        cases = [run.case for run in items]
        if kind == "distinct":
            scores["sets"][kind] = {"queries": len(items)}
            continue
        report = metrics.evaluate_retrieval(cases)
        entry = {
            "queries": len(items),
            "IR@1": report.ir_at_k[1],
            "IR@10": report.ir_at_k[10],
            "IR@100": report.ir_at_k[100],
            "mAP": report.mean_average_precision,
        }
        if kind == "composite":
            hosts = [
                metrics.RetrievalCase(run.case.ids, run.case.scores, _hosts(run), related=run.case.related)
                for run in items
            ]
            entry["host R@1"] = metrics.instance_recall_at_k(hosts, (1,))[1]
            entry["donor R@10"] = report.donor_recall_at_k.get(10, float("nan"))
            entry["total R@10"] = report.total_recall_at_k[10]
        scores["sets"][kind] = entry
    answered = np.array([run.answer.no_match for run in runs])
    distinct = np.array([run.kind == "distinct" for run in runs])
    no_match = metrics.no_match_scores(answered, distinct)
    scores["no_match"] = {"precision": no_match.precision, "recall": no_match.recall}
    scores["early_exit"] = _early_exit_shares(by_kind)
    stages = sorted({stage for run in runs for stage in run.answer.seconds})
    scores["seconds"] = {
        stage: asdict(metrics.summarize([run.answer.seconds.get(stage, 0.0) for run in runs]))
        for stage in stages
    }
    scores["seconds"]["total"] = asdict(metrics.summarize([sum(run.answer.seconds.values()) for run in runs]))
    return scores


def _early_exit_shares(by_kind: dict[str, list[QueryRun]]) -> dict[str, float]:
    """Per query set, the share of queries the search cascade settled at its first look (only for
    methods whose answers say which path they took)."""
    return {
        kind: sum(run.answer.path == "early-exit" for run in items) / len(items)
        for kind, items in by_kind.items()
        if any(run.answer.path is not None for run in items)
    }


def _hosts(run: QueryRun) -> frozenset[str]:
    return run.case.relevant - run.case.donors


def build_methods(folder: Path, only: set[str] | None, baseline_code: Path | None = None) -> list[Method]:
    """Every method, the default first; with `baseline_code`, that earlier code's default beside it
    (its name carries its commit, and it is run even when `only` does not name it)."""
    both = ImgprovMethod(folder / "db", stage="both")
    local = ImgprovMethod(folder / "db", stage="local")
    baseline = [BaselineMethod(baseline_code, both)] if baseline_code is not None else []
    methods: list[Method] = [
        ImgprovMethod(folder / "db", stage="cascade"),
        *baseline,
        both,
        local,
        ImgprovMethod(folder / "db", stage="global"),
        VerifyOnlyMethod(folder / "db-verify-only"),
        CompressedLocalMethod(folder / "db-verify-only-pq32", NO_LOCAL_INDEX, stage="both"),
        CompressedLocalMethod(folder / "db-pq32", presets.DEFAULT_LOCAL_INDEX, stage="local"),
        RootSiftRansac(local),
        HashBaseline("phash"),
        HashBaseline("dhash"),
        HashBaseline("pdq"),
    ]
    return [method for method in methods if only is None or method.name in only or method in baseline]


def index_method(method: Method, collection: dict[str, Path], folder: Path) -> IndexStats:
    """Index, or reuse an imgprov index built from the same collection (its build cost is kept)."""
    if isinstance(method, BaselineMethod):
        return index_method(method.indexer, collection, folder)
    if not isinstance(method, ImgprovMethod):
        return method.index(collection)
    key = _fingerprint(str(method.db), sorted(collection.items()))
    record = method.db.with_name(method.db.name + "-build.json")
    if record.is_file() and method.db.exists():
        saved = json.loads(record.read_text())
        if saved["key"] == key:
            method.attach(collection)
            return IndexStats(**saved["stats"])
    if method.db.exists():
        _remove_tree(method.db)
    stats = method.index(collection)
    record.write_text(json.dumps({"key": key, "stats": asdict(stats)}))
    return stats


def _remove_tree(path: Path) -> None:
    for child in sorted(path.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    path.rmdir()


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def machine_description() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB RAM, {platform.system()} {platform.release()}"


def git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO)
    except OSError:
        return "unknown"
    return done.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA / "corpus")
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--methods", nargs="*", help="method names to run (default: all)")
    parser.add_argument(
        "--per-set", type=int, help="only the first N queries of each set (default: the size's count)"
    )
    parser.add_argument(
        "--baseline-code",
        type=Path,
        help="a checkout of earlier imgprov code (e.g. a worktree of the previous commit) whose default "
        "search is run beside the new one, over the same index and queries",
    )
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    started = time.perf_counter()
    folder = DATA / "bench" / f"{size.name}-seed{args.seed}"
    try:
        setup = prepare(size, args.seed, args.data, folder)
    except corpus_module.CorpusError as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 1
    split, collection = setup.split, setup.collection
    queries = {kind: items[: args.per_set] for kind, items in setup.queries.items()}
    results = {}
    for method in build_methods(folder, set(args.methods) if args.methods else None, args.baseline_code):
        print(
            f"[{time.perf_counter() - started:7.1f}s] {method.name}: indexing {len(collection)} images",
            flush=True,
        )
        stats = index_method(method, collection, folder)
        print(f"[{time.perf_counter() - started:7.1f}s] {method.name}: querying", flush=True)
        runs = run_method(method, queries, args.top_k)
        if isinstance(method, BaselineMethod):
            method.close()
        results[method.name] = {"index": asdict(stats), **score_runs(runs)}
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    context = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine_description(),
        "command": command.strip(),
        "size": asdict(size),
        "seed": args.seed,
        "collection": {
            "originals": len(split.originals),
            "distractors": setup.distractors,
            "total": len(collection),
        },
        "held_out": len(split.held_out),
        "queries": {kind: len(items) for kind, items in queries.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    section = write_report(context, results)
    print(f"wrote {section} and docs/benchmarks.md in {context['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
