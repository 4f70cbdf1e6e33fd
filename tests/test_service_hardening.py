"""The service under attack (issue 23): bounded work, CPU budgets, cancelled jobs, idle connections,
refusal before the body is read, the query's credentials, out-of-range ids."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data as skimage_data

from imgprov.demo import make_queries, skimage_data_dir
from imgprov.images import declared_pixels
from imgprov.service import jobs
from imgprov.service.app import create_app
from imgprov.service.cancellation import checkpoint
from imgprov.service.connections import HeaderDeadlineProtocol, connection_limit
from imgprov.service.errors import ClientGone
from imgprov.service.pool import JobPool
from imgprov.service.server import background_server, server_config
from imgprov.service.settings import ServiceSettings, SettingsError
from imgprov.storage.originals import originals_folder, orphaned_originals
from tests.c2pa_chain import created_action, encode, make_signing_chain, sign_image
from tests.support import private_copy

TOKEN = "test-token-0123456789abcdef"
BOMB_SIDE = 7000


def declared_size_bomb(side: int = BOMB_SIDE) -> bytes:
    """A 16x16 grey JPEG whose frame header declares `side` x `side` pixels (blank once decoded)."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = side.to_bytes(2, "big") * 2
    return bytes(data)


def upload(data: bytes, field: str = "file", name: str = "bomb.jpg") -> dict:
    return {field: (name, data, "image/jpeg")}


@pytest.fixture(scope="module")
def service_db(photo_db, new_db) -> str:
    return private_copy(photo_db, new_db)


@pytest.fixture(scope="module")
def queries(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("queries")
    return {query.path.stem: query.path for query in make_queries(skimage_data_dir(), folder)}


@pytest.fixture(scope="module")
def client(service_db) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceSettings(db=service_db, token=TOKEN))) as test_client:
        yield test_client


def test_a_declared_size_bomb_is_answered_at_once(client):
    started = time.perf_counter()
    searched = client.post("/v1/search", files=upload(declared_size_bomb()))
    assert searched.status_code == 200, searched.text
    assert searched.json()["matches"] == [] and searched.json()["width"] == BOMB_SIDE
    compared = client.post(
        "/v1/compare", files={**upload(declared_size_bomb(), "query")}, data={"original_id": 1}
    )
    assert compared.status_code == 422 and "blank" in compared.json()["error"]
    assert time.perf_counter() - started < 10


def test_a_job_over_its_cpu_budget_gets_504(service_db, queries):
    settings = ServiceSettings(db=service_db, job_cpu_seconds=0.01)
    with TestClient(create_app(settings)) as limited:
        response = limited.post("/v1/search", files=upload(queries["spliced"].read_bytes()))
        assert response.status_code == 504 and "CPU" in response.json()["error"]
        assert limited.app.state.service.jobs.pending == 0


def wait_for_cancel(started: threading.Event) -> str:
    started.set()
    while True:
        checkpoint()
        time.sleep(0.01)


def test_a_job_whose_client_left_is_cancelled_and_frees_its_slot():
    pool = JobPool("test", workers=1, queue_size=0)
    started = threading.Event()

    async def gone() -> bool:
        return started.is_set()

    async def wait() -> None:
        await pool.reserve().run(wait_for_cancel, started, timeout=30, disconnected=gone)

    try:
        with pytest.raises(ClientGone):
            asyncio.run(wait())
        deadline = time.monotonic() + 5
        while pool.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.pending == 0
    finally:
        pool.shutdown()


@pytest.mark.slow
def test_a_client_that_hangs_up_frees_its_slot_on_a_real_server(service_db, queries, monkeypatch):
    started = threading.Event()
    monkeypatch.setattr(jobs, "search_job", lambda state, request: wait_for_cancel(started))
    app = create_app(ServiceSettings(db=service_db, workers=1, queue_size=0))
    body, content_type = multipart_body("file", "q.jpg", queries["flipped"].read_bytes())
    with background_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(request_head("/v1/search", content_type, len(body)) + body)
            assert started.wait(10)
        pool = app.state.service.jobs
        deadline = time.monotonic() + 5
        while pool.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.pending == 0


def multipart_body(field: str, name: str, data: bytes) -> tuple[bytes, str]:
    head = f'--xyz\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n\r\n'.encode()
    return head + data + b"\r\n--xyz--\r\n", "multipart/form-data; boundary=xyz"


def request_head(path: str, content_type: str, length: int, headers: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n{headers}\r\n"
    ).encode()


