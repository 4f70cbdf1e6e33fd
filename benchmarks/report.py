"""The benchmark report: docs/benchmarks.md, assembled from the sections each benchmark script writes.

Every script writes its own section as docs/benchmarks/<name>.md (and .json beside it) and then
calls `assemble`, so docs/benchmarks.md always holds the latest figures of every script, each with
the command that produced it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

SET_TITLES = {
    "benign": "Benign (resize + JPEG 40-90, then ImageNet-C corruptions and/or crop, pad, rotate, flip)",
    "manip": "Manip (splice, inpainting removal, copy-move, recolour, text/logo, local blur)",
    "manip+benign": "Manip+Benign",
    "composite": "Composite (objects of 1-3 donor photos pasted into a host)",
}
RETRIEVAL_COLUMNS = ("IR@1", "IR@10", "IR@100", "mAP")
COMPOSITE_COLUMNS = ("host R@1", "donor R@10", "total R@10", "IR@1", "mAP")


REPO = Path(__file__).resolve().parent.parent
SECTIONS_DIR = REPO / "docs" / "benchmarks"
REPORT = REPO / "docs" / "benchmarks.md"
SECTION_ORDER = (
    "retrieval",
    "retrieval_medium",
    "retrieval_large",
    "cascade",
    "global_scaling",
    "capacity",
    "stores",
    "sscd_speed",
    "objects",
    "compare",
    "service",
    "stress",
)
SECTION_TITLES = {
    "retrieval": "Retrieval: imgprov and the baselines on the query sets",
    "retrieval_medium": "Retrieval at size medium (2,000 distractors)",
    "retrieval_large": "Retrieval at size large (10,000 distractors)",
    "global_scaling": "Global stage at scale (1k to 1M vectors)",
    "capacity": "Capacity: bytes per image, extraction and search cost (model in docs/scaling.md)",
    "stores": "The same collection in both stores (embedded, Milvus + PostgreSQL)",
    "sscd_speed": "Global descriptor extraction speed",
    "objects": "Composites: object embeddings and donor retrieval",
    "compare": "Compare: verdicts and localization of edits",
    "service": "HTTP service load test",
    "stress": "Reliability: fault injection and load",
}


def write_section(name: str, markdown: str, figures: object) -> Path:
    """Write docs/benchmarks/<name>.md and .json, then reassemble docs/benchmarks.md."""
    SECTIONS_DIR.mkdir(parents=True, exist_ok=True)
    path = SECTIONS_DIR / f"{name}.md"
    path.write_text(markdown.rstrip() + "\n")
    path.with_suffix(".json").write_text(json.dumps(figures, indent=1) + "\n")
    assemble()
    return path


def assemble() -> None:
    """docs/benchmarks.md: every section present, in a fixed order, behind a table of contents."""
    present = [name for name in SECTION_ORDER if (SECTIONS_DIR / f"{name}.md").is_file()]
    present += sorted(p.stem for p in SECTIONS_DIR.glob("*.md") if p.stem not in SECTION_ORDER)
    lines = [
        "# Benchmarks",
        "",
        "Assembled from docs/benchmarks/*.md, which the scripts under benchmarks/ write; do not edit by",
        "hand. Each section names the command that produced it, its date, commit and machine.",
        "",
    ]
    lines += [f"{number}. [{_title(name)}](#{_anchor(name)})" for number, name in enumerate(present, 1)]
    for name in present:
        body = (SECTIONS_DIR / f"{name}.md").read_text().rstrip()
        lines += ["", f'<a id="{_anchor(name)}"></a>', "", f"## {_title(name)}", "", body]
    REPORT.write_text("\n".join(lines) + "\n")


def _title(name: str) -> str:
    return SECTION_TITLES.get(name, name.replace("_", " "))


def _anchor(name: str) -> str:
    return "section-" + name.replace("_", "-")


def write_report(context: dict, results: dict) -> Path:
    """The retrieval section of the run's size ("retrieval" for small, "retrieval_<size>" else):
    one table per query set, no-match decisions and costs."""
    size = context["size"]["name"]
    name = "retrieval" if size == "small" else f"retrieval_{size}"
    markdown = "\n".join(_markdown(context, results))
    return write_section(name, markdown, {"context": context, "results": results})


def _markdown(context: dict, results: dict) -> list[str]:
    collection = context["collection"]
    lines = [
        "Reproduce with:",
        "",
        "```sh",
        "make corpus   # fetches and verifies the real photos (once)",
        context["command"],
        "```",
        "",
        f"- date: {context['date']}; commit: `{context['commit']}`",
        f"- machine: {context['machine']}",
        f"- collection: {collection['originals']} corpus photos + {collection['distractors']} distractor "
        f"tiles = {collection['total']} images; {context['held_out']} held-out photos for the Distinct set",
        "- queries per set: " + ", ".join(f"{kind} {count}" for kind, count in context["queries"].items()),
        f"- seed {context['seed']}; whole run {context['wall_seconds']} s",
        "",
        "Ties in scores are broken in the worst case; images of the same scene that are not the answer are",
        "ignored, not counted as errors. IR@k: the fraction of queries whose original is in the top k.",
        "",
    ]
    for kind, title in SET_TITLES.items():
        columns = COMPOSITE_COLUMNS if kind == "composite" else RETRIEVAL_COLUMNS
        rows = [(name, result["sets"].get(kind)) for name, result in results.items()]
        rows = [(name, entry) for name, entry in rows if entry]
        if not rows:
            continue
        lines += [
            f"### {title}",
            "",
            markdown_table(
                ["method", *columns],
                [[name, *(_number(entry.get(c)) for c in columns)] for name, entry in rows],
            ),
            "",
        ]
    lines += ["### No match in the collection", ""]
    lines += [
        "Precision: of the queries a method answered with *no match*, the fraction that really had none "
        "(Distinct); recall: of the Distinct queries, the fraction answered with *no match*.",
        "",
        markdown_table(
            ["method", "precision", "recall"],
            [
                [name, _number(r["no_match"]["precision"]), _number(r["no_match"]["recall"])]
                for name, r in results.items()
            ],
        ),
        "",
        "### Cost",
        "",
        "Index time and size are per collection image; query times are per query (mean / p95, ms).",
        "",
    ]
    stages = ("extract", "search", "verify", "total")
    rows = []
    for name, result in results.items():
        index = result["index"]
        row = [
            name,
            f"{index['seconds'] / max(index['images'], 1) * 1000:.0f}",
            _bytes(index["bytes"] / max(index["images"], 1)),
        ]
        for stage in stages:
            summary = result["seconds"].get(stage)
            row.append(f"{summary['mean'] * 1000:.0f} / {summary['p95'] * 1000:.0f}" if summary else "-")
        rows.append(row)
    lines.append(markdown_table(["method", "index ms/image", "index bytes/image", *stages], rows))
    return lines + _early_exit_table(results)


def _early_exit_table(results: dict) -> list[str]:
    """The share of each set's queries that the search cascade settled at its first look."""
    shares = {name: result["early_exit"] for name, result in results.items() if result.get("early_exit")}
    if not shares:
        return []
    kinds = list(dict.fromkeys(kind for entry in shares.values() for kind in entry))
    return [
        "",
        "### Search paths",
        "",
        "The share of each set's queries that the search cascade settled at its first look (global "
        "shortlist + one light verification); the others went on to every stage.",
        "",
        markdown_table(
            ["method", *kinds],
            [[name, *(_number(entry.get(kind)) for kind in kinds)] for name, entry in shares.items()],
        ),
    ]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of string cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
