"""The work behind each endpoint, run on a worker thread: decode, search, compare, index, render."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from imgprov.compare import Comparison, compare_images
from imgprov.images import LoadedImage, is_near_constant
from imgprov.pictures import web as pictures
from imgprov.provenance import ContentCredentials, mime_type_for, read_manifest
from imgprov.results import SearchResult
from imgprov.search.pipeline import search
from imgprov.service.adapters import Explanation, explain_original, explain_record, indexed_record
from imgprov.service.caches import ComparisonKey
from imgprov.service.cancellation import checkpoint
from imgprov.service.errors import BlankImage, OriginalUnavailable, UnknownImage
from imgprov.service.originals import add_original, remove_original
from imgprov.service.payloads import (
    comparison_payload,
    explanation_payload,
    image_payload,
    search_payload,
)
from imgprov.service.state import ServiceState
from imgprov.service.uploads import Upload, decode_upload
from imgprov.storage import Store

WRITER_WAIT_FRACTION = 0.5
"""Share of the request timeout a change may wait for another writer to finish."""


@dataclass(frozen=True)
class SearchRequest:
    """A query, how many matches to return, whether to add pictures for the page, whether to list
    the unconfirmed candidates, and whether to compare the query with the top match (`explain`)."""

    upload: Upload
    top_k: int
    with_pictures: bool
    unconfirmed: bool = False
    explain: bool = False


@dataclass(frozen=True)
class CompareRequest:
    """A query and the original to compare it with: an upload or an indexed image's id."""

    query: Upload
    original: Upload | None
    original_id: int | None
    with_pictures: bool


def search_job(state: ServiceState, request: SearchRequest) -> dict:
    """Find the originals of the upload and describe them; compare the query with the top match
    when asked to (`explain`). The upload is kept for `/v1/compare` behind its `query_token`."""
    query = decode(state, request.upload)
    collection = state.collections.current()
    credentials = read_manifest(request.upload.data, mime_type_for(query.format), trust=state.trust)
    checkpoint()
    if is_near_constant(query.pixels):
        result = nothing_found(request.upload.name, query, credentials)
    else:
        result = search(
            collection,
            query.pixels,
            state.search_conf,
            embedder=state.embedder,
            top_k=request.top_k,
            query_name=request.upload.name,
            unconfirmed=request.unconfirmed,
            query_credentials=credentials,
        )
    checkpoint()
    records = collection.images([match.image_id for match in result.matches + result.unconfirmed])
    body = search_payload(result, records, state.queries.keep(request.upload, query.sha256))
    explanation = None
    if request.explain:
        explanation, body["top"] = explain_top(state, collection, query.pixels, result)
    checkpoint()
    if request.with_pictures:
        body["pictures"] = search_pictures(query.pixels, result, explanation)
    return body


def explain_top(
    state: ServiceState, collection: Store, query: np.ndarray, result: SearchResult
) -> tuple[Explanation | None, dict | None]:
    """The comparison with the best match and its JSON; `{"id", "error"}` when its file is gone."""
    if not result.matches:
        return None, None
    image_id = result.matches[0].image_id
    try:
        state.comparisons.count_computed()
        explanation = explain_original(collection, query, image_id, state.compare_conf)
    except (OriginalUnavailable, UnknownImage) as exc:
        return None, {"id": image_id, "error": str(exc)}
    return explanation, explanation_payload(explanation)


def nothing_found(name: str, query: LoadedImage, credentials: ContentCredentials | None) -> SearchResult:
    """The answer to a blank or flat query, found without searching: it shows nothing any original
    could be the source of."""
    summary = credentials.summary() if credentials is not None else None
    return SearchResult(
        query=name, width=query.width, height=query.height, matches=(), timings={}, credentials=summary
    )


def compare_job(state: ServiceState, request: CompareRequest) -> dict:
    """Compare the query with an uploaded original or with an indexed one."""
    if request.original is None:
        return compare_indexed_job(state, request)
    query = decode_comparable(state, request.query)
    checkpoint()
    original = decode_comparable(state, request.original).pixels
    checkpoint()
    comparison = compare_images(query.pixels, original, state.compare_conf)
    checkpoint()
    return comparison_body(request, query, original, comparison, {"name": request.original.name})