def closed_within(connection: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Whether the server closes the connection within `seconds`, sending `trickle` every 0.1 s."""
    deadline = time.monotonic() + seconds
    connection.settimeout(0.1)
    while time.monotonic() < deadline:
        try:
            if trickle:
                connection.sendall(trickle)
            if connection.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


@pytest.mark.slow
def test_silent_and_slow_header_connections_are_closed(service_db, monkeypatch):
    monkeypatch.setattr(HeaderDeadlineProtocol, "header_seconds", 0.5)
    app = create_app(ServiceSettings(db=service_db, workers=1, queue_size=0))
    with background_server(app) as url:
        address = url.removeprefix("http://").split(":")
        address = (address[0], int(address[1]))
        silent = [socket.create_connection(address) for _ in range(connection_limit(1, 0) + 5)]
        with socket.create_connection(address) as slow:
            slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: test\r\n")
            assert closed_within(slow, 3, trickle=b"X-Slow: 1\r\n")
        assert all(closed_within(connection, 3) for connection in silent)
        for connection in silent:
            connection.close()
        with socket.create_connection(address, timeout=5) as healthy:
            healthy.sendall(b"GET /v1/health HTTP/1.1\r\nHost: test\r\n\r\n")
            assert healthy.recv(1024).startswith(b"HTTP/1.1 200")


def reply_to_partial_upload(url: str, path: str, headers: str = "") -> bytes:
    """Send a request declaring a 20 MB body but only its first 64 KB; the server's reply, if any."""
    host, port = url.removeprefix("http://").split(":")
    part, content_type = multipart_body("file", "big.jpg", b"\xff" * 65536)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request_head(path, content_type, 20 << 20, headers) + part)
        return connection.recv(65536)


@pytest.mark.slow
def test_token_and_queue_are_checked_before_the_body_is_read(service_db):
    app = create_app(ServiceSettings(db=service_db, token=TOKEN, open_search=False, workers=1, queue_size=0))
    with background_server(app) as url:
        assert reply_to_partial_upload(url, "/v1/images").startswith(b"HTTP/1.1 401")
        assert reply_to_partial_upload(url, "/v1/search").startswith(b"HTTP/1.1 401")
        release = threading.Event()
        app.state.service.jobs.submit(release.wait)
        try:
            reply = reply_to_partial_upload(url, "/v1/search", f"Authorization: Bearer {TOKEN}\r\n")
            assert reply.startswith(b"HTTP/1.1 503")
        finally:
            release.set()


