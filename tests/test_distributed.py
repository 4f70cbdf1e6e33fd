"""Distributed indexing on a real local Ray cluster of 2 worker processes: the same collection as the
threaded path, listing files with file:// and http:// URLs (C2PA credentials kept), and resuming
after a killed worker or a killed driver without duplicates."""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgprov import presets
from imgprov.search.pipeline import search
from imgprov.storage import open_store
from imgprov.storage.embedded.collection import Collection
from tests.c2pa_chain import created_action, encode, make_signing_chain, sign_image
from tests.support import jpeg, photo, write_jpeg

ray = pytest.importorskip("ray", reason="the scale extra (ray[data]) is not installed")

from imgprov.indexing.ray import RayConf, index_sources, ray_cluster, resolve_sources  # noqa: E402

pytestmark = pytest.mark.slow  # Ray clusters, `imgprov index --ray` processes

CLUSTER = RayConf("local", workers=2)
RAY_ARGS = ("--ray", "local", "--workers", "2", "--batch-size", "2")
RUN_SECONDS = 600


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`imgprov ARGS` in a new process (with `env`, or this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "imgprov", *args],
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
        env=env,
    )


def stored(db: Path | str) -> dict[str, tuple[str, int]]:
    """Resolved path -> (sha256, keypoint count) of every indexed image of an embedded index (the
    photo fixture indexes the paths as given, `imgprov index` resolves them)."""
    collection = Collection.open(Path(db))
    try:
        rows = collection.catalogue.connection.execute(
            "SELECT i.path, i.sha256, k.count FROM images i JOIN keypoints k ON k.image_id = i.id"
        ).fetchall()
    finally:
        collection.close()
    return {str(Path(path).resolve()): (sha256, count) for path, sha256, count in rows}


