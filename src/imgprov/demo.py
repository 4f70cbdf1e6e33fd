"""`make demo`: index real photos, make a recompressed, a flipped, a spliced and an unrelated query,
search them all through the Python API (`imgprov.open`) and print what was found.

The originals are the 14 scikit-image photos of the benchmark corpus (installed with scikit-image),
plus up to 20 corpus photos when `make corpus` has fetched them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

import imgprov
from imgprov.errors import ImgprovError
from imgprov.images import load_image
from imgprov.pictures.raster import write_png
from imgprov.pictures.search import draw_vote_map
from imgprov.results import SearchResult

SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)
UNRELATED_PHOTO = "ihc.png"
CORPUS_PHOTOS = Path("data/corpus/photos")


@dataclass(frozen=True)
class DemoQuery:
    path: Path
    description: str
    expected: tuple[str, ...]


def skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def collect_originals(folder: Path, corpus_limit: int) -> list[Path]:
    """Copy the original files (bytes unchanged) into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [skimage_data_dir() / name for name in SKIMAGE_PHOTOS]
    if CORPUS_PHOTOS.is_dir():
        sources += sorted(path for path in CORPUS_PHOTOS.iterdir() if path.is_file())[:corpus_limit]
    copies = []
    for source in sources:
        target = folder / source.name
        if not target.exists():
            shutil.copyfile(source, target)
        copies.append(target)
    return copies


def make_queries(originals: Path, folder: Path) -> list[DemoQuery]:
    """Write the demo queries (JPEG, like images found online) and say what each should find."""
    folder.mkdir(parents=True, exist_ok=True)
    coffee = _read(originals / "coffee.png")
    rocket = _read(originals / "rocket.jpg")
    astronaut = _read(originals / "astronaut.png")
    chelsea = _read(originals / "chelsea.png")
    unrelated = _read(skimage_data_dir() / UNRELATED_PHOTO)

    recompressed = cv2.resize(coffee, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    flipped = _rotate(rocket[:, ::-1], degrees=8)
    spliced = astronaut.copy()
    cat_face = cv2.resize(chelsea[40:220, 120:300], (150, 150), interpolation=cv2.INTER_AREA)
    spliced[300:450, 330:480] = cat_face
    queries = [
        (
            "recompressed.jpg",
            recompressed,
            40,
            "coffee, resized to 60 % and saved at JPEG quality 40",
            ("coffee",),
        ),
        ("flipped.jpg", flipped, 75, "rocket, mirrored and rotated by 8 degrees", ("rocket",)),
        (
            "spliced.jpg",
            spliced,
            70,
            "astronaut with the cat's face from chelsea pasted in",
            ("astronaut", "chelsea"),
        ),
        ("unrelated.jpg", unrelated, 85, "a photo that is not in the collection", ()),
    ]
    written = []
    for name, rgb, quality, description, expected in queries:
        path = folder / name
        cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        written.append(DemoQuery(path=path, description=description, expected=expected))
    return written


def run_demo(workdir: Path, corpus_limit: int = 20) -> list[tuple[DemoQuery, SearchResult]]:
    """Index the originals into `workdir/db`, search every query, write vote maps beside them."""
    originals = collect_originals(workdir / "originals", corpus_limit)
    queries = make_queries(workdir / "originals", workdir / "queries")
    results = []
    with imgprov.open(workdir / "db") as collection:
        report = collection.index(originals)
        if report.failed:
            raise ImgprovError(f"could not index {report.failed[0][0]}: {report.failed[0][1]}")
        for query in queries:
            result = collection.search(query.path, top_k=5)
            write_png(query.path.with_suffix(".votes.png"), draw_vote_map(_read(query.path), result))
            results.append((query, result))
    return results


def print_results(results: list[tuple[DemoQuery, SearchResult]], console: Console) -> None:
    table = Table(title="imgprov demo: which originals is each query made of?", show_lines=True)
    for column in ("query", "what it is", "found (inliers, region in the query)", "seconds"):
        table.add_column(column)
    for query, result in results:
        found = (
            "\n".join(
                f"{Path(match.path).stem} ({match.inliers}, {_box(match.regions[0].query_box)})"
                for match in result.matches
            )
            or "no match in the collection"
        )
        table.add_row(query.path.name, query.description, found, f"{sum(result.timings.values()):.2f}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("out/demo"))
    parser.add_argument("--corpus-limit", type=int, default=20)
    args = parser.parse_args(argv)
    console = Console()
    try:
        results = run_demo(args.workdir, args.corpus_limit)
    except ImgprovError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    print_results(results, console)
    misses = [query.path.name for query, result in results if not _found_expected(query, result)]
    console.print(f"index: {args.workdir / 'db'}   vote maps: {args.workdir / 'queries'}/*.votes.png")
    if misses:
        console.print(f"[red]unexpected result for: {', '.join(misses)}[/red]")
        return 1
    console.print("every query found exactly its originals")
    return 0


def _found_expected(query: DemoQuery, result: SearchResult) -> bool:
    found = {Path(match.path).stem for match in result.matches}
    return found == set(query.expected)


def _read(path: Path) -> np.ndarray:
    return load_image(path).pixels


def _rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(np.ascontiguousarray(rgb), matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def _box(box: tuple[float, float, float, float]) -> str:
    return f"x {box[0]:.0f}-{box[2]:.0f}, y {box[1]:.0f}-{box[3]:.0f}"


if __name__ == "__main__":
    sys.exit(main())
