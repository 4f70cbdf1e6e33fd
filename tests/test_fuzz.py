"""Hostile and broken input (issue 8): the image loader, the upload path and `/v1/search` get every
named hostile case (tests/hostile.py) and hypothesis-generated mutations of valid files in every
format; each input decodes or raises a typed `ImageError` (a 4xx JSON line from the server), in
bounded time and memory. Files that are not regular files, symlinks and paths outside the indexed
folder are refused by the loader and by `imgprov index` without hanging.

The number of inputs tried is printed at the end of the module; `make stress` tries many more.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgprov.errors import ImageError, ImageNotFound, NotAnImage
from imgprov.images import load_image
from imgprov.indexing.pipeline import discover_images, index_paths
from imgprov.service.app import create_app
from imgprov.service.settings import ServiceSettings
from imgprov.service.uploads import Upload, decode_upload, display_name
from imgprov.storage import open_store, store_writer
from imgprov.storage.records import CollectionPresets
from tests.faults import write_resized
from tests.hostile import (
    FUZZ_MAX_PIXELS,
    MUTATION_KINDS,
    NON_IMAGES,
    Mutation,
    decode_outcome,
    mutate,
    named_cases,
    seeds,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
"""Pillow warns about the corrupt metadata it skips; the loader's answer is what is under test."""

TRIED: Counter = Counter()
SECONDS_PER_INPUT = 10.0
"""Every input here is small or refused before decoding: a generous bound for a loaded machine."""
UPLOAD_LIMIT_BYTES = 4 << 20
CLIENT_STATUSES = {400, 413, 415}
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SERVER_FUZZ = settings(FUZZ, max_examples=25)
SIGNATURES = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"RIFF\x00\x01\x00\x00WEBPVP8 ",
    b"RIFF\x00\x01\x00\x00WEBPVP8X",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
    b"\x00\x00\x00\x18ftypheic",
)
REFUSED_AS_TOO_LARGE = ("30000x", "16384x", "65535x", "4294967295x", "png-zlib-bomb", "jpeg-2000-scans")

mutations = st.lists(
    st.builds(
        Mutation,
        kind=st.sampled_from(MUTATION_KINDS),
        position=st.floats(0.0, 1.0),
        payload=st.binary(max_size=16),
    ),
    min_size=1,
    max_size=4,
)
seed_names = st.sampled_from(sorted(seeds()))


@pytest.fixture(scope="module", autouse=True)
def report_inputs_tried(request) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not TRIED:
        return
    counts = ", ".join(f"{path} {count}" for path, count in sorted(TRIED.items()))
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\nfuzz: {sum(TRIED.values())} inputs tried ({counts}); none crashed")


@pytest.fixture(scope="module")
def hostile() -> dict[str, bytes]:
    return named_cases()


def timed_outcome(data: bytes) -> str:
    started = time.perf_counter()
    outcome = decode_outcome(data, FUZZ_MAX_PIXELS)
    assert time.perf_counter() - started < SECONDS_PER_INPUT
    TRIED["loader"] += 1
    return outcome


def expected_outcomes(name: str) -> set[str] | None:
    """What a named case must give; None: any typed outcome."""
    if name == "zero-bytes":
        return {"EmptyImage"}
    if name in NON_IMAGES:
        return {"NotAnImage"}
    if name.startswith("1x1-"):
        return {"decoded"}
    if name.startswith(REFUSED_AS_TOO_LARGE):
        return {"ImageTooLarge"}
    return None


def test_every_named_hostile_input_gets_its_typed_outcome(hostile):
    for name, data in hostile.items():
        outcome = timed_outcome(data)
        expected = expected_outcomes(name)
        assert expected is None or outcome in expected, (name, outcome)


@FUZZ
@given(seed=seed_names, changes=mutations)
def test_mutated_files_of_every_format_decode_or_give_a_typed_error(seed, changes):
    timed_outcome(mutate(seeds()[seed], changes))


@FUZZ
@given(head=st.sampled_from(SIGNATURES), body=st.binary(max_size=600))
def test_random_bytes_behind_an_image_signature_give_a_typed_error(head, body):
    timed_outcome(head + body)


