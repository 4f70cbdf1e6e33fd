"""Choose the search cascade's early-exit rule: what each setting saves and what it changes.

    python -m benchmarks.tune_cascade                       # training split: size small, seed 1001
    python -m benchmarks.tune_cascade --max-gap 0 1 2 --grid 8 12

Every query of the benchmark's sets is searched once with stage "both" (every stage, the reference)
and once per setting with stage "cascade", one after the other (the order rotating from query to
query), so that the times compare on a shared machine. Reported per setting and query set: the
share of queries settled at the first look, and the queries whose matches differ from the reference's (a match
lost, or one found only by the cascade); with the mean search time of each. The settings are
chosen on the training split (seed 1001, photos and transforms disjoint from the test queries);
the default rule is the one that changes no answer there while settling the most queries.
Another size or seed (e.g. `--size large --seed 0 --per-set 20`) reports on test queries and is
written to its own section.
Writes docs/benchmarks/cascade.md (and its section of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import shlex
import sys
import time
from collections.abc import Sequence

import numpy as np

from benchmarks.methods import ImgprovMethod
from benchmarks.report import markdown_table, write_section
from benchmarks.run import DATA, SIZES, git_commit, index_method, machine_description, prepare
from imgprov import presets
from imgprov.images import load_image
from imgprov.presets import CascadeConf, SearchConf
from imgprov.search.pipeline import search


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One search of one query: the matched benchmark ids (best first), the ids the query is made of,
    the path, the wall seconds."""

    matches: tuple[str, ...]
    relevant: frozenset[str]
    path: str
    seconds: float


def run_queries(method: ImgprovMethod, queries: dict, runs: dict[str, tuple[SearchConf, str]]) -> dict:
    """{name: {(set, query id): Outcome}} of every query under every (conf, stage) of `runs`; each
    query is searched by all of them in turn, in an order that rotates from query to query, so that
    a change of machine load falls on all alike."""
    collection, embedder = method.collection(), method.embedder()
    outcomes: dict[str, dict] = {name: {} for name in runs}
    names = list(runs)
    for number, (kind, query) in enumerate(
        (kind, query) for kind, items in queries.items() for query in items
    ):
        pixels = load_image(query.image_path).pixels
        for name in names[number % len(names) :] + names[: number % len(names)]:
            conf, stage = runs[name]
            started = time.perf_counter()
            result = search(collection, pixels, conf, stage=stage, top_k=10, embedder=embedder)
            outcomes[name][kind, query.query_id] = Outcome(
                matches=tuple(method.id_of(match.path) for match in result.matches),
                relevant=query.relevant_ids(),
                path=str(result.path),
                seconds=time.perf_counter() - started,
            )
    return outcomes


def compare(reference: dict, cascade: dict) -> dict:
    """Per query set: queries, share settled early, queries that lost or gained a match (a true one:
    an image the query is made of), mean seconds."""
    table = {}
    for kind in dict.fromkeys(kind for kind, _ in reference):
        keys = [key for key in reference if key[0] == kind]
        lost = {key: set(reference[key].matches) - set(cascade[key].matches) for key in keys}
        gained = {key: set(cascade[key].matches) - set(reference[key].matches) for key in keys}
        table[kind] = {
            "queries": len(keys),
            "early_exit": float(np.mean([cascade[key].path == "early-exit" for key in keys])),
            "lost": sum(bool(ids) for ids in lost.values()),
            "lost_true": sum(bool(ids & reference[key].relevant) for key, ids in lost.items()),
            "gained": sum(bool(ids) for ids in gained.values()),
            "gained_true": sum(bool(ids & reference[key].relevant) for key, ids in gained.items()),
            "lost_queries": {key[1]: sorted(ids) for key, ids in lost.items() if ids},
            "reference_ms": 1000 * float(np.mean([reference[key].seconds for key in keys])),
            "cascade_ms": 1000 * float(np.mean([cascade[key].seconds for key in keys])),
        }
    return table


def settings(base: CascadeConf, gaps: Sequence[int], grids: Sequence[int], certain: Sequence[float]):
    for gap, grid, probability in itertools.product(gaps, grids, certain):
        yield dataclasses.replace(
            base,
            name=f"first-look-grid{grid}-gap{gap}-p{round(probability * 1000)}",
            max_gap=gap,
            grid=grid,
            certain=probability,
        )


def markdown(context: dict, results: dict) -> str:
    lines = [
        "Reproduce with:",
        "",
        "```sh",
        context["command"],
        "```",
        "",
        f"- date: {context['date']}; commit: `{context['commit']}`; machine: {context['machine']}",
        f"- benchmark {context['size']}-seed{context['seed']}: {context['images']} images; "
        f"default rule: `{context['default']}`",
        "",
        "Early exit: the share of queries settled at the first look. Lost: queries with a match that "
        "stage `both` reports and the cascade does not (true: an image the query is made of; the "
        "others are images of the same scene or chance matches); gained: the reverse. Times: mean "
        "wall ms per search, stage `both` -> cascade (one process; each query searched by every "
        "rule in turn, the order rotating, so that load changes fall on all alike).",
        "",
    ]
    rows = []
    for name, table in results.items():
        for kind, entry in table.items():
            rows.append(
                [
                    name,
                    kind,
                    str(entry["queries"]),
                    f"{entry['early_exit']:.3f}",
                    f"{entry['lost']} ({entry['lost_true']} true)",
                    f"{entry['gained']} ({entry['gained_true']} true)",
                    f"{entry['reference_ms']:.0f} -> {entry['cascade_ms']:.0f}",
                ]
            )
    lines.append(
        markdown_table(["cascade rule", "set", "queries", "early exit", "lost", "gained", "ms"], rows)
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tune_cascade", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=1001)
    parser.add_argument("--max-gap", type=int, nargs="+", help="max_gap values (default: the preset's)")
    parser.add_argument("--grid", type=int, nargs="+", help="grid values (default: the preset's)")
    parser.add_argument("--certain", type=float, nargs="+", help="certain values (default: the preset's)")
    parser.add_argument("--per-set", type=int, help="only the first N queries of each set")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    folder = DATA / "bench" / f"{size.name}-seed{args.seed}"
    setup = prepare(size, args.seed, DATA / "corpus", folder)
    queries = {kind: items[: args.per_set] for kind, items in setup.queries.items()}
    method = ImgprovMethod(folder / "db", stage="both")
    index_method(method, setup.collection, folder)
    conf = presets.search()
    base = conf.cascade
    if base is None:
        raise SystemExit(f"tune_cascade: search preset {conf.name} has no cascade")
    rules = list(
        settings(
            base, args.max_gap or [base.max_gap], args.grid or [base.grid], args.certain or [base.certain]
        )
    )
    runs = {"both": (conf, "both")} | {
        rule.name: (dataclasses.replace(conf, cascade=rule), "cascade") for rule in rules
    }
    outcomes = run_queries(method, queries, runs)
    results = {rule.name: compare(outcomes["both"], outcomes[rule.name]) for rule in rules}
    for name, table in results.items():
        print(
            name,
            {
                kind: (round(e["early_exit"], 3), e["lost_true"], e["gained_true"])
                for kind, e in table.items()
            },
        )
    context = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": machine_description(),
        "command": "python -m benchmarks.tune_cascade "
        + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "size": size.name,
        "seed": args.seed,
        "images": len(setup.collection),
        "default": base.name,
    }
    name = "cascade" if (size.name, args.seed) == ("small", 1001) else f"cascade_{size.name}_seed{args.seed}"
    section = write_section(name, markdown(context, results), {"context": context, "results": results})
    print(f"wrote {section}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