def compare_indexed_job(state: ServiceState, request: CompareRequest) -> dict:
    """Compare the query with the indexed original `request.original_id`, or answer from
    `state.comparisons` when the same bytes were compared with the same original (as it is now)."""
    collection = state.collections.current()
    record = indexed_record(collection, request.original_id)
    key = ComparisonKey.of(hashlib.sha256(request.query.data).hexdigest(), record)
    cached = state.comparisons.lookup(key, request.with_pictures)
    if cached is not None:
        return {**cached, "query": request.query.name}
    query = decode_comparable(state, request.query)
    checkpoint()
    state.comparisons.count_computed()
    explanation = explain_record(collection, query.pixels, record, state.compare_conf)
    checkpoint()
    body = comparison_body(
        request, query, explanation.original, explanation.comparison, image_payload(explanation.record)
    )
    state.comparisons.store(key, body)
    return body


def comparison_body(
    request: CompareRequest,
    query: LoadedImage,
    original: np.ndarray,
    comparison: Comparison,
    original_json: dict,
) -> dict:
    """The comparison JSON, with the pictures for the page when asked for."""
    body = {
        "query": request.query.name,
        "width": query.width,
        "height": query.height,
        "original": original_json,
        **comparison_payload(comparison),
    }
    if request.with_pictures:
        body["pictures"] = comparison_pictures(query.pixels, original, comparison)
    return body


def add_original_job(state: ServiceState, upload: Upload) -> tuple[dict, bool]:
    """Index an uploaded original; returns its metadata and whether it is new."""
    image = decode(state, upload)
    checkpoint()
    added = add_original(state.settings.db, upload, image, wait_seconds=writer_wait(state))
    state.collections.reload()
    return image_payload(added.record), added.created


def remove_original_job(state: ServiceState, image_id: int) -> dict:
    """Remove an original from the collection; returns the metadata it had."""
    record = remove_original(state.settings.db, image_id, wait_seconds=writer_wait(state))
    state.collections.reload()
    state.comparisons.forget_original(image_id)
    return image_payload(record)


def image_job(state: ServiceState, image_id: int) -> dict:
    """Metadata of one indexed original."""
    record = state.collections.current().images([image_id]).get(image_id)
    if record is None:
        raise UnknownImage(f"no image with id {image_id} in the collection")
    return image_payload(record)


def thumbnail_job(state: ServiceState, image_id: int) -> bytes:
    """JPEG bytes of an original's thumbnail."""
    record = state.collections.current().images([image_id]).get(image_id)
    if record is None:
        raise UnknownImage(f"no image with id {image_id} in the collection")
    try:
        return pictures.thumbnail_jpeg(record.path, record.sha256)
    except OriginalUnavailable:
        raise OriginalUnavailable(f"the file of image {image_id} cannot be read on the server") from None


def search_pictures(query: np.ndarray, result: SearchResult, top: Explanation | None) -> dict:
    """The query, its vote map, and the top match's heatmap and aligned original when there is one."""
    shown = {"query": pictures.query_picture(query), "vote_map": pictures.vote_map_picture(query, result)}
    if top is not None:
        shown |= comparison_pictures(query, top.original, top.comparison)
    return shown


def comparison_pictures(query: np.ndarray, original: np.ndarray, comparison: Comparison) -> dict:
    """The query, the heatmap layer over it and the original aligned onto it."""
    return {
        "query": pictures.query_picture(query),
        "heatmap": pictures.heatmap_picture(comparison),
        "aligned_original": pictures.aligned_original_picture(original, comparison),
    }


def decode(state: ServiceState, upload: Upload) -> LoadedImage:
    """Decode an upload within the server's limits."""
    settings = state.settings
    return decode_upload(upload, max_pixels=settings.max_pixels, max_bytes=settings.max_upload_bytes)


def decode_comparable(state: ServiceState, upload: Upload) -> LoadedImage:
    """Decode an image to compare; `BlankImage` (422) when it is blank or flat, which no verdict fits."""
    image = decode(state, upload)
    if is_near_constant(image.pixels):
        raise BlankImage(f"{upload.name}: the image is blank (one flat colour); there is nothing to compare")
    return image


def writer_wait(state: ServiceState) -> float:
    """Seconds a change waits for the index's writer lock before giving up (503)."""
    return state.settings.request_timeout * WRITER_WAIT_FRACTION
