"""Concurrency (issue 8): searches while another process indexes see committed states only; a
second writer waits for the first or fails with a clear message; the server under concurrent
clients, a full queue, a trickling upload and a busy writer lock.

An embedded collection, once opened, is a snapshot: its catalogue and vectors stay as of one commit.
The distributed store reads the latest committed state at each read (its catalogue is a live SQL
database), so a search may find an image committed after the reader listed the catalogue, never
one that is not committed.

The indexer is the real command line in a child process (tests/faults.py), committing one image
per batch, and journals each batch it commits; the searches run in threads of this process.
"""

from __future__ import annotations

import gc
import random
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from benchmarks.stress import LoadRequest, run_load
from imgprov import presets
from imgprov.errors import IndexBusy
from imgprov.indexing.pipeline import discover_images, index_paths
from imgprov.search.pipeline import search
from imgprov.service.app import create_app
from imgprov.service.server import background_server
from imgprov.service.settings import ServiceSettings
from imgprov.service.state import CollectionCache
from imgprov.storage import Store, open_store, store_writer
from imgprov.storage.records import CollectionPresets
from tests.faults import Child, PhotoFolders, applied, write_small_photos
from tests.hostile import seeds
from tests.support import distributed

pytestmark = pytest.mark.slow  # child processes, loopback servers

NO_GLOBAL = CollectionPresets(global_descriptor="none")
READER_THREADS = 3


@dataclass(frozen=True)
class Answer:
    """One search made during indexing: the images the reader listed before it, the query, the
    matches, and the images the same reader listed after it."""

    snapshot: frozenset[str]
    query: str
    matches: tuple[str, ...]
    afterwards: frozenset[str]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> PhotoFolders:
    return write_small_photos(tmp_path_factory.mktemp("concurrency-photos"))


def index_in_process(db: str, folder: Path) -> None:
    files, _ = discover_images([folder])
    with store_writer(db, presets=NO_GLOBAL) as collection:
        index_paths(collection, files, workers=1)


