"""The `imgprov` command line: it parses arguments and chains the pipeline stages, nothing more."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from imgprov import __version__, presets
from imgprov.cli.compare import register as register_compare
from imgprov.cli.exits import run
from imgprov.cli.options import DbOption, TrustOption
from imgprov.cli.serve import register as register_serve
from imgprov.errors import ImgprovError
from imgprov.extract.objects.conf import OBJECT_PRESETS
from imgprov.extract.sscd import GLOBAL_PRESETS
from imgprov.results import STAGE_CHOICES, SearchResult, SearchStage

if TYPE_CHECKING:
    from imgprov.provenance import TrustAnchors

# Each command imports what only it uses when it runs, so that `imgprov search` does not load the
# comparison's networks, Ray or the server before its first answer.

app = typer.Typer(
    name="imgprov",
    help="Find the originals an image is made of, verify them, and localize what was changed.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


@app.command()
def index(
    db: DbOption,
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders (searched recursively).")
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help=f"Local-feature preset, fixed when the index is created: {_choices(presets.LOCAL_FEATURES)}."
        ),
    ] = None,
    vectors: Annotated[
        str | None,
        typer.Option(
            help=f"Local vector-index preset (OS2OS voting): {_choices(presets.LOCAL_INDEXES)}, or none "
            "(local features only verify the global and object shortlists; needs --global)."
        ),
    ] = None,
    local_storage: Annotated[
        str | None,
        typer.Option(
            help=f"How each image's local features are stored: {_choices(presets.LOCAL_STORAGES)} "
            f"(default {presets.DEFAULT_LOCAL_STORAGE}, exact; rootsift-pq32: 44 instead of 144 bytes per "
            "keypoint, for --vectors none); fixed when the index is created."
        ),
    ] = None,
    global_descriptor: Annotated[
        str | None,
        typer.Option(
            "--global",
            help=f"Global-descriptor preset: {_choices(GLOBAL_PRESETS)}, fast, or none (local stage only).",
        ),
    ] = None,
    global_vectors: Annotated[
        str | None, typer.Option(help=f"Global vector-index preset: {_choices(presets.GLOBAL_INDEXES)}.")
    ] = None,
    objects: Annotated[
        str | None,
        typer.Option(
            help=f"Object preset (OE-SIR object embeddings, for composites' donors): "
            f"{_choices(OBJECT_PRESETS)}, or none (the default); fixed when the index is created."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Extraction threads (with --ray: worker processes).")
    ] = os.cpu_count() or 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per transaction.")] = 32,
    trust_anchors: TrustOption = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Extract on Ray workers: 'local' (a cluster of --workers processes here) or ADDRESS.",
        ),
    ] = None,
    listing: Annotated[
        Path | None,
        typer.Option(
            "--list", help="With --ray: a file of paths or file://, http(s)://, s3:// URLs, one a line."
        ),
    ] = None,
) -> None:
    """Add images to the index; unchanged files are skipped, changed files replaced.

    C2PA content credentials found in a file are validated and stored with the image.
    """
    from imgprov.indexing.pipeline import discover_images, index_paths
    from imgprov.indexing.ray import ClusterReport, RayConf, index_sources, ray_cluster, resolve_sources
    from imgprov.storage import store_writer
    from imgprov.storage.records import CollectionPresets

    if listing is not None and ray is None:
        raise typer.BadParameter("--list needs --ray")
    if not paths and listing is None:
        raise typer.BadParameter("give image files or folders (or --ray with --list)")
    paths = paths or []
    files, missing = discover_images(paths) if ray is None else resolve_sources(paths, listing)
    trust = _trust(trust_anchors)
    cluster = RayConf(ray, workers) if ray is not None else None
    with (
        ray_cluster(cluster) if cluster is not None else contextlib.nullcontext(),
        store_writer(
            db,
            presets=CollectionPresets(
                local_features=features,
                local_index=vectors,
                local_storage=local_storage,
                global_descriptor=global_descriptor,
                global_index=global_vectors,
                objects=objects,
            ),
        ) as collection,
        _progress() as progress,
    ):
        task = progress.add_task("indexing", total=len(files))
        advance = functools.partial(progress.advance, task)
        if cluster is None:
            report = index_paths(
                collection, files, batch_size=batch_size, workers=workers, progress=advance, trust=trust
            )
        else:
            report = index_sources(
                collection, files, cluster, batch_size=batch_size, progress=advance, trust=trust
            )
    failures = missing + report.failed
    for _, message in failures:
        stderr.print(f"imgprov: skipped {message}", markup=False, highlight=False)
    counts = (len(report.added), len(report.replaced), len(report.unchanged), len(failures))
    stderr.print("indexed {} new, {} changed, {} unchanged, {} failed".format(*counts), highlight=False)
    if isinstance(report, ClusterReport) and report.nodes:
        stderr.print(_nodes_line(report.nodes), highlight=False)
    if failures:
        raise typer.Exit(1)


@app.command()
def search(
    queries: Annotated[list[Path], typer.Argument(help="Query images.")],
    db: DbOption,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Most matches to report per query.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query per line.")] = False,
    unconfirmed: Annotated[
        bool,
        typer.Option(
            "--unconfirmed",
            help="Also list the candidates ranked after the matches, below the match threshold, "
            "up to --top-k places in all (JSON: `unconfirmed`).",
        ),
    ] = False,
    preset: Annotated[
        str, typer.Option(help=f"Search preset: {_choices(presets.SEARCHES)}.")
    ] = presets.DEFAULT_SEARCH,
    stage: Annotated[
        str,
        typer.Option(
            help=f"Stages to run: {STAGE_CHOICES}. The cascade stops after the global shortlist and one "
            "light verification when that settles the query, else runs both."
        ),
    ] = SearchStage.CASCADE,
    vote_map: Annotated[
        Path | None, typer.Option("--vote-map", help="Write the OS2OS vote density over the query (PNG).")
    ] = None,
    overlay: Annotated[
        Path | None,
        typer.Option("--overlay", help="Write the query with each match's regions outlined by role (PNG)."),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Compare the query with its top match: verdict and edits.")
    ] = False,
    explain_overlay: Annotated[
        Path | None,
        typer.Option(
            "--explain-overlay", help="With --explain: the edits' heatmap beside the original (PNG)."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write a provenance report (JSON with a C2PA-style ingredient list)."),
    ] = None,
    trust_anchors: TrustOption = None,
) -> None:
    """Find the originals of each query image in the index.

    Search is by content; a query's own C2PA credentials are reported beside the matches and
    compared with the matched originals' stored ones.
    """
    from imgprov.cli.report import provenance_report
    from imgprov.extract.models import sscd_extractor
    from imgprov.images import load_image, read_image_bytes
    from imgprov.pictures.raster import write_png
    from imgprov.provenance import mime_type_for, read_manifest
    from imgprov.search.pipeline import search as run_search
    from imgprov.storage import open_store

    conf = presets.search(preset)
    trust = _trust(trust_anchors)
    collection = open_store(db)
    wants_global = collection.global_conf is not None and stage != "local"
    embedder = sscd_extractor(collection.global_conf) if wants_global else None
    failed = 0
    for number, query in enumerate(queries):
        try:
            data = read_image_bytes(query)
            image = load_image(data, name=str(query))
        except ImgprovError as exc:
            failed += 1
            _report_query_error(query, exc, as_json)
            continue
        credentials = read_manifest(data, mime_type_for(image.format), trust=trust)
        result = run_search(
            collection,
            image.pixels,
            conf,
            stage=stage,
            top_k=top_k,
            query_name=str(query),
            embedder=embedder,
            query_credentials=credentials,
            unconfirmed=unconfirmed,
        )
        numbered = functools.partial(_numbered, number=number, total=len(queries))
        if vote_map is not None:
            from imgprov.pictures.search import draw_vote_map

            write_png(numbered(vote_map), draw_vote_map(image.pixels, result))
        if overlay is not None:
            from imgprov.pictures.search import draw_roles

            write_png(numbered(overlay), draw_roles(image.pixels, result))
        if report is not None:
            _write_json(numbered(report), provenance_report(collection, result, image.sha256, credentials))
        explained = _explain(collection, image.pixels, result) if explain else None
        if explained is not None and explain_overlay is not None:
            from imgprov.pictures.compare import write_overlay

            write_overlay(numbered(explain_overlay), image.pixels, explained[0], explained[1])
        if as_json:
            document = result.to_json()
            if explain:
                document["explain"] = explained[1].to_json() if explained is not None else None
            print(json.dumps(document), flush=True)
        else:
            _print_result_table(result)
            if explained is not None:
                from imgprov.cli.compare import print_comparison

                print_comparison(explained[1], f"{result.query} vs {result.matches[0].path}")
    if failed:
        raise typer.Exit(1)


@app.command()
def remove(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Indexed files, folders whose images to remove, or URLs and URL prefixes "
            "(s3://BUCKET/FOLDER/) of images indexed from a listing."
        ),
    ],
    db: DbOption,
) -> None:
    """Remove images from the index."""
    from imgprov.indexing.pipeline import remove_paths
    from imgprov.storage import store_writer

    with store_writer(db, create=False) as collection:
        removed, not_found = remove_paths(collection, paths)
    for path in not_found:
        stderr.print(f"imgprov: not in the index: {path}", markup=False, highlight=False)
    stderr.print(f"removed {len(removed)} images", highlight=False)
    if not_found:
        raise typer.Exit(1)


@app.command()
def info(
    db: DbOption,
    path: Annotated[
        Path | None, typer.Argument(help="An indexed image: show its record and credentials.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Describe the index, or one indexed image with its full C2PA manifest."""
    from imgprov.storage import open_store
    from imgprov.storage.info import image_info

    collection = open_store(db)
    if path is not None:
        print(json.dumps(image_info(collection, path), indent=None if as_json else 1))
        return
    summary = collection.describe()
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(show_header=False, box=None)
    for key, value in summary.items():
        if key != "events":
            table.add_row(key, str(value))
    stdout.print(table)
    for event in summary["events"]:
        stdout.print(f"  {event['time']}  {event['kind']}  {json.dumps(event['detail'])}", highlight=False)


