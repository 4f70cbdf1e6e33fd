"""Same search answers from two versions of the code: dump every benchmark query's answers, then diff.

    python -m benchmarks.same_answers dump --code ../baseline --out old.json   # after benchmarks.run
    python -m benchmarks.same_answers diff old.json new.json                 # exit 1 on any difference
    python -m benchmarks.same_answers run --old ../baseline --new .          # both dumps, diff, report

`dump` runs, in a subprocess whose PYTHONPATH is DIR/src, every query of every query set cached under
data/bench/<size>-seed<seed>/queries/ against each imgprov index of that benchmark that exists (the
indexes of `benchmarks.run` with the stages it searches them with, and the object index of
`benchmarks.bench_objects`), with `search(..., top_k=10, unconfirmed=True)`. It records, for each
(index, stage, query), the matches and the unconfirmed candidates: path, rank, role, score, coverage
and inliers, floats as their exact repr. Both versions read the same index files, which are opened
read-only; a logical fingerprint of each index, taken before and after, shows that nothing rewrote it.
The subprocess uses only names the package keeps stable across layouts (`SNIPPET`).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.baseline import code_version

REPO = Path(__file__).resolve().parent.parent
FORMAT = "imgprov-same-answers/1"
TOP_K = 10
TOLERANCE = 1e-6
REPORT = REPO / "docs" / "benchmarks" / "same-answers.md"
# (index folder under the benchmark folder, stages searched): benchmarks.run's methods, then bench_objects'.
INDEXES = (
    ("db", ("both", "local", "global")),
    ("db-verify-only", ("both",)),
    ("db-verify-only-pq32", ("both",)),
    ("db-pq32", ("local",)),
    ("objects/db-with-objects", ("both",)),
)
TRANSIENT = ("-wal", "-shm", "-journal", ".lock")
EXACT_FIELDS = ("path", "rank", "role", "inliers")
CLOSE_FIELDS = ("score", "coverage")

# Runs in the code under test; reads the job (JSON) on stdin and writes the answers (JSON) on stdout.
SNIPPET = """
import json, sys, time
import imgprov
from imgprov import presets
from imgprov.extract.sscd import SSCDExtractor
from imgprov.images import load_image
from imgprov.search import search
from imgprov.storage import open_store

job = json.load(sys.stdin)
conf = presets.search(presets.DEFAULT_SEARCH)


def entry(match):
    return {"path": match.path, "rank": int(match.rank), "role": match.role, "score": float(match.score),
            "coverage": float(match.coverage), "inliers": int(match.inliers)}


def answer(collection, embedder, path, stage):
    try:
        pixels = load_image(path).pixels
        result = search(collection, pixels, conf, stage=stage, top_k=job["top_k"], embedder=embedder,
                        unconfirmed=True)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"matches": [entry(m) for m in result.matches],
            "unconfirmed": [entry(m) for m in result.unconfirmed]}


answers, started = {}, time.perf_counter()
for name, db, stages in job["indexes"]:
    collection = open_store(db)
    embedder = SSCDExtractor(collection.global_conf) if collection.global_conf is not None else None
    for stage in stages:
        key = f"{name}:{stage}"
        answers[key] = {query: answer(collection, embedder, path, stage) for query, path in job["queries"]}
        print(f"[{time.perf_counter() - started:7.1f}s] {key}: {len(job['queries'])} queries",
              file=sys.stderr, flush=True)
    collection.close()