def test_bombs_and_mutations_stay_within_a_memory_cap():
    """In a child process capped at 1 GiB of address space: bombs are refused before they allocate."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.hostile", "--random", "300", "--memory-mib", "1024"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    TRIED["loader, memory-capped"] += summary["tried"]
    assert summary["peak_rss_mib"] < 400 and summary["slowest_seconds"] < SECONDS_PER_INPUT, summary


def test_named_hostile_uploads_decode_or_give_a_typed_error(hostile):
    for name, data in hostile.items():
        if not data:
            continue
        with contextlib.suppress(ImageError):
            decode_upload(Upload(data, name), max_pixels=FUZZ_MAX_PIXELS, max_bytes=UPLOAD_LIMIT_BYTES)
        TRIED["upload decoding"] += 1


@FUZZ
@given(seed=seed_names, changes=mutations)
def test_mutated_uploads_decode_or_give_a_typed_error(seed, changes):
    try:
        image = decode_upload(
            Upload(mutate(seeds()[seed], changes), "fuzz"),
            max_pixels=FUZZ_MAX_PIXELS,
            max_bytes=UPLOAD_LIMIT_BYTES,
        )
    except ImageError:
        image = None
    assert image is None or image.pixels.shape[2] == 3
    TRIED["upload decoding"] += 1


@FUZZ
@given(name=st.text(max_size=300))
def test_client_file_names_become_short_base_names(name):
    shown = display_name(name)
    assert "/" not in shown and "\\" not in shown and shown.isprintable() and 0 < len(shown) <= 120
    TRIED["file names"] += 1


@pytest.fixture(scope="module")
def server(new_db, tmp_path_factory, photo_paths) -> Iterator[TestClient]:
    """A server over two small photos, with the upload and pixel limits of the fuzz campaign."""
    folder = tmp_path_factory.mktemp("fuzz-server")
    for path in photo_paths[:2]:
        write_resized(path, folder / f"{path.stem}.jpg", 200)
    db = new_db()
    files, _ = discover_images([folder])
    with store_writer(db, presets=CollectionPresets(global_descriptor="none")) as collection:
        index_paths(collection, files, workers=1)
    settings = ServiceSettings(db=db, max_upload_bytes=UPLOAD_LIMIT_BYTES, max_pixels=FUZZ_MAX_PIXELS)
    with TestClient(create_app(settings)) as client:
        yield client
        assert client.get("/v1/health").json()["status"] == "ok", "the server survived the campaign"


def assert_client_answer(response, key: str = "matches") -> None:
    """200 with its `key`, or a 4xx JSON body of exactly one line; never a 500, never a traceback."""
    TRIED["server"] += 1
    body = response.json()
    if response.status_code == 200:
        assert key in body
        return
    assert response.status_code in CLIENT_STATUSES, (response.status_code, body)
    assert list(body) == ["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]


def test_named_hostile_uploads_to_search_get_json_answers(server, hostile):
    for name, data in hostile.items():
        assert_client_answer(server.post("/v1/search", files={"file": (f"{name}.jpg", data, "image/jpeg")}))


@SERVER_FUZZ
@given(seed=seed_names, changes=mutations, name=st.text(max_size=60))
def test_mutated_uploads_to_search_and_compare_get_json_answers(server, seed, changes, name):
    data = mutate(seeds()[seed], changes)
    assert_client_answer(server.post("/v1/search", files={"file": (name, data, "image/jpeg")}))
    files = {"query": (name, data, "image/png"), "original": ("o.png", seeds()["png"], "image/png")}
    assert_client_answer(server.post("/v1/compare", files=files), key="verdict")


@SERVER_FUZZ
@given(body=st.binary(max_size=2000), boundary=st.sampled_from(["xyz", "", "-" * 80, "a;b=c"]))
def test_malformed_multipart_bodies_get_json_errors(server, body, boundary):
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = server.post("/v1/search", content=body, headers=headers)
    assert response.status_code in CLIENT_STATUSES, response.text
    assert list(response.json()) == ["error"]
    TRIED["server"] += 1


def test_a_valid_upload_under_any_name_is_searched_by_its_bytes(server):
    for name in ("../../etc/passwd", "/etc/shadow", "C:\\Windows\\win.ini", "x" * 500, "\x00\n.png", "."):
        response = server.post("/v1/search", files={"file": (name, seeds()["png"], "text/plain")})
        assert response.status_code == 200, response.text
        shown = response.json()["query"]
        assert "/" not in shown and "\\" not in shown and len(shown) <= 120
        TRIED["server"] += 1


def make_special_files(folder: Path, outside: Path) -> dict[str, Path]:
    """A FIFO, a directory, links to a device, to nothing, to each other and outside, named .jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    special = {name: folder / f"{name}.jpg" for name in ("fifo", "directory", "device", "dangling", "loop-a")}
    os.mkfifo(special["fifo"])
    special["directory"].mkdir()
    special["device"].symlink_to("/dev/zero")
    special["dangling"].symlink_to(folder / "missing.jpg")
    special["loop-a"].symlink_to(folder / "loop-b.jpg")
    (folder / "loop-b.jpg").symlink_to(special["loop-a"])
    return special