def pixels_of(path: str) -> np.ndarray:
    return cv2.imread(path, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def search_snapshot(collection: Store, rng: random.Random) -> Answer:
    """Search an exact copy of one image of the collection's snapshot."""
    snapshot = listed_images(collection)
    query = rng.choice(sorted(snapshot))
    matches = search(collection, pixels_of(query), presets.search(), stage="local").matches
    return Answer(snapshot, query, tuple(match.path for match in matches), listed_images(collection))


def listed_images(collection: Store) -> frozenset[str]:
    return frozenset(record.path for record in collection.catalogue.all_images())


def search_until(stop: threading.Event, db: str, seed: int, answers: list, errors: list) -> None:
    """Open a fresh snapshot per search, as the command line does, until `stop` is set."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            collection = open_store(db)
            try:
                answers.append(search_snapshot(collection, rng))
            finally:
                collection.close()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")


def search_cached_until(stop: threading.Event, cache: CollectionCache, answers: list, errors: list) -> None:
    """Search through the server's collection cache, which reopens the index when it changed."""
    rng = random.Random(99)
    while not stop.is_set():
        try:
            answers.append(search_snapshot(cache.current(), rng))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")


def committed_states(initial: frozenset[str], events: tuple[dict, ...]) -> list[frozenset[str]]:
    """The collection after each batch the journal shows committed, in order."""
    states, begun = [initial], None
    for event in events:
        if event["event"] == "begin":
            begun = event
        elif event["event"] == "commit" and begun is not None:
            states.append(applied(states[-1], begun))
    return states


def test_searches_during_indexing_see_one_committed_state_each(photos, new_db, tmp_path):
    db = new_db()
    index_in_process(db, photos.keep)
    initial = photos.files(photos.keep)
    indexer = Child.start(
        ("index", "--db", db, "--batch-size", "1", "--workers", "1", str(photos.root)), tmp_path / "run"
    )
    answers: list[Answer] = []
    errors: list[str] = []
    stop = threading.Event()
    cache = CollectionCache(db)
    threads = [
        threading.Thread(target=search_until, args=(stop, db, seed, answers, errors))
        for seed in range(READER_THREADS - 1)
    ]
    threads.append(threading.Thread(target=search_cached_until, args=(stop, cache, answers, errors)))
    for thread in threads:
        thread.start()
    run = indexer.finish()
    stop.set()
    for thread in threads:
        thread.join()
    assert run.returncode == 0, run.stderr
    assert errors == []
    states = committed_states(initial, run.events)
    assert states[-1] == photos.everything
    seen = {states.index(answer.snapshot) for answer in answers if answer.snapshot in states}
    assert_committed_reads(answers, states, snapshots=not distributed(db))
    assert all(answer.query in answer.matches for answer in answers), "an indexed image was not found"
    assert len(answers) >= 10 and len(seen) >= 3, f"{len(answers)} searches over {len(seen)} states"


def test_a_second_writer_fails_clearly_or_waits_its_turn(photos, new_db, tmp_path):
    db = new_db()
    index_in_process(db, photos.keep)
    first = Child.start(
        ("index", "--db", db, "--batch-size", "1", "--workers", "1", str(photos.half_a)), tmp_path / "a"
    )
    assert first.wait_for("begin"), first.finish().stderr
    with (
        pytest.raises(IndexBusy, match="another imgprov process is writing to this"),
        store_writer(db, presets=NO_GLOBAL, wait_seconds=0.1),
    ):
        pass
    second = Child.start(
        ("index", "--db", db, "--batch-size", "1", "--workers", "1", str(photos.half_b)), tmp_path / "b"
    )
    first_run, second_run = first.finish(), second.finish()
    assert first_run.returncode == 0 and second_run.returncode == 0, first_run.stderr + second_run.stderr
    started = time.monotonic()
    with store_writer(db, presets=NO_GLOBAL, wait_seconds=30) as collection:
        assert time.monotonic() - started < 30
        assert collection.check(repair=False).ok
    collection = open_store(db)
    assert {record.path for record in collection.catalogue.all_images()} == photos.everything


def assert_committed_reads(answers: list[Answer], states: list[frozenset[str]], *, snapshots: bool) -> None:
    """Every listing is one committed state. With `snapshots` (an embedded reader) a reader's listing
    never changes and its matches are among it; else (a distributed reader) a later listing is never
    of an earlier commit and the matches are among the images committed when the search ended."""
    listings = [listing for answer in answers for listing in (answer.snapshot, answer.afterwards)]
    assert all(listing in states for listing in listings), "a listing mixed two commits"
    if snapshots:
        assert all(answer.afterwards == answer.snapshot for answer in answers), "a snapshot changed"
        assert all(set(answer.matches) <= answer.snapshot for answer in answers), "a match outside it"
        return
    assert all(states.index(a.snapshot) <= states.index(a.afterwards) for a in answers), "went back"
    assert all(set(answer.matches) <= answer.afterwards for answer in answers), "an uncommitted match"


TOKEN = "concurrency-token-0123456789"


@pytest.fixture(scope="module")
def small_db(photos, new_db) -> str:
    db = new_db()
    index_in_process(db, photos.keep)
    return db


def test_loopback_clients_mixing_search_and_compare_get_no_errors(small_db, photos):
    query = (photos.half_a / sorted(path.name for path in photos.half_a.iterdir())[0]).read_bytes()
    original_id = open_store(small_db).catalogue.all_images()[0].id
    requests = [
        LoadRequest("search", "/v1/search", {"file": ("q.jpg", query, "image/jpeg")}, {}),
        LoadRequest(
            "compare",
            "/v1/compare",
            {"query": ("q.jpg", query, "image/jpeg")},
            {"original_id": str(original_id)},
        ),
    ]
    app = create_app(ServiceSettings(db=small_db, workers=2, queue_size=8))
    with background_server(app) as url:
        outcomes = run_load(url, requests, clients=6, seconds=6.0)
    assert len(outcomes) >= 6 and {outcome.endpoint for outcome in outcomes} == {"search", "compare"}
    assert [outcome for outcome in outcomes if outcome.status != 200] == []


def test_a_full_server_refuses_before_reading_uploads_and_frees_every_slot(small_db, photos):
    with TestClient(create_app(ServiceSettings(db=small_db, workers=1, queue_size=0))) as client:
        pool = client.app.state.service.jobs
        for _ in range(3):
            assert client.post("/v1/search", files={"file": ("e.jpg", b"", "image/jpeg")}).status_code == 400
        assert pool.pending == 0, "a request refused while reading its upload freed its slot"
        release = threading.Event()
        pool.submit(release.wait)
        try:
            upload = {"file": ("q.jpg", seeds()["jpeg"], "image/jpeg")}
            assert client.post("/v1/search", files=upload).status_code == 503
        finally:
            release.set()
        assert wait_until(lambda: pool.pending == 0)


def test_a_body_that_trickles_in_gets_408(small_db):
    app = create_app(ServiceSettings(db=small_db, upload_timeout=1.0))
    with background_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as connection:
            connection.sendall(
                b"POST /v1/search HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n"
                b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n--xyz\r\n"
            )
            started = time.monotonic()
            reply = read_reply(connection)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b'{"error":' in reply and time.monotonic() - started < 10


def read_reply(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (headers and body may come in
    separate packets)."""
    reply = b""
    while chunk := connection.recv(65536):
        reply += chunk
    return reply


def test_a_busy_writer_lock_is_a_503_that_names_no_server_path(small_db, photos):
    settings = ServiceSettings(db=small_db, token=TOKEN, request_timeout=1.0)
    photo = next(iter(photos.half_b.iterdir()))
    with TestClient(create_app(settings)) as client, store_writer(small_db, wait_seconds=0, create=False):
        response = client.post(
            "/v1/images",
            files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 503 and response.headers["retry-after"]
    assert str(small_db) not in response.text and "another process" in response.json()["error"]


def wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.embedded_only
def test_an_idle_server_lets_go_of_a_stale_snapshot(photos, tmp_path):
    """Until it does, SQLite cannot recycle its write-ahead log: it would grow while another process
    indexes for hours."""
    db = tmp_path / "db"
    index_in_process(db, photos.keep)
    cache = CollectionCache(db)
    index_in_process(db, photos.half_a)
    checkpoint = sqlite3.connect(db / "imgprov.sqlite")
    try:
        busy_while_pinned = checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        cache.release_if_stale()
        gc.collect()
        busy_after_release = checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        checkpoint.close()
    assert (busy_while_pinned, busy_after_release) == (1, 0)
    assert {record.path for record in cache.current().catalogue.all_images()} == photos.files(
        photos.keep, photos.half_a
    )
