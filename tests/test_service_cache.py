"""Interactive search (issue 21): `/v1/search` answers without comparing unless asked (`explain`),
`/v1/compare` takes the search's `query_token` instead of the file, and comparisons are kept, in
bounded caches, until their original changes. On the real photo index and real comparisons."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from imgprov.demo import UNRELATED_PHOTO, make_queries, skimage_data_dir
from imgprov.service.app import create_app
from imgprov.service.caches import BoundedLRU, CacheBounds, QueryCache
from imgprov.service.errors import BadRequest, UnknownQuery
from imgprov.service.settings import ServiceSettings
from imgprov.service.state import ServiceState
from imgprov.service.uploads import Upload
from tests.support import private_copy
from tests.test_service_api import TOKEN, assert_error, auth, image_file

TOKEN_FORMAT = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def service_db(photo_db, new_db) -> str:
    """A private copy of the photo index (these tests add and remove an original)."""
    return private_copy(photo_db, new_db)


@pytest.fixture(scope="module")
def queries(tmp_path_factory) -> dict[str, Path]:
    written = make_queries(skimage_data_dir(), tmp_path_factory.mktemp("queries"))
    return {query.path.stem: query.path for query in written}


@pytest.fixture(scope="module")
def client(service_db) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceSettings(db=service_db, token=TOKEN))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def spliced(client, queries) -> dict:
    """The search for the splice (astronaut with chelsea's face), without `explain`."""
    response = client.post("/v1/search?pictures=true", files=image_file(queries["spliced"]))
    assert response.status_code == 200, response.text
    return response.json()


def state_of(client: TestClient) -> ServiceState:
    return client.app.state.service


def compare(client: TestClient, original_id: int, *, token: str | None = None, query: Path | None = None):
    """POST /v1/compare?pictures=true with the query by token or by file."""
    files = {"query": (query.name, query.read_bytes(), "image/jpeg")} if query is not None else None
    data = {"original_id": str(original_id), **({"query_token": token} if token is not None else {})}
    return client.post("/v1/compare?pictures=true", files=files, data=data)


def test_search_without_explain_has_matches_and_a_token_but_no_comparison(client, queries):
    before = state_of(client).comparisons.computed
    response = client.post("/v1/search?pictures=true", files=image_file(queries["spliced"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [match["name"] for match in body["matches"][:2]] == ["astronaut.png", "chelsea.png"]
    assert "top" not in body and TOKEN_FORMAT.fullmatch(body["query_token"])
    assert set(body["pictures"]) == {"query", "vote_map"}
    assert state_of(client).comparisons.computed == before, "no comparison was run"


def test_search_with_explain_compares_with_the_top_match(client, queries):
    before = state_of(client).comparisons.computed
    response = client.post("/v1/search", files=image_file(queries["spliced"]), data={"explain": "true"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["top"]["id"] == body["matches"][0]["id"] and body["top"]["verdict"] == "manipulated"
    assert state_of(client).comparisons.computed == before + 1
    assert_error(
        client.post("/v1/search", files=image_file(queries["spliced"]), data={"explain": "maybe"}), 400
    )


def test_the_search_documents_explain_and_compare_documents_query_token(client):
    paths = client.get("/openapi.json").json()["paths"]
    form = "multipart/form-data"
    search = paths["/v1/search"]["post"]["requestBody"]["content"][form]["schema"]["properties"]
    assert search["explain"]["type"] == "boolean"
    compared = paths["/v1/compare"]["post"]["requestBody"]["content"][form]["schema"]["properties"]
    assert {"query", "query_token", "original", "original_id"} <= set(compared)


def test_compare_by_token_equals_compare_by_upload(client, service_db, queries, spliced):
    chelsea = spliced["matches"][1]["id"]
    by_token = compare(client, chelsea, token=spliced["query_token"])
    assert by_token.status_code == 200, by_token.text
    with TestClient(create_app(ServiceSettings(db=service_db))) as fresh:
        by_upload = compare(fresh, chelsea, query=queries["spliced"])
        assert by_upload.status_code == 200, by_upload.text
        assert state_of(fresh).comparisons.computed == 1
    assert without_timings(by_token.json()) == without_timings(by_upload.json())
    assert by_token.json()["original"]["name"] == "chelsea.png"


def without_timings(body: dict) -> dict:
    return {name: value for name, value in body.items() if name != "timings"}


def test_a_repeated_comparison_is_answered_from_the_cache(client, queries, spliced):
    comparisons = state_of(client).comparisons
    astronaut = spliced["matches"][0]["id"]
    first = compare(client, astronaut, query=queries["spliced"])
    assert first.status_code == 200, first.text
    computed, hits = comparisons.computed, comparisons.hits
    again = compare(client, astronaut, token=spliced["query_token"])
    assert again.status_code == 200 and again.json() == first.json()
    plain = client.post(
        "/v1/compare", data={"query_token": spliced["query_token"], "original_id": str(astronaut)}
    )
    assert plain.json() == {name: value for name, value in first.json().items() if name != "pictures"}
    assert (comparisons.computed, comparisons.hits) == (computed, hits + 2), "nothing was compared again"


def test_unknown_and_malformed_tokens_are_one_line_errors(client, spliced):
    original = str(spliced["matches"][0]["id"])
    for token, status in (("0" * 32, 404), ("../../etc/passwd", 400), ("A" * 32, 400), ("", 400)):
        response = client.post("/v1/compare", data={"query_token": token, "original_id": original})
        assert_error(response, status)
    as_file = {"query_token": ("token", spliced["query_token"].encode(), "text/plain")}
    assert_error(client.post("/v1/compare", files=as_file, data={"original_id": original}), 400)
    both = {"query": ("q.jpg", b"\xff\xd8\xff", "image/jpeg")}
    data = {"query_token": spliced["query_token"], "original_id": original}
    assert_error(client.post("/v1/compare", files=both, data=data), 400)


def test_caches_keep_to_their_bounds(service_db, queries):
    settings = ServiceSettings(
        db=service_db, comparison_cache_entries=2, query_cache_entries=2, query_cache_bytes=150_000
    )
    with TestClient(create_app(settings)) as bounded:
        comparisons = state_of(bounded).comparisons
        ids = [match["id"] for match in search(bounded, queries["spliced"])["matches"][:2]] + [
            search(bounded, queries["flipped"])["matches"][0]["id"]
        ]
        for image_id in ids:
            assert compare(bounded, image_id, query=queries["spliced"]).status_code == 200
        assert len(comparisons) == 2 and comparisons.computed == 3
        assert compare(bounded, ids[0], query=queries["spliced"]).status_code == 200
        assert comparisons.computed == 4, "the least recently used comparison was evicted"
        assert len(state_of(bounded).queries) <= 2
        assert state_of(bounded).queries.size_bytes <= 150_000
        large = (skimage_data_dir() / "astronaut.png").stat().st_size
        assert large > 150_000
        body = search(bounded, skimage_data_dir() / "astronaut.png")
        assert body["query_token"] is None, "an upload larger than the cache is not kept"


def search(client: TestClient, path: Path) -> dict:
    response = client.post("/v1/search", files=image_file(path, content_type="application/octet-stream"))
    assert response.status_code == 200, response.text
    return response.json()


def test_removing_an_original_forgets_its_comparisons(client, queries):
    photo = skimage_data_dir() / UNRELATED_PHOTO
    added = client.post("/v1/images", files=image_file(photo, content_type="image/png"), headers=auth())
    assert added.status_code == 201, added.text
    image_id = added.json()["image"]["id"]
    comparisons = state_of(client).comparisons
    token = search(client, queries["unrelated"])["query_token"]
    assert compare(client, image_id, token=token).status_code == 200
    computed, kept = comparisons.computed, len(comparisons)

    assert client.delete(f"/v1/images/{image_id}", headers=auth()).status_code == 200
    assert len(comparisons) == kept - 1
    assert_error(compare(client, image_id, token=token), 404)

    again = client.post("/v1/images", files=image_file(photo, content_type="image/png"), headers=auth())
    assert again.status_code == 201, again.text
    assert compare(client, again.json()["image"]["id"], token=token).status_code == 200
    assert comparisons.computed == computed + 1, "the re-added original was compared anew"
    assert client.delete(f"/v1/images/{again.json()['image']['id']}", headers=auth()).status_code == 200


def test_workers_default_to_the_available_cores(service_db):
    assert ServiceSettings(db=service_db).workers == len(os.sched_getaffinity(0))


class Clock:
    """Time that a test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_query_tokens_expire_and_cannot_be_made_up():
    clock = Clock()
    cache = QueryCache(CacheBounds(entries=4, max_bytes=1 << 20, ttl_seconds=60), clock)
    upload = Upload(b"\xff\xd8\xff" + bytes(1000), "q.jpg")
    token = cache.keep(upload, "a" * 64)
    assert token == cache.keep(upload, "a" * 64) and len(cache) == 1, "same bytes, one entry"
    assert token != QueryCache(cache._uploads.bounds).keep(upload, "a" * 64), "a secret per process"
    clock.now = 59
    assert cache.upload(token) is upload
    clock.now = 59 + 61
    with pytest.raises(UnknownQuery):
        cache.upload(token)
    with pytest.raises(BadRequest):
        cache.upload("a" * 64)


def test_the_lru_keeps_to_entries_and_bytes():
    lru: BoundedLRU[int, bytes] = BoundedLRU(CacheBounds(entries=3, max_bytes=4000, ttl_seconds=60))
    for key in range(10):
        assert lru.put(key, bytes(500), 500)
        assert len(lru) <= 3 and lru.size_bytes <= 4000
    assert lru.get(9) is not None and lru.get(0) is None
    assert not lru.put(99, bytes(5000), 5000), "larger than the whole cache"
    lru.get(7)
    assert lru.put(10, bytes(2000), 2000)
    assert lru.get(7) is not None and lru.get(8) is None and lru.get(9) is None, "oldest first"
    assert lru.size_bytes <= 4000