@pytest.mark.timeout(120)
def test_the_loader_refuses_what_is_not_a_regular_file_without_waiting(tmp_path):
    for name, path in make_special_files(tmp_path / "special", tmp_path / "outside").items():
        started = time.perf_counter()
        with pytest.raises(ImageNotFound):
            load_image(path)
        assert time.perf_counter() - started < SECONDS_PER_INPUT, name
        TRIED["files"] += 1


def test_the_loader_reads_the_format_from_the_bytes_not_the_name(tmp_path):
    for seed, suffix in (("png", ".jpg"), ("jpeg", ".png"), ("webp", ".gif"), ("tiff", ".txt"), ("gif", "")):
        path = tmp_path / f"image-{seed}{suffix}"
        path.write_bytes(seeds()[seed])
        assert load_image(path).format == {"jpeg": "JPEG", "png": "PNG"}.get(seed, seed.upper())
        TRIED["files"] += 1
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(NotAnImage):
        load_image(text)


@pytest.fixture
def planted_folder(tmp_path) -> tuple[Path, Path]:
    """A folder to index holding one image, planted links (outside, into a folder, loops...) and
    special files, and a private image outside it."""
    root, outside = tmp_path / "collection", tmp_path / "private"
    outside.mkdir()
    secret = outside / "secret.jpg"
    secret.write_bytes(seeds()["jpeg"])
    make_special_files(root, outside)
    (root / "real.jpg").write_bytes(seeds()["png"])
    (root / "link-inside.jpg").symlink_to(root / "real.jpg")
    (root / "link-outside.jpg").symlink_to(secret)
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)
    return root, secret


@pytest.mark.timeout(120)
def test_indexing_a_folder_follows_links_only_inside_it(planted_folder):
    root, _secret = planted_folder
    files, skipped = discover_images([root])
    assert files == [(root / "real.jpg").resolve()]
    reasons = dict(skipped)
    assert "outside" in reasons[str(root / "link-outside.jpg")]
    assert "not a regular file" in reasons[str(root / "fifo.jpg")]
    assert "missing" in reasons[str(root / "dangling.jpg")]
    assert "resolved" in reasons[str(root / "loop-a.jpg")]
    TRIED["files"] += len(files) + len(skipped)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_imgprov_index_skips_planted_files_with_one_line_each(planted_folder, new_db):
    root, secret = planted_folder
    db = new_db()
    done = subprocess.run(
        [sys.executable, "-m", "imgprov", "index", "--db", db, "--global", "none", str(root)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    skipped = [line for line in done.stderr.splitlines() if line.startswith("imgprov: skipped")]
    assert len(skipped) == 6, done.stderr
    collection = open_store(db)
    assert [record.path for record in collection.catalogue.all_images()] == [
        str((root / "real.jpg").resolve())
    ]
    explicit = subprocess.run(
        [sys.executable, "-m", "imgprov", "index", "--db", db, str(root / "link-outside.jpg")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert explicit.returncode == 0, explicit.stderr
    assert open_store(db).catalogue.image_by_path(str(secret.resolve())) is not None
