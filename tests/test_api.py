"""The Python API (`imgprov.open`, `imgprov.compare`) on real photos: the same answers as the command
line, typed errors for bad input, and writes that the next search sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import imgprov
from imgprov.compare.conf import DEFAULT_COMPARE
from imgprov.errors import ImageError, ImageNotFound
from tests.support import jpeg, photo, write_jpeg


@pytest.fixture(scope="module")
def collection(new_db, photo_paths):
    """Four photos indexed through the API, open for the module's tests (which do not modify it)."""
    with imgprov.open(new_db()) as opened:
        report = opened.index(photo_paths[:4])
        assert len(report.added) == 4 and not report.failed
        yield opened


def test_search_finds_a_jpeg_copy_as_the_command_line_does(collection, photo_paths, tmp_path):
    original = photo_paths[0]
    query = write_jpeg(tmp_path / "copy.jpg", photo(original.name)[:, ::-1], quality=50)
    result = collection.search(query, top_k=3)
    assert isinstance(result, imgprov.SearchResult) and isinstance(result.matches[0], imgprov.Match)
    assert Path(result.matches[0].path).name == original.name and result.matches[0].role == "host"
    done = subprocess.run(
        [sys.executable, "-m", "imgprov", "search", "--db", collection.db, "--json", "--top-k=3", str(query)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert {**result.to_json(), "timings": None} == {**printed, "timings": None}


def test_search_takes_pixels(collection, photo_paths):
    pixels = jpeg(photo(photo_paths[1].name), 70)
    result = collection.search(pixels, top_k=1)
    assert [Path(match.path).name for match in result.matches] == [photo_paths[1].name]
    assert result.query == "" and result.credentials is None


@pytest.mark.parametrize(
    "image", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), [[0, 0, 0]]], ids=str
)
def test_unusable_pixels_raise_an_image_error(collection, image):
    with pytest.raises(ImageError, match="expected"):
        collection.search(image)
    with pytest.raises(ImageError, match="expected"):
        imgprov.compare(image, np.zeros((8, 8, 3), np.uint8))


def test_a_missing_file_raises_image_not_found(collection, tmp_path):
    with pytest.raises(ImageNotFound):
        collection.search(tmp_path / "missing.jpg")
    assert issubclass(ImageNotFound, imgprov.ImgprovError)


def test_index_reports_unchanged_files_and_skipped_paths(collection, photo_paths, tmp_path):
    report = collection.index([photo_paths[0], tmp_path / "missing.png"])
    assert report.added == [] and report.unchanged == [str(photo_paths[0].resolve())]
    assert [path for path, _ in report.failed] == [str(tmp_path / "missing.png")]
    assert collection.info()["images"] == 4


def test_remove_takes_an_image_out_of_the_next_search(new_db, photo_paths):
    with imgprov.open(new_db()) as opened:
        opened.index(photo_paths[:2])
        query = photo(photo_paths[0].name)
        assert opened.search(query).matches
        removal = opened.remove([photo_paths[0], "/not/indexed.png"])
        assert removal == imgprov.Removal([str(photo_paths[0].resolve())], ["/not/indexed.png"])
        assert opened.search(query).matches == ()
        assert opened.info()["images"] == 1


def test_compare_a_copy_with_its_original(photo_paths, tmp_path):
    original = photo_paths[2]
    query = write_jpeg(tmp_path / "copy.jpg", photo(original.name), quality=60)
    comparison = imgprov.compare(query, original)
    assert isinstance(comparison, imgprov.Comparison) and comparison.verdict == "benign"
    assert imgprov.compare(photo(original.name), original, conf=DEFAULT_COMPARE).verdict == "benign"
