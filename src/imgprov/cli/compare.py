"""The `imgprov compare` command and the helper behind `imgprov search --explain`.

`register(app)` adds the command to the main Typer app; the CLI module calls it. Errors are
`ImgprovError`s, which the main entry point turns into one line on stderr.

A cold `imgprov compare` is mostly imports: this module imports only what the command runs (the
compare stage, image loading), and the pictures, rich tables, search results and the stores
where they are used, so that `imgprov.cli.main` can run the command without the rest of the CLI
(`standalone_main`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from imgprov.cli.exits import run
from imgprov.compare.conf import COMPARES, DEFAULT_COMPARE, CompareConf, compare_preset
from imgprov.images import load_image

if TYPE_CHECKING:
    import numpy as np

    from imgprov.compare.comparison import Comparison
    from imgprov.results import SearchResult
    from imgprov.storage import Store

stdout = Console(soft_wrap=True)


def compare_command(
    query: Annotated[Path, typer.Argument(help="The image in circulation.")],
    original: Annotated[Path, typer.Argument(help="The candidate original.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (the last line).")] = False,
    mask: Annotated[Path | None, typer.Option("--mask", help="Write the changed-pixel mask (PNG).")] = None,
    heatmap: Annotated[Path | None, typer.Option("--heatmap", help="Write the raw heatmap (PNG).")] = None,
    overlay: Annotated[
        Path | None,
        typer.Option("--overlay", help="Write the heatmap over the query beside the original (PNG)."),
    ] = None,
    preset: Annotated[
        str, typer.Option(help=f"Compare preset: {', '.join(sorted(COMPARES))}.")
    ] = DEFAULT_COMPARE,
) -> None:
    """Align QUERY with ORIGINAL, say whether it is benign, manipulated or distinct, and show the edits."""
    from imgprov.compare.comparison import compare_images

    conf = compare_preset(preset)
    query_image = load_image(query)
    original_image = load_image(original)
    comparison = compare_images(query_image.pixels, original_image.pixels, conf)
    write_pictures(comparison, query_image.pixels, original_image.pixels, mask, heatmap, overlay)
    if as_json:
        print(
            json.dumps({"query": str(query), "original": str(original), **comparison.to_json()}), flush=True
        )
    else:
        print_comparison(comparison, f"{query} vs {original}")


def register(app: typer.Typer) -> None:
    """Add `imgprov compare` to the main app."""
    app.command(name="compare")(compare_command)


def standalone_main(arguments: list[str]) -> None:
    """`imgprov compare ARGUMENTS...` without importing the rest of the CLI (search, storage,
    indexing, serving): the same command, help and exit statuses as through the main app, both
    ending through `imgprov.cli.exits.run`."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(name="compare")(compare_command)
    app.callback()(lambda: None)
    run(app, ["compare", *arguments])


def write_pictures(
    comparison: Comparison,
    query: np.ndarray,
    original: np.ndarray,
    mask: Path | None,
    heatmap: Path | None,
    overlay: Path | None,
) -> None:
    """Write whichever of the mask, heatmap and overlay PNGs were asked for."""
    if mask is None and heatmap is None and overlay is None:
        return
    from imgprov.pictures.compare import write_heatmap, write_mask, write_overlay

    if mask is not None:
        write_mask(mask, comparison)
    if heatmap is not None:
        write_heatmap(heatmap, comparison)
    if overlay is not None:
        write_overlay(overlay, query, original, comparison)


def explain_top_match(
    collection: Store, query: np.ndarray, result: SearchResult, conf: CompareConf
) -> tuple[np.ndarray, Comparison] | None:
    """Compare the query with its best match (`search --explain`); None when nothing matched.

    Returns the match's pixels (for pictures) and the comparison; the match's indexed keypoints are
    reused.
    """
    from imgprov.compare.comparison import compare_images

    if not result.matches:
        return None
    match = result.matches[0]
    original = load_image(match.path).pixels
    features = collection.local_features(match.image_id)
    return original, compare_images(query, original, conf, original_features=features)


def print_comparison(comparison: Comparison, title: str) -> None:
    """A short human-readable summary."""
    probabilities = ", ".join(f"{name} {value:.3f}" for name, value in comparison.probabilities.items())
    stdout.print(f"{title}: [bold]{comparison.verdict}[/bold] ({probabilities})", highlight=False)
    if comparison.transform is not None:
        shown = int(comparison.comparable.sum())
        changed = int(comparison.mask.sum())
        stdout.print(
            f"aligned with {comparison.inliers} keypoint matches; "
            f"{changed / max(shown, 1):.1%} of the comparable area changed",
            highlight=False,
        )
    if comparison.regions:
        from rich.table import Table

        table = Table(title="changed regions (query pixels)", title_justify="left")
        for column in ("x0", "y0", "x1", "y1", "score", "area"):
            table.add_column(column, justify="right")
        for region in comparison.regions:
            table.add_row(*map(str, region.box), f"{region.score:.3f}", str(region.area))
        stdout.print(table)
