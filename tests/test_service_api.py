"""The HTTP API on real photos: every endpoint, the token rules, bad uploads, the bounded queue."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from imgprov.cli.serve import register
from imgprov.demo import UNRELATED_PHOTO, make_queries, skimage_data_dir
from imgprov.errors import ImageTooLarge
from imgprov.service.app import create_app
from imgprov.service.server import background_server
from imgprov.service.settings import TOKEN_ENV, ServiceSettings, SettingsError
from imgprov.service.uploads import display_name, read_upload, sniff_image
from imgprov.storage.originals import originals_folder
from tests.support import private_copy

TOKEN = "test-token-0123456789abcdef"
WRONG_TOKEN = "test-token-0123456789abcdeX"
VERDICTS = {"benign", "manipulated", "distinct"}


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def image_file(path: Path, name: str | None = None, content_type: str = "image/jpeg") -> dict:
    return {"file": (name or path.name, path.read_bytes(), content_type)}


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return data.tobytes()


def assert_error(response, status: int) -> str:
    """The status, and a body that is exactly one line of `{"error": ...}`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


@pytest.fixture(scope="module")
def service_db(photo_db, new_db) -> str:
    """A private copy of the photo index in the store under test, made by `imgprov migrate` (ids
    and all): these tests add and remove originals."""
    return private_copy(photo_db, new_db)


@pytest.fixture(scope="module")
def queries(tmp_path_factory) -> dict[str, Path]:
    """The demo's queries: spliced (astronaut + chelsea's face), recompressed, flipped, unrelated."""
    folder = tmp_path_factory.mktemp("queries")
    written = make_queries(skimage_data_dir(), folder)
    return {query.path.stem: query.path for query in written}