@app.command()
def check(
    db: DbOption,
    repair: Annotated[
        bool, typer.Option(help="Rebuild vector files from the catalogue and delete strays.")
    ] = False,
) -> None:
    """Verify that the catalogue and the vector files agree (and repair them)."""
    from imgprov.storage import open_store, store_writer
    from imgprov.storage.check import check_originals

    if repair:
        with store_writer(db, create=False) as collection:
            report = collection.check(repair=True)
            check_originals(report, db, collection.catalogue, repair=True)
    else:
        store = open_store(db)
        report = store.check(repair=False)
        check_originals(report, db, store.catalogue, repair=False)
    for line in report.lines():
        stdout.print(line, markup=False, highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def migrate(
    source: Annotated[str, typer.Option("--from", help="The collection to copy (a --db value).")],
    target: Annotated[str, typer.Option("--to", help="Where to copy it (a --db value), created if new.")],
    batch_size: Annotated[int, typer.Option(min=1, help="Images per write of the target.")] = 256,
) -> None:
    """Copy a collection to another store (embedded <-> Milvus + PostgreSQL), ids and all.

    Nothing is extracted again; a re-run after an interruption continues where it stopped, and the
    image and vector counts of both stores are compared at the end.
    """
    from imgprov.storage import open_store, store_writer
    from imgprov.storage.migrate import migrate as run_migration
    from imgprov.storage.migrate import source_presets

    origin = open_store(source)
    with store_writer(target, presets=source_presets(origin)) as destination, _progress() as progress:
        task = progress.add_task("copying", total=origin.catalogue.image_count())
        report = run_migration(
            origin, destination, batch_size=batch_size, progress=lambda n: progress.advance(task, n)
        )
    counts = ", ".join(f"{count} {name} vectors" for name, count in report.vectors.items())
    stderr.print(
        f"copied {report.copied} images ({report.already} already there); both hold {report.images} images, "
        f"{counts}",
        highlight=False,
    )


@app.callback(invoke_without_command=True)
def _version(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        print(f"imgprov {__version__}")
        raise typer.Exit(0)


register_compare(app)
register_serve(app)


def main() -> None:
    """Entry point: every error becomes one line on stderr and a non-zero exit status."""
    run(app, interrupted="interrupted; completed batches are kept")


def _nodes_line(nodes: Mapping[str, int]) -> str:
    """How the sources of a --ray run were spread, e.g. "Ray workers on 2 nodes handled 14 sources
    (7 and 7)"."""
    counts = sorted(nodes.values(), reverse=True)
    line = f"Ray workers on {_count(len(counts), 'node')} handled {_count(sum(counts), 'source')}"
    if len(counts) > 1:
        line += f" ({', '.join(map(str, counts[:-1]))} and {counts[-1]})"
    return line


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _trust(path: Path | None) -> TrustAnchors | None:
    from imgprov.provenance import TrustAnchors

    return TrustAnchors.from_file(path) if path is not None else None


def _explain(collection, pixels, result: SearchResult):
    """The comparison of the query with its top match (`imgprov.cli.compare.explain_top_match`)."""
    from imgprov.cli.compare import explain_top_match
    from imgprov.compare.conf import compare_preset

    return explain_top_match(collection, pixels, result, compare_preset())


def _write_json(path: Path, document: dict) -> None:
    try:
        path.write_text(json.dumps(document, indent=1) + "\n")
    except OSError as exc:
        raise ImgprovError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _choices(table) -> str:
    return ", ".join(sorted(table))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )


def _numbered(path: Path, number: int, total: int) -> Path:
    return path if total == 1 else path.with_name(f"{path.stem}-{number + 1}{path.suffix}")


def _report_query_error(query: Path, exc: ImgprovError, as_json: bool) -> None:
    stderr.print(f"imgprov: error: {exc}", markup=False, highlight=False)
    if as_json:
        print(json.dumps({"query": str(query), "error": str(exc), "matches": []}), flush=True)


def _print_result_table(result: SearchResult) -> None:
    title = f"{result.query}: " + (
        f"{len(result.matches)} matches" if result.matches else "no match in the collection"
    )
    table = Table(title=title, title_justify="left")
    for column in ("rank", "score", "inliers", "regions"):
        table.add_column(column, justify="right")
    table.add_column("path", overflow="fold")
    for match in result.matches:
        table.add_row(
            str(match.rank), f"{match.score:.3f}", str(match.inliers), str(len(match.regions)), match.path
        )
    if result.unconfirmed:
        table.add_section()
    for match in result.unconfirmed:
        table.add_row(
            str(match.rank),
            f"{match.score:.3f}",
            str(match.inliers),
            str(len(match.regions)),
            f"{match.path} (unconfirmed)",
        )
    stdout.print(table)