json.dump({"imgprov": imgprov.__file__, "answers": answers}, sys.stdout)
"""


# --- dump ------------------------------------------------------------------------------------------


def bench_folder(size: str, seed: int) -> Path:
    return REPO / "data" / "bench" / f"{size}-seed{seed}"


def load_queries(folder: Path, per_set: int | None = None) -> list[tuple[str, str]]:
    """(set/query id, absolute image path) of every query (or the first `per_set`) of every cached
    query set, in set order."""
    queries = []
    for file in sorted((folder / "queries").glob("*/queries.json")):
        document = json.loads(file.read_text())
        if document.get("format") != "imgprov-queries/1":
            raise SystemExit(f"same_answers: {file}: not an imgprov-queries/1 file")
        for item in document["queries"][:per_set]:
            queries.append((f"{file.parent.name}/{item['query_id']}", str(file.parent / item["image_path"])))
    if not queries:
        raise SystemExit(f"same_answers: no query sets under {folder}; run python -m benchmarks.run first")
    return queries


def existing_indexes(folder: Path, only: Sequence[str] | None = None) -> list[tuple[str, str, list[str]]]:
    """The indexes (all, or those named in `only`) whose build finished: the benchmarks write
    NAME-build.json after it."""
    return [
        (name, str(folder / name), list(stages))
        for name, stages in INDEXES
        if (folder / f"{name}-build.json").is_file() and (not only or name in only)
    ]


def index_fingerprint(db: Path) -> str:
    """sha256 of the index's logical content: its SQLite rows (read-only) and its other files' bytes."""
    digest = hashlib.sha256()
    for file in sorted(db.iterdir()):
        if file.name.endswith(TRANSIENT) or not file.is_file():
            continue
        digest.update(file.name.encode())
        if file.suffix == ".sqlite":
            _hash_rows(file, digest)
        else:
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _hash_rows(file: Path, digest) -> None:
    connection = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    try:
        tables = connection.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        for name, sql in tables:
            digest.update(f"{name}\n{sql}\n".encode())
            if sql and sql.upper().startswith("CREATE TABLE"):
                for row in connection.execute(f'SELECT * FROM "{name}"'):
                    digest.update(repr(row).encode())
    finally:
        connection.close()


def run_snippet(code: Path, job: dict) -> dict:
    """Answers of the code under DIR/src (nothing else on its PYTHONPATH); its progress goes to stderr."""
    env = dict(os.environ, PYTHONPATH=str(code / "src"))
    done = subprocess.run(
        [sys.executable, "-c", SNIPPET],
        input=json.dumps(job),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=code,
    )
    if done.returncode != 0:
        raise SystemExit(f"same_answers: the code under {code / 'src'} failed (exit {done.returncode})")
    result = json.loads(done.stdout)
    if not Path(result["imgprov"]).resolve().is_relative_to((code / "src").resolve()):
        raise SystemExit(f"same_answers: imported {result['imgprov']}, not the code under {code / 'src'}")
    return result


@dataclass(frozen=True)
class Selection:
    """What a dump searches: the benchmark folder, index names (None: all), queries per set (None: all)."""

    folder: Path
    indexes: Sequence[str] | None = None
    per_set: int | None = None


def dump(code: Path, out: Path, selection: Selection, top_k: int = TOP_K) -> dict:
    """Run every query against every existing index in the code under DIR/src; write the answers."""
    code, folder = code.resolve(), selection.folder
    queries = load_queries(folder, selection.per_set)
    indexes = existing_indexes(folder, selection.indexes)
    before = {name: index_fingerprint(Path(db)) for name, db, _ in indexes}
    started = time.perf_counter()
    result = run_snippet(code, {"indexes": indexes, "queries": queries, "top_k": top_k})
    seconds = round(time.perf_counter() - started, 1)
    after = {name: index_fingerprint(Path(db)) for name, db, _ in indexes}
    changed = [name for name in before if before[name] != after[name]]
    if changed:
        print(f"same_answers: warning: searching changed the index files of {changed}", file=sys.stderr)
    document = {
        "format": FORMAT,
        "code": str(code),
        "commit": code_version(code),
        "imgprov": result["imgprov"],
        "bench": str(folder),
        "top_k": top_k,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": seconds,
        "queries": len(queries),
        "indexes": after,
        "changed_indexes": changed,
        "missing_indexes": [name for name, _ in INDEXES if name not in after],
        "answers": result["answers"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}: {len(queries)} queries x {len(result['answers'])} index/stage pairs in {seconds} s")
    return document


# --- diff ------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Per index/stage: queries and how many agree; every difference as one line."""

    queries: dict[str, int] = field(default_factory=dict)
    agree: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not self.differences


def compare_entry(where: str, old: dict, new: dict, tolerance: float) -> list[str]:
    found = [f"{where} {key}: {old[key]!r} -> {new[key]!r}" for key in EXACT_FIELDS if old[key] != new[key]]
    for key in CLOSE_FIELDS:
        if abs(old[key] - new[key]) > tolerance:
            found.append(f"{where} {key}: {old[key]!r} -> {new[key]!r} ({new[key] - old[key]:+.3g})")
    return found


def compare_answer(where: str, old: dict, new: dict, tolerance: float) -> list[str]:
    if "error" in old or "error" in new:
        return (
            [] if old == new else [f"{where}: {old.get('error', 'answer')} -> {new.get('error', 'answer')}"]
        )
    found = []
    for part in ("matches", "unconfirmed"):
        before, after = old[part], new[part]
        if len(before) != len(after):
            paths = [[entry["path"] for entry in side] for side in (before, after)]
            found.append(f"{where} {part}: {len(before)} -> {len(after)} entries: {paths[0]} -> {paths[1]}")
            continue
        for number, (one, other) in enumerate(zip(before, after, strict=True)):
            found.extend(compare_entry(f"{where} {part}[{number}]", one, other, tolerance))
    return found