@pytest.fixture(scope="module")
def client(service_db) -> Iterator[TestClient]:
    app = create_app(ServiceSettings(db=service_db, token=TOKEN))
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def spliced_search(client, queries) -> dict:
    response = client.post(
        "/v1/search?pictures=true", files=image_file(queries["spliced"]), data={"explain": "true"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def small_client(db: Path, **settings) -> TestClient:
    return TestClient(create_app(ServiceSettings(db=db, **settings)))


def test_health_describes_the_collection(client):
    body = client.get("/v1/health").json()
    assert body["status"] == "ok"
    assert body["images"] == 14
    assert body["open_search"] is True and body["writable"] is True
    assert body["capacity"] == body["workers"] + 8


def test_search_finds_host_and_donor_of_a_splice(spliced_search):
    matches = spliced_search["matches"]
    assert [match["name"] for match in matches[:2]] == ["astronaut.png", "chelsea.png"]
    assert [match["role"] for match in matches[:2]] == ["host", "donor"]
    assert matches[0]["coverage"] > 0.8 > matches[1]["coverage"]
    assert all("path" not in match for match in matches), "server paths are not disclosed"
    original = matches[0]["original"]
    assert (original["width"], original["height"], original["format"]) == (512, 512, "PNG")
    assert original["thumbnail"] == f"/v1/images/{original['id']}/thumbnail"


def test_search_gives_the_verdict_and_regions_of_the_top_match(spliced_search):
    top = spliced_search["top"]
    assert top["id"] == spliced_search["matches"][0]["id"]
    assert top["verdict"] == "manipulated"
    assert top["probability"] == top["probabilities"]["manipulated"] > 0.5
    assert top["regions"] and top["outline"]
    x0, y0, x1, y1 = top["regions"][0]["box"]
    assert x0 < 480 and x1 > 330 and y0 < 450 and y1 > 300, "the pasted face is at x 330-480, y 300-450"
    for polygon in top["outline"]:
        assert all(0 <= x <= 512 and 0 <= y <= 512 for x, y in polygon)


def test_search_pictures_are_data_urls(spliced_search):
    pictures = spliced_search["pictures"]
    assert set(pictures) == {"query", "vote_map", "heatmap", "aligned_original"}
    assert pictures["heatmap"].startswith("data:image/png;base64,")
    assert all(pictures[name].startswith("data:image/jpeg;base64,") for name in ("query", "vote_map"))


def test_search_without_match_has_no_top(client, queries):
    response = client.post("/v1/search", files=image_file(queries["unrelated"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matches"] == [] and "top" not in body and "pictures" not in body
    assert body["unconfirmed"] == []


def test_search_lists_unconfirmed_candidates_when_asked(client, queries):
    response = client.post("/v1/search?unconfirmed=true&top_k=3", files=image_file(queries["unrelated"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["matches"] == [] and "top" not in body
    candidates = body["unconfirmed"]
    assert 1 <= len(candidates) <= 3 and all(c["role"] is None and "path" not in c for c in candidates)
    assert all(c["original"]["thumbnail"].endswith("/thumbnail") for c in candidates)


def test_compare_two_uploads(client, queries):
    files = {
        "query": ("spliced.jpg", queries["spliced"].read_bytes(), "image/jpeg"),
        "original": ("astronaut.png", (skimage_data_dir() / "astronaut.png").read_bytes(), "image/png"),
    }
    response = client.post("/v1/compare", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] in VERDICTS and body["original"] == {"name": "astronaut.png"}
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert (body["width"], body["height"]) == (512, 512)


def test_compare_with_an_indexed_original(client, queries, spliced_search):
    chelsea = spliced_search["matches"][1]["id"]
    files = {"query": ("spliced.jpg", queries["spliced"].read_bytes(), "image/jpeg")}
    response = client.post("/v1/compare?pictures=true", files=files, data={"original_id": str(chelsea)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["original"]["name"] == "chelsea.png" and body["verdict"] in VERDICTS
    assert set(body["pictures"]) == {"query", "heatmap", "aligned_original"}


def test_compare_needs_exactly_one_original(client, queries):
    query = {"query": ("q.jpg", queries["flipped"].read_bytes(), "image/jpeg")}
    assert_error(client.post("/v1/compare", files=query), 400)
    both = {**query, "original": ("o.jpg", queries["flipped"].read_bytes(), "image/jpeg")}
    assert_error(client.post("/v1/compare", files=both, data={"original_id": "1"}), 400)
    assert_error(client.post("/v1/compare", files=query, data={"original_id": "999999"}), 404)


def test_image_metadata_and_thumbnail(client, spliced_search):
    image_id = spliced_search["matches"][0]["id"]
    body = client.get(f"/v1/images/{image_id}").json()
    assert body["name"] == "astronaut.png" and len(body["sha256"]) == 64 and "path" not in body
    thumbnail = client.get(f"/v1/images/{image_id}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    decoded = cv2.imdecode(np.frombuffer(thumbnail.content, np.uint8), cv2.IMREAD_COLOR)
    assert max(decoded.shape[:2]) == 320
    assert_error(client.get("/v1/images/999999"), 404)
    assert_error(client.get("/v1/images/999999/thumbnail"), 404)


def test_adding_and_removing_an_original(client, service_db, queries):
    photo = skimage_data_dir() / UNRELATED_PHOTO
    created = client.post(
        "/v1/images", files=image_file(photo, "../../evil.png", "image/png"), headers=auth()
    )
    assert created.status_code == 201, created.text
    image = created.json()["image"]
    assert created.json()["created"] is True and created.headers["location"] == f"/v1/images/{image['id']}"
    stored = originals_folder(service_db) / f"{image['sha256']}.png"
    assert stored.read_bytes() == photo.read_bytes() and image["name"] == stored.name
    assert not list(originals_folder(service_db).parent.parent.rglob("evil.png"))

    again = client.post("/v1/images", files=image_file(photo), headers=auth())
    assert again.status_code == 200 and again.json() == {"image": image, "created": False}

    found = client.post("/v1/search", files=image_file(queries["unrelated"])).json()
    assert [match["id"] for match in found["matches"]][:1] == [image["id"]]

    removed = client.delete(f"/v1/images/{image['id']}", headers=auth())
    assert removed.status_code == 200 and removed.json()["removed"]["id"] == image["id"]
    assert not stored.exists()
    assert_error(client.get(f"/v1/images/{image['id']}"), 404)
    assert_error(client.delete(f"/v1/images/{image['id']}", headers=auth()), 404)
    assert client.get("/v1/health").json()["images"] == 14


def test_changes_need_the_token(client, service_db):
    photo = skimage_data_dir() / UNRELATED_PHOTO
    assert_error(client.post("/v1/images", files=image_file(photo)), 401)
    assert_error(client.post("/v1/images", files=image_file(photo), headers=auth(WRONG_TOKEN)), 401)
    assert_error(client.post("/v1/images", files=image_file(photo), headers={"Authorization": TOKEN}), 401)
    assert_error(client.delete("/v1/images/1"), 401)
    assert_error(client.delete("/v1/images/1", headers=auth(WRONG_TOKEN)), 401)
    assert client.get("/v1/images/1").status_code == 200
    assert not originals_folder(service_db).exists() or not list(originals_folder(service_db).iterdir())


def test_a_server_without_token_is_read_only(service_db):
    with small_client(service_db) as read_only:
        photo = skimage_data_dir() / UNRELATED_PHOTO
        assert "read-only" in assert_error(read_only.post("/v1/images", files=image_file(photo)), 403)
        assert_error(read_only.delete("/v1/images/1", headers=auth()), 403)
        assert read_only.get("/v1/health").json()["writable"] is False


def test_protected_search_needs_the_token(service_db, queries):
    with small_client(service_db, token=TOKEN, open_search=False) as protected:
        assert_error(protected.post("/v1/search", files=image_file(queries["flipped"])), 401)
        assert_error(protected.get("/v1/images/1", headers=auth(WRONG_TOKEN)), 401)
        assert_error(protected.get("/v1/images/1/thumbnail"), 401)
        assert protected.get("/v1/images/1", headers=auth()).status_code == 200
        assert protected.get("/v1/health").json()["open_search"] is False


def test_settings_refuse_unsafe_tokens(service_db):
    with pytest.raises(SettingsError):
        ServiceSettings(db=service_db, token="short")
    with pytest.raises(SettingsError):
        ServiceSettings(db=service_db, open_search=False)
    assert TOKEN not in repr(ServiceSettings(db=service_db, token=TOKEN))


def test_token_never_reaches_the_log(client, caplog):
    with caplog.at_level(logging.DEBUG):
        client.post("/v1/images", files={"file": ("x.png", b"", "image/png")}, headers=auth(WRONG_TOKEN))
        client.post("/v1/images", files={"file": ("x.png", b"", "image/png")}, headers=auth())
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert all(WRONG_TOKEN not in record.getMessage() for record in caplog.records)


def test_upload_that_is_not_an_image(client):
    text = {"file": ("photo.jpg", b"this is not an image at all, whatever its name says", "image/jpeg")}
    assert "not a supported image" in assert_error(client.post("/v1/search", files=text), 415)
    eps = {"file": ("photo.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "image/png")}
    assert_error(client.post("/v1/search", files=eps), 415)
    svg = {"file": ("photo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")}
    assert_error(client.post("/v1/search", files=svg), 415)


def test_upload_type_comes_from_the_bytes_not_the_name(client, queries):
    misnamed = {"file": ("notes.txt", queries["flipped"].read_bytes(), "text/plain")}
    response = client.post("/v1/search", files=misnamed)
    assert response.status_code == 200 and response.json()["matches"][0]["name"] == "rocket.jpg"


def test_empty_and_truncated_uploads(client, queries):
    assert "empty" in assert_error(
        client.post("/v1/search", files={"file": ("e.jpg", b"", "image/jpeg")}), 400
    )
    half = queries["flipped"].read_bytes()[:2000]
    assert_error(client.post("/v1/search", files={"file": ("half.jpg", half, "image/jpeg")}), 400)
    assert "file" in assert_error(client.post("/v1/search", data={"other": "x"}), 400)


def test_too_large_uploads(service_db, queries):
    with small_client(service_db, max_upload_bytes=50_000, max_pixels=100_000) as limited:
        big = (skimage_data_dir() / "astronaut.png").read_bytes()
        assert "limit" in assert_error(
            limited.post("/v1/search", files={"file": ("a.png", big, "image/png")}), 413
        )
        many_pixels = png_bytes(np.zeros((400, 400, 3), np.uint8))
        assert len(many_pixels) < 50_000
        message = assert_error(
            limited.post("/v1/search", files={"file": ("z.png", many_pixels, "image/png")}), 413
        )
        assert "megapixels" in message


@pytest.mark.slow
def test_oversized_body_is_refused_before_it_ends(service_db):
    """Over a real socket: the 413 arrives while the chunked body is still unfinished."""
    app = create_app(ServiceSettings(db=service_db, max_upload_bytes=50_000))
    limit = app.state.service.settings.max_request_bytes
    with background_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(
                b"POST /v1/search HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
            )
            part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
            connection.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            chunk = b"\xff" * 65536
            for _ in range(limit // len(chunk) + 2):
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            reply = b""
            while b"}" not in reply and (received := connection.recv(65536)):
                reply += received
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'{"error":' in reply


def test_declared_oversized_body_is_refused(service_db):
    with small_client(service_db, max_upload_bytes=50_000) as limited:
        too_long = limited.app.state.service.settings.max_request_bytes + 1
        headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
        declared = limited.post("/v1/search", content=b"-" * too_long, headers=headers)
        assert "limit" in assert_error(declared, 413)


@pytest.mark.embedded_only
def test_ids_cannot_name_paths(client, service_db):
    before = sorted(path.name for path in Path(service_db).iterdir())
    for path in (
        "/v1/images/..%2F..%2Fetc%2Fpasswd",
        "/v1/images/%2e%2e%2fimgprov.sqlite",
        "/v1/images/..",
        "/v1/images/-1",
        "/v1/images/0",
        "/v1/images/1.5",
        "/v1/images/abc/thumbnail",
        "/static/..%2Fapp.py",
        "/static/%2e%2e%2fsettings.py",
        "/static/index.html",
    ):
        status = client.get(path).status_code
        assert status in (400, 404), path
        assert client.delete(path, headers=auth()).status_code in (400, 404, 405), path
    assert sorted(path.name for path in Path(service_db).iterdir()) == before
    assert client.get("/v1/health").json()["images"] == 14


def test_full_queue_answers_503_and_other_requests_go_on(service_db, queries):
    with small_client(service_db, workers=1, queue_size=0) as busy:
        release = threading.Event()
        busy.app.state.service.jobs.submit(release.wait)
        try:
            response = busy.post("/v1/search", files=image_file(queries["flipped"]))
            assert "busy" in assert_error(response, 503) and response.headers["retry-after"]
            started = time.perf_counter()
            assert busy.get("/v1/health").status_code == 200
            assert busy.get("/v1/images/1/thumbnail").status_code == 200
            assert time.perf_counter() - started < 5
        finally:
            release.set()
        pool = busy.app.state.service.jobs
        deadline = time.monotonic() + 5
        while pool.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert busy.post("/v1/search", files=image_file(queries["flipped"])).status_code == 200


def test_a_queued_job_past_the_timeout_gets_504(service_db, queries):
    with small_client(service_db, workers=1, queue_size=1, request_timeout=0.3) as slow:
        release = threading.Event()
        pool = slow.app.state.service.jobs
        pool.submit(release.wait)
        try:
            assert_error(slow.post("/v1/search", files=image_file(queries["flipped"])), 504)
            assert pool.pending == 1, "the timed-out job left the queue"
        finally:
            release.set()


def test_page_docs_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "style.css", "docs.js"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/search", "/v1/compare", "/v1/images", "/v1/images/{image_id}", "/v1/health"} <= set(paths)
    assert set(paths["/v1/images/{image_id}"]) == {"get", "delete"}


def test_page_loads_nothing_from_elsewhere():
    static = Path(__file__).parents[1] / "src" / "imgprov" / "service" / "static"
    for path in static.iterdir():
        text = path.read_text().replace('"http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name
        assert "@import" not in text and "url(" not in text, path.name


def test_unknown_routes_are_json_errors(client):
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.put("/v1/search"), 405)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "png"),
        (b"GIF89a\x01\x00", "gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
        (b"II*\x00\x08\x00", "tiff"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00", "heif"),
        (b"BM" + bytes(30), "bmp"),
        (b"%PDF-1.7", None),
        (b"<svg", None),
        (b"8BPS\x00\x01", None),
    ],
)
def test_sniffing(head: bytes, kind: str | None):
    assert sniff_image(head) == kind


def test_display_names_are_names_not_paths():
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\photos\\cat.jpg") == "cat.jpg"
    assert display_name("a\x00b\nc.png") == "abc.png"
    assert display_name(None) == display_name("") == "upload"
    assert len(display_name("x" * 1000)) == 120


def test_read_upload_stops_at_the_limit():
    class Source:
        filename = "big.jpg"

        def __init__(self):
            self.stream = io.BytesIO(b"x" * 5_000_000)
            self.reads = 0

        async def read(self, size: int = -1) -> bytes:
            self.reads += 1
            return self.stream.read(size)

    source = Source()
    with pytest.raises(ImageTooLarge):
        asyncio.run(read_upload(source, 1_500_000))
    assert source.reads == 2


def test_serve_command_registers_on_a_typer_app():
    app = typer.Typer()
    app.command(name="other")(lambda: None)
    register(app)
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--db", "--host", "--port", "--token", "--protect-search", "--workers", "--queue"):
        assert option in result.output
    assert TOKEN_ENV in result.output