def committed_images(db: Path) -> int:
    """Images committed so far by a writer in another process (0 before the catalogue exists)."""
    path = db / "imgprov.sqlite"
    if not path.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as connection:
            return int(connection.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    except sqlite3.Error:
        return 0


def top_match(db: Path | str, rgb: np.ndarray) -> str | None:
    collection = open_store(str(db))
    try:
        result = search(collection, rgb, presets.search(), top_k=1)
    finally:
        collection.close()
    return result.matches[0].path if result.matches else None


@pytest.fixture(scope="module")
def variants(tmp_path_factory, photo_paths) -> Path:
    """42 distinct JPEGs (each photo as is, mirrored, and at half size), enough work for a kill to
    land in the middle of a run."""
    folder = tmp_path_factory.mktemp("variants")
    for path in photo_paths:
        rgb = photo(path.name)
        write_jpeg(folder / f"{path.stem}.jpg", rgb)
        write_jpeg(folder / f"{path.stem}-mirror.jpg", np.ascontiguousarray(rgb[:, ::-1]))
        write_jpeg(folder / f"{path.stem}-half.jpg", np.ascontiguousarray(rgb[::2, ::2]))
    return folder


@pytest.fixture
def web_folder(tmp_path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on localhost by a thread: (folder, base URL)."""
    folder = tmp_path / "web"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


@pytest.mark.embedded_only
def test_ray_gives_the_same_collection_as_the_threaded_path(tmp_path, photo_db, photo_paths):
    db = tmp_path / "db"
    sources, skipped = resolve_sources(photo_paths)
    assert not skipped
    with ray_cluster(CLUSTER):
        with Collection.writer(db) as collection:
            report = index_sources(collection, sources, CLUSTER, batch_size=4)
        assert len(report.added) == len(photo_paths) and not report.failed
        with Collection.writer(db) as collection:
            again = index_sources(collection, sources, CLUSTER, batch_size=4)
    assert len(again.unchanged) == len(photo_paths) and not again.added
    assert stored(db) == stored(photo_db)
    distributed, threaded = Collection.open(db), Collection.open(Path(photo_db))
    by_path = {
        str(Path(record.path).resolve()): record.id
        for record in threaded.images(list(range(1, 100))).values()
    }
    for record in distributed.images(list(range(1, 100))).values():
        ours = distributed.local_features(record.id)
        theirs = threaded.local_features(by_path[record.path])
        np.testing.assert_array_equal(ours.descriptors, theirs.descriptors)
        np.testing.assert_allclose(
            distributed.embeddings([record.id])[record.id],
            threaded.embeddings([by_path[record.path]])[by_path[record.path]],
            atol=1e-4,
        )
    assert distributed.check(repair=False).ok
    query = jpeg(photo("coffee.png")[20:-20, 30:-30], 50)
    assert Path(top_match(db, query)).resolve() == Path(top_match(photo_db, query)).resolve()
    assert top_match(db, query).endswith("coffee.png")


def test_ray_indexes_into_either_store_and_resumes(store_db, photo_paths):
    """`--ray` writes through the same transactional store API, so it fills Milvus + PostgreSQL as it
    fills an index directory; a second run finds every image unchanged."""
    files = [str(path) for path in photo_paths[:4]]
    first = cli("index", "--db", store_db, *RAY_ARGS, *files)
    assert first.returncode == 0, first.stderr
    assert "indexed 4 new, 0 changed, 0 unchanged, 0 failed" in first.stderr
    again = cli("index", "--db", store_db, *RAY_ARGS, *files)
    assert "indexed 0 new, 0 changed, 4 unchanged, 0 failed" in again.stderr
    store = open_store(store_db)
    try:
        assert store.catalogue.image_count() == 4
        target = photo_paths[2]
        result = search(store, jpeg(photo(target.name)[10:-10, 20:-20], 60), presets.search(), top_k=1)
    finally:
        store.close()
    assert Path(result.matches[0].path).name == target.name


def test_listing_with_file_and_http_urls_and_bad_lines(tmp_path, web_folder, photo_paths):
    folder, base = web_folder
    chain = make_signing_chain("Test Photo Desk", "imgprov test agency")
    signed = sign_image(
        encode(Image.fromarray(photo("chelsea.png"))),
        "image/jpeg",
        chain,
        title="original",
        actions=[created_action("TestCam 1.0", when="2026-01-02T03:04:05Z")],
    )
    (folder / "served.jpg").write_bytes(signed)
    local = photo_paths[0].resolve()
    listing = tmp_path / "listing.txt"
    listing.write_text(
        "\n".join(
            [
                "# an object-storage listing",
                f"file://{local}",
                f"{base}/served.jpg",
                f"{base}/missing.jpg",
                "ftp://example.com/photo.jpg",
                "",
            ]
        )
    )
    sources, skipped = resolve_sources([], listing)
    assert sources == [str(local), f"{base}/served.jpg", f"{base}/missing.jpg"]
    assert [message for _, message in skipped] == [
        f"{listing}:5: ftp://example.com/photo.jpg: unsupported scheme 'ftp' "
        "(use a path, file://, http(s):// or s3://)"
    ]
    db = tmp_path / "db"
    with ray_cluster(CLUSTER), Collection.writer(db) as collection:
        report = index_sources(collection, sources, CLUSTER)
    assert sorted(report.added) == sorted([str(local), f"{base}/served.jpg"])
    assert report.failed == [
        (f"{base}/missing.jpg", f"{base}/missing.jpg: cannot fetch (HTTP 404 File not found)")
    ]
    assert top_match(db, jpeg(photo("chelsea.png"), 60)) == f"{base}/served.jpg"
    collection = Collection.open(db)
    record = collection.catalogue.image_by_path(f"{base}/served.jpg")
    credentials = collection.credentials([record.id])[record.id]
    assert credentials.raw_store and credentials.raw_store in signed
    assert credentials.signer.common_name == "Test Photo Desk"
    assert credentials.summary()["state"] == "valid-untrusted"
    assert [action.action for action in credentials.actions] == ["c2pa.created"]
    collection.close()


def test_cli_listing_reports_each_bad_entry_on_one_line(tmp_path, photo_paths):
    listing = tmp_path / "listing.txt"
    listing.write_text(f"{photo_paths[1]}\nnot-there.png\ngopher://old/x.png\n")
    done = cli(
        "index", "--db", str(tmp_path / "db"), "--ray", "local", "--workers", "2", "--list", str(listing)
    )
    assert done.returncode == 1
    skipped = [line for line in done.stderr.splitlines() if line.startswith("imgprov: skipped")]
    assert skipped == [
        f"imgprov: skipped {listing}:3: gopher://old/x.png: unsupported scheme 'gopher' "
        "(use a path, file://, http(s):// or s3://)",
        f"imgprov: skipped {tmp_path / 'not-there.png'}: no such file or directory",
    ]
    assert "indexed 1 new, 0 changed, 0 unchanged, 2 failed" in done.stderr
    assert cli("index", "--db", str(tmp_path / "db"), "--list", str(listing)).stderr.strip() == (
        "imgprov: error: Invalid value: --list needs --ray (see `imgprov --help`)"
    )


def test_an_unreachable_cluster_is_one_line_and_leaves_no_index(tmp_path, photo_paths):
    done = cli("index", "--db", str(tmp_path / "db"), "--ray", "127.0.0.1:1", str(photo_paths[0]))
    assert done.returncode == 1
    assert done.stderr == "imgprov: error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused\n"
    assert not (tmp_path / "db").exists()


@pytest.mark.skipif(importlib.util.find_spec("boto3") is not None, reason="boto3 is installed")
def test_s3_listing_without_boto3_is_one_line_saying_what_to_install(tmp_path):
    listing = tmp_path / "listing.txt"
    listing.write_text("s3://bucket/photos/a.jpg\n")
    done = cli("index", "--db", str(tmp_path / "db"), "--ray", "local", "--list", str(listing))
    assert done.returncode == 1
    assert done.stderr == "imgprov: error: s3:// sources need boto3: pip install 'imgprov[s3]' (or boto3)\n"
    assert not (tmp_path / "db").exists()


def test_a_killed_worker_is_restarted_and_its_batch_retried(tmp_path, variants):
    db = tmp_path / "db"
    driver = start_indexing(db, variants)
    try:
        wait_for(lambda: committed_images(db) >= 2, driver)
        workers = [pid for pid in descendants(driver.pid) if b"MapWorker" in command_line(pid)]
        assert workers, "no Ray worker process found under the driver"
        os.kill(workers[0], signal.SIGKILL)
        _, errors = driver.communicate(timeout=RUN_SECONDS)
    finally:
        stop_group(driver)
    assert driver.returncode == 0, errors
    assert_each_variant_once(db, variants)


def test_a_killed_driver_resumes_without_duplicates(tmp_path, variants):
    db = tmp_path / "db"
    driver = start_indexing(db, variants)
    try:
        wait_for(lambda: committed_images(db) >= 2, driver)
    finally:
        stop_group(driver)
    kept = committed_images(db)
    assert 2 <= kept < 42, "the driver was not killed in the middle of the run"
    done = cli(
        "index", "--db", str(db), "--ray", "local", "--workers", "2", "--batch-size", "2", str(variants)
    )
    assert done.returncode == 0, done.stderr
    assert f"indexed {42 - kept} new, 0 changed, {kept} unchanged, 0 failed" in done.stderr
    assert_each_variant_once(db, variants)


def start_indexing(db: Path, folder: Path) -> subprocess.Popen:
    """`imgprov index --ray local` in its own process group (the driver and the Ray processes it
    starts), so that the test can end exactly what it started."""
    return subprocess.Popen(
        [sys.executable, "-m", "imgprov", "index", "--db", str(db), *RAY_ARGS, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(condition, driver: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert driver.poll() is None, f"the driver ended early: {driver.communicate()[1]}"
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.05)


def stop_group(driver: subprocess.Popen) -> None:
    """SIGKILL the driver's process group (the driver and the Ray cluster it started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def command_line(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def assert_each_variant_once(db: Path, folder: Path) -> None:
    images = stored(db)
    assert sorted(images) == sorted(str(path) for path in folder.resolve().iterdir())
    collection = Collection.open(db)
    try:
        assert collection.check(repair=False).ok
        count = collection.catalogue.connection.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        assert count == len(images) == 42
    finally:
        collection.close()
    assert top_match(db, jpeg(photo("astronaut.png")[:, ::-1], 60)) == str(
        folder.resolve() / "astronaut-mirror.jpg"
    )