def test_a_file_field_without_file_name_is_a_clear_400(client):
    body, content_type = multipart_body("file", "x.jpg", declared_size_bomb(16))
    body = body.replace(b'; filename="x.jpg"', b"")
    response = client.post("/v1/search", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400 and "file upload" in response.json()["error"]
    assert client.post("/v1/search", files={"other": ("a.jpg", b"x")}).status_code == 400


@pytest.mark.parametrize("image_id", [2**63, 2**64, 10**30])
def test_ids_beyond_64_bits_name_no_image(client, image_id):
    assert client.get(f"/v1/images/{image_id}").status_code == 404
    assert client.get(f"/v1/images/{image_id}/thumbnail").status_code == 404
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.delete(f"/v1/images/{image_id}", headers=headers).status_code == 404
    compared = client.post(
        "/v1/compare", files=upload(declared_size_bomb(16), "query"), data={"original_id": image_id}
    )
    assert compared.status_code == 404


def test_search_reports_the_query_credentials_as_the_command_line_does(client):
    chain = make_signing_chain()
    photo = Image.fromarray(np.ascontiguousarray(skimage_data.coffee()))
    signed = sign_image(
        encode(photo), "image/jpeg", chain, title="coffee.jpg", actions=[created_action("camera")]
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    added = client.post("/v1/images", files=upload(signed, name="coffee.jpg"), headers=headers)
    assert added.status_code in (200, 201), added.text
    body = client.post("/v1/search", files=upload(signed, name="coffee.jpg")).json()
    assert body["credentials"] is not None
    top = next(match for match in body["matches"] if match["id"] == added.json()["image"]["id"])
    assert top["agreement"]["verdict"] == "same-manifest"


def test_tokens_with_spaces_are_refused_at_start_up(service_db):
    for token in (" " * 16, "sixteen chars ok!", f"{TOKEN}\n"):
        with pytest.raises(SettingsError, match="spaces"):
            ServiceSettings(db=service_db, token=token)


def test_query_strings_never_reach_the_access_log(service_db):
    server_config(create_app(ServiceSettings(db=service_db)), host="127.0.0.1", port=1)
    arguments = ("127.0.0.1:5000", "GET", f"/v1/health?token={TOKEN}", "1.1", 200)
    line = '%s - "%s %s HTTP/%s" %d'
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, line, arguments, None)
    assert logging.getLogger("uvicorn.access").filter(record)
    assert TOKEN not in record.getMessage() and "GET /v1/health HTTP/1.1" in record.getMessage()


def test_no_redirect_echoes_the_host_and_head_answers_like_get(client):
    response = client.get("/docs/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404 and "location" not in response.headers
    for path in ("/v1/health", "/", "/v1/images/1"):
        head, get = client.head(path), client.get(path)
        assert head.status_code == get.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]


def test_health_hides_the_collection_when_searching_needs_the_token(service_db):
    settings = ServiceSettings(db=service_db, token=TOKEN, open_search=False)
    with TestClient(create_app(settings)) as protected:
        body = protected.get("/v1/health").json()
        assert body["status"] == "ok" and "images" not in body


def test_originals_no_record_points_to_are_found(client, service_db):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    red = encode(Image.new("RGB", (64, 48), "red"))
    added = client.post("/v1/images", files=upload(red), headers=headers)
    assert added.status_code in (200, 201)
    folder = originals_folder(service_db)
    orphan, partial = folder / f"{'0' * 64}.jpg", folder / f"{'1' * 64}.png.part"
    orphan.write_bytes(b"left by kill -9")
    partial.write_bytes(b"half")
    catalogue = client.app.state.service.collections.current().catalogue
    try:
        assert orphaned_originals(service_db, catalogue) == [orphan, partial]
    finally:
        orphan.unlink()
        partial.unlink()
    assert orphaned_originals(service_db, catalogue) == []


def test_large_images_run_one_at_a_time_and_leave_a_worker_free(service_db, monkeypatch):
    release = threading.Event()

    def fake_search(state, request) -> dict:
        while request.upload.name == "bomb.jpg" and not release.is_set():
            checkpoint()
            time.sleep(0.01)
        return {"name": request.upload.name}

    monkeypatch.setattr(jobs, "search_job", fake_search)
    settings = ServiceSettings(db=service_db, workers=2, queue_size=4, request_timeout=30)
    with TestClient(create_app(settings)) as busy, ThreadPoolExecutor(2) as attackers:
        bomb = upload(declared_size_bomb())
        large = [attackers.submit(busy.post, "/v1/search", files=bomb) for _ in range(2)]
        try:
            while busy.app.state.service.jobs.pending < 2:
                time.sleep(0.01)
            started = time.perf_counter()
            small = busy.post("/v1/search", files=upload(declared_size_bomb(16), name="small.jpg"))
            assert small.status_code == 200 and time.perf_counter() - started < 5
        finally:
            release.set()
        assert [future.result().status_code for future in large] == [200, 200]


def test_declared_pixels_are_read_from_the_header():
    assert declared_pixels(declared_size_bomb()) == BOMB_SIDE * BOMB_SIDE
    assert declared_pixels(b"not an image") == 0


MEMORY_PROBE = """
import sys, time
from pathlib import Path
from imgprov.extract.rootsift import extract_rootsift
from imgprov.images import load_image
from imgprov.presets import local_features
from imgprov.service.pool import JobPool

def resident_mib():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

def decode_and_measure(photo):
    pixels = load_image(photo).pixels
    extract_rootsift(pixels, local_features())
    return resident_mib()

pool = JobPool("memory", workers=1, queue_size=0)
before = resident_mib()
peak = pool.submit(decode_and_measure, sys.argv[1]).result(timeout=120)
deadline = time.monotonic() + 10
while (pool.pending or resident_mib() - before >= 0.3 * (peak - before)) and time.monotonic() < deadline:
    time.sleep(0.05)
print(before, peak, resident_mib())
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident size from /proc")
def test_the_pool_gives_a_large_job_s_memory_back_when_it_is_idle(tmp_path):
    photo = tmp_path / "large.jpg"
    Image.fromarray(np.tile(skimage_data.astronaut(), (8, 8, 1))).save(photo, quality=90)
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(photo)], capture_output=True, text=True, timeout=300
    )
    assert probe.returncode == 0, probe.stderr
    before, peak, after = (float(value) for value in probe.stdout.split())
    assert peak - before > 150
    assert after - before < 0.3 * (peak - before)