def compare(old: dict, new: dict, tolerance: float = TOLERANCE) -> Comparison:
    result = Comparison()
    for name in sorted(set(old["indexes"]) | set(new["indexes"])):
        if old["indexes"].get(name) != new["indexes"].get(name):
            result.differences.append(f"{name}: not the same index files in both dumps (or missing in one)")
    for key in sorted(set(old["answers"]) | set(new["answers"])):
        before, after = old["answers"].get(key, {}), new["answers"].get(key, {})
        result.queries[key] = len(set(before) | set(after))
        result.agree[key] = 0
        for query in sorted(set(before) | set(after)):
            if query not in before or query not in after:
                result.differences.append(f"{key} {query}: answered by one dump only")
                continue
            found = compare_answer(f"{key} {query}", before[query], after[query], tolerance)
            result.differences.extend(found)
            result.agree[key] += not found
    return result


def print_comparison(result: Comparison) -> None:
    for key, queries in result.queries.items():
        print(f"{key:32} {result.agree[key]}/{queries} queries agree")
    for line in result.differences:
        print(f"  {line}")
    print("same answers" if result.same else f"{len(result.differences)} differences")


def diff(old_file: Path, new_file: Path, tolerance: float = TOLERANCE) -> Comparison:
    old, new = (json.loads(Path(file).read_text()) for file in (old_file, new_file))
    result = compare(old, new, tolerance)
    print_comparison(result)
    return result


# --- run -------------------------------------------------------------------------------------------


def markdown(command: str, old: dict, new: dict, result: Comparison) -> str:
    verdict = "**same answers**" if result.same else f"**{len(result.differences)} differences**"
    lines = [
        "Reproduce with:",
        "",
        "```sh",
        "python -m benchmarks.run --size small && python -m benchmarks.bench_objects --size small",
        command,
        "```",
        "",
        f"- date: {new['date']}; old code: `{old['commit']}`; new code: `{new['commit']}`",
        f"- {new['queries']} queries of {new['bench']} per index and stage, top_k {new['top_k']} with the "
        f"unconfirmed candidates; scores and coverages compared to {TOLERANCE:g}",
        f"- dump seconds: old {old['seconds']}, new {new['seconds']} (same machine, one after the other)",
        f"- result: {verdict}",
        "",
        "| index:stage | queries | agree |",
        "|---|---|---|",
        *(f"| {key} | {queries} | {result.agree[key]} |" for key, queries in result.queries.items()),
    ]
    if not result.same:
        lines += ["", "First differences:", "", *(f"- {line}" for line in result.differences[:20])]
    return "\n".join(lines) + "\n"


def run_both(old_code: Path, new_code: Path, selection: Selection, out_dir: Path, command: str) -> Comparison:
    old = dump(old_code, out_dir / "old.json", selection)
    new = dump(new_code, out_dir / "new.json", selection)
    result = compare(old, new)
    print_comparison(result)
    REPORT.write_text(markdown(command, old, new, result))
    print(f"wrote {REPORT}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.same_answers", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    dump_parser = commands.add_parser("dump", help="write one version's answers")
    dump_parser.add_argument("--code", type=Path, required=True, help="repository whose src/ is searched")
    dump_parser.add_argument("--out", type=Path, required=True)
    diff_parser = commands.add_parser("diff", help="compare two dumps; exit 1 on any difference")
    diff_parser.add_argument("old", type=Path)
    diff_parser.add_argument("new", type=Path)
    diff_parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    run_parser = commands.add_parser(
        "run", help="dump old, dump new, diff, write " + str(REPORT.relative_to(REPO))
    )
    run_parser.add_argument("--old", type=Path, required=True)
    run_parser.add_argument("--new", type=Path, required=True)
    run_parser.add_argument("--out-dir", type=Path, default=REPO / "data" / "same-answers")
    for sub in (dump_parser, run_parser):
        sub.add_argument("--size", default="small")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--indexes", nargs="+", choices=[name for name, _ in INDEXES], help="default: all")
        sub.add_argument("--per-set", type=int, help="only the first N queries of each set (default: all)")
    args = parser.parse_args(argv)
    if args.command == "diff":
        return 0 if diff(args.old, args.new, args.tolerance).same else 1
    selection = Selection(bench_folder(args.size, args.seed), args.indexes, args.per_set)
    if args.command == "dump":
        dump(args.code, args.out, selection)
        return 0
    command = "python -m benchmarks.same_answers " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    return 0 if run_both(args.old, args.new, selection, args.out_dir, command).same else 1


if __name__ == "__main__":
    sys.exit(main())
