"""The FastAPI application: `create_app(settings)` builds one; nothing is created at import.

Routes are thin: check access, read the uploads (streamed, size-limited), hand the work to the
bounded worker pool, return its JSON. Every error reaches the client as `{"error": "..."}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from imgprov import __version__
from imgprov.errors import ImgprovError
from imgprov.images import declared_pixels
from imgprov.service import jobs
from imgprov.service.errors import BadRequest, ClientGone, UnknownImage, client_message, status_of
from imgprov.service.forms import form_file, form_flag, form_id, form_text
from imgprov.service.pool import Slot
from imgprov.service.security import BodyLimit, HeadAsGet, SecurityHeaders, search_access, write_access
from imgprov.service.settings import ServiceSettings
from imgprov.service.state import RELEASE_SECONDS, ServiceState, build_state
from imgprov.service.uploads import SUPPORTED, Upload, read_upload

log = logging.getLogger("imgprov.service")
T = TypeVar("T")

STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
}
PAGES = {"/": "index.html", "/docs": "docs.html"}
ImageId = Annotated[int, Path(ge=1, description="An image id from a search result or `POST /v1/images`.")]
FORM_FIELDS = 4
"""Most form fields a request may send (the API reads at most three)."""
LARGE_IMAGE_PIXELS = 16_000_000
"""Uploads declaring more pixels than this (a 16-megapixel photo) are searched one at a time."""
MAX_IMAGE_ID = (1 << 63) - 1
"""Largest id the catalogue can hold (a signed 64-bit integer); a larger one names no image."""
WithPictures = Annotated[
    bool, Query(description="Add `pictures`: data URLs of the query, heatmap, aligned original, vote map.")
]

DESCRIPTION = """Find the originals an image is made of, what role each played, and what was changed.

Uploads are multipart form fields; their type is read from their bytes, never from their name.
Send the server's token as `Authorization: Bearer <token>`: always to change the collection, and to
search when the server protects searching. Every error is `{"error": "..."}`."""


class ErrorBody(BaseModel):
    """What every failed request returns."""

    error: str


ERRORS = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Bad request: empty upload, corrupt image, missing field"),
        (401, "Missing or wrong token"),
        (413, "Upload or image too large"),
        (415, "Not a supported image"),
        (503, "Every worker busy and the queue full; retry later"),
        (422, "A blank (flat) image to compare"),
        (504, "The job took longer than the request timeout or its CPU budget"),
    )
}


def multipart_body(fields: dict[str, dict], required: list[str]) -> dict:
    """The OpenAPI request body of a multipart form (the routes read their forms themselves, after
    the token check and the queue admission, so FastAPI does not describe them)."""
    schema = {"type": "object", "properties": fields, "required": required}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


IMAGE_FIELD = {"type": "string", "format": "binary", "description": f"An image file ({SUPPORTED})."}
IMAGE_BODY = multipart_body({"file": IMAGE_FIELD}, ["file"])
SEARCH_BODY = multipart_body(
    {
        "file": IMAGE_FIELD,
        "explain": {
            "type": "boolean",
            "default": False,
            "description": "Also compare the query with the top match and return it as `top` (slower: "
            "a full comparison). Without it, ask `/v1/compare` with `query_token` and `original_id`.",
        },
    },
    ["file"],
)
COMPARE_BODY = multipart_body(
    {
        "query": IMAGE_FIELD,
        "query_token": {
            "type": "string",
            "pattern": "^[0-9a-f]{32}$",
            "description": "Or: the `query_token` of a recent search, instead of sending its file again "
            "(404 once the server no longer keeps it: send the file).",
        },
        "original": {**IMAGE_FIELD, "description": "The candidate original."},
        "original_id": {"type": "integer", "minimum": 1, "description": "Or: the id of an indexed original."},
    },
    [],
)


def create_app(settings: ServiceSettings) -> FastAPI:
    """An application serving the index at `settings.db`: the API under /v1, the page at /."""
    app = FastAPI(
        title="imgprov",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
        redirect_slashes=False,
    )
    app.state.service = build_state(settings)
    app.state.static = {name: _static_bytes(name) for name in [*STATIC_FILES, *PAGES.values()]}
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes, timeout=settings.upload_timeout)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAsGet)
    _add_error_handlers(app)
    _add_api_routes(app)
    _add_page_routes(app)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state.service
    releaser = asyncio.create_task(_release_stale_snapshots(state))
    try:
        yield
    finally:
        releaser.cancel()
        state.shutdown()


async def _release_stale_snapshots(state: ServiceState) -> None:
    """Let go of an old snapshot of the index even when no request comes (see `CollectionCache`)."""
    while True:
        await asyncio.sleep(RELEASE_SECONDS)
        try:
            await asyncio.to_thread(state.collections.release_if_stale)
        except (ImgprovError, sqlite3.Error) as exc:
            log.error("checking the index for changes failed: %s", exc)


def _add_api_routes(app: FastAPI) -> None:
    search = {"dependencies": [Depends(search_access)], "responses": ERRORS}
    write = {"dependencies": [Depends(write_access)], "responses": ERRORS, "tags": ["collection"]}
    app.add_api_route("/v1/health", get_health, methods=["GET"], tags=["service"])
    app.add_api_route(
        "/v1/search", post_search, methods=["POST"], tags=["search"], openapi_extra=SEARCH_BODY, **search
    )
    app.add_api_route(
        "/v1/compare", post_compare, methods=["POST"], tags=["search"], openapi_extra=COMPARE_BODY, **search
    )
    app.add_api_route(
        "/v1/images", post_image, methods=["POST"], status_code=201, openapi_extra=IMAGE_BODY, **write
    )
    app.add_api_route("/v1/images/{image_id}", get_image, methods=["GET"], tags=["collection"], **search)
    app.add_api_route(
        "/v1/images/{image_id}/thumbnail",
        get_thumbnail,
        methods=["GET"],
        tags=["collection"],
        dependencies=[Depends(search_access)],
        responses={**ERRORS, 200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail"}},
        response_class=Response,
    )
    app.add_api_route("/v1/images/{image_id}", delete_image, methods=["DELETE"], **write)


def _add_page_routes(app: FastAPI) -> None:
    for route in PAGES:
        app.add_api_route(route, page, methods=["GET"], include_in_schema=False, response_class=Response)
    app.add_api_route(
        "/static/{name}", static_file, methods=["GET"], include_in_schema=False, response_class=Response
    )


async def get_health(request: Request) -> JSONResponse:
    """Whether the service is up, how many originals it holds (only when searching is open), and how
    busy it is."""
    state = service_of(request)
    collection = {}
    if state.settings.open_search:
        timeout = state.settings.request_timeout
        collection["images"] = await state.light_jobs.run(_image_count, state, timeout=timeout)
    return api_json(
        {
            "status": "ok",
            "version": __version__,
            **collection,
            "open_search": state.settings.open_search,
            "writable": state.settings.writable,
            "workers": state.jobs.workers,
            "capacity": state.jobs.capacity,
            "pending": state.jobs.pending,
            "max_upload_bytes": state.settings.max_upload_bytes,
        }
    )


async def post_search(
    request: Request,
    top_k: Annotated[int | None, Query(ge=1, le=100, description="Most matches to return.")] = None,
    unconfirmed: Annotated[
        bool,
        Query(description="Add `unconfirmed`: the candidates ranked after the matches, up to top_k in all."),
    ] = False,
    pictures: WithPictures = False,
) -> JSONResponse:
    """Find the originals of an image (form field `file`).

    Returns the search JSON (`query`, `width`, `height`, `credentials`, `matches`, `unconfirmed`,
    `timings`, `query_token`); `unconfirmed` lists the candidates ranked after the matches, below
    the match threshold and without a role, when asked for (else it is empty). Each match adds its
    `name`, `role` (host or donor), `coverage` (share of the query its regions cover) and `original`
    (metadata). `query_token` stands for the uploaded file in `/v1/compare` for a while (null when
    the server could not keep it). With the form field `explain=true`, `top` is the comparison with
    the first match: `verdict`, `probability`, `probabilities`, changed `regions` and their `outline`
    polygons in query pixels, or null when nothing matched. A blank (flat) image matches nothing.
    """
    state = service_of(request)
    with state.jobs.reserve() as slot:
        async with request.form(max_files=1, max_fields=FORM_FIELDS) as form:
            upload = await read_upload(form_file(form, "file"), state.settings.max_upload_bytes)
            explain = form_flag(form, "explain")
        job = jobs.SearchRequest(upload, top_k or state.settings.top_k, pictures, unconfirmed, explain)
        return api_json(await run_job(request, slot, jobs.search_job, job, upload))


async def post_compare(request: Request, pictures: WithPictures = False) -> JSONResponse:
    """Compare an image (form field `query`, or `query_token` from a recent search) with a candidate
    original: an upload (`original`) or an indexed image by id (`original_id`).

    A comparison with an indexed original is kept for a while: the same query bytes compared with
    the same original, unchanged, are answered without comparing again. Returns `verdict` (benign,
    manipulated or distinct), its `probability`, all `probabilities`, the `transform` from query to
    original pixels, changed `regions` with their `outline`.
    A blank (flat) image has nothing to compare: 422.
    """
    state = service_of(request)
    limit = state.settings.max_upload_bytes
    with state.jobs.reserve() as slot:
        async with request.form(max_files=2, max_fields=FORM_FIELDS) as form:
            query_upload = await read_query(state, form)
            original, original_id = form_file(form, "original", required=False), form_id(form, "original_id")
            if (original is None) == (original_id is None):
                raise BadRequest("send exactly one of the form fields `original` (a file) and `original_id`")
            original_upload = await read_upload(original, limit) if original is not None else None
        job = jobs.CompareRequest(query_upload, original_upload, known_id(original_id), pictures)
        uploads = [upload for upload in (query_upload, original_upload) if upload is not None]
        return api_json(await run_job(request, slot, jobs.compare_job, job, *uploads))


async def read_query(state: ServiceState, form: FormData) -> Upload:
    """The query of a comparison: the file in form field `query`, or the upload a recent search
    kept behind the `query_token` sent (400 when it is no token, 404 when unknown or expired)."""
    query, token = form_file(form, "query", required=False), form_text(form, "query_token")
    if (query is None) == (token is None):
        raise BadRequest("send exactly one of the form fields `query` (a file) and `query_token`")
    if token is not None:
        return state.queries.upload(token)
    return await read_upload(query, state.settings.max_upload_bytes)


async def post_image(request: Request) -> JSONResponse:
    """Add an original (form field `file`) to the collection (token required).

    The server stores the uploaded bytes under its index directory. 201 with the new image's
    metadata; 200 with the existing one when the same bytes are already indexed.
    """
    state = service_of(request)
    with state.jobs.reserve() as slot:
        async with request.form(max_files=1, max_fields=FORM_FIELDS) as form:
            upload = await read_upload(form_file(form, "file"), state.settings.max_upload_bytes)
        record, created = await slot.run(
            jobs.add_original_job,
            state,
            upload,
            timeout=state.settings.request_timeout,
            disconnected=request.is_disconnected,
        )
    headers = {"Location": f"/v1/images/{record['id']}"}
    return api_json({"image": record, "created": created}, status=201 if created else 200, headers=headers)


async def get_image(request: Request, image_id: ImageId) -> JSONResponse:
    """An original's metadata: name, sha256, size, dimensions, format, times, thumbnail URL."""
    state = service_of(request)
    return api_json(
        await state.light_jobs.run(
            jobs.image_job, state, known_id(image_id), timeout=state.settings.request_timeout
        )
    )


async def get_thumbnail(request: Request, image_id: ImageId) -> Response:
    """A JPEG of the original at most 320 pixels on its long side."""
    state = service_of(request)
    data = await state.light_jobs.run(
        jobs.thumbnail_job, state, known_id(image_id), timeout=state.settings.request_timeout
    )
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


async def delete_image(request: Request, image_id: ImageId) -> JSONResponse:
    """Remove an original from the collection (token required); a file the server stored is deleted."""
    state = service_of(request)
    removed = await state.jobs.run(
        jobs.remove_original_job, state, known_id(image_id), timeout=state.settings.request_timeout
    )
    return api_json({"removed": removed})


async def page(request: Request) -> Response:
    name = PAGES[request.url.path]
    return Response(request.app.state.static[name], media_type="text/html; charset=utf-8")


async def static_file(request: Request, name: str) -> Response:
    """One of the page's own files; the name is looked up in a fixed table, never used as a path."""
    if name not in STATIC_FILES:
        raise HTTPException(404, "not found")
    return Response(request.app.state.static[name], media_type=STATIC_FILES[name])


async def run_job(
    request: Request, slot: Slot, job: Callable[[ServiceState, T], dict], argument: T, *uploads: Upload
) -> dict:
    """Run a search or comparison in its slot, within the request timeout and the CPU budget of one
    request, cancelled when the client disconnects. Jobs whose uploads declare more than
    `LARGE_IMAGE_PIXELS` run one at a time (`ServiceState.large_lane`), so that large images, or
    small files declaring a large size, never hold every worker while ordinary searches wait."""
    state = service_of(request)
    pixels = sum(declared_pixels(upload.data) for upload in uploads)
    async with state.large_lane if pixels > LARGE_IMAGE_PIXELS else contextlib.nullcontext():
        return await slot.run(
            job,
            state,
            argument,
            timeout=state.settings.request_timeout,
            cpu_seconds=state.settings.job_cpu_seconds,
            disconnected=request.is_disconnected,
        )


def known_id(image_id: int | None) -> int | None:
    """The id, or `UnknownImage` (404) when it is too large for any image to have it."""
    if image_id is not None and image_id > MAX_IMAGE_ID:
        raise UnknownImage(f"no image with id {image_id} in the collection")
    return image_id


def service_of(request: Request) -> ServiceState:
    return request.app.state.service


def api_json(body: dict, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON response that no cache keeps."""
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


def _image_count(state: ServiceState) -> int:
    return state.collections.current().catalogue.image_count()


def _static_bytes(name: str) -> bytes:
    return resources.files("imgprov.service").joinpath("static", name).read_bytes()


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ImgprovError, _imgprov_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)


async def _imgprov_error(request: Request, exc: ImgprovError) -> JSONResponse:
    status = status_of(exc)
    if status >= 500 and status not in (503, 504):
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error_json(500, "internal error; see the server log")
    headers = {"Retry-After": "2"} if status == 503 else None
    return error_json(status, client_message(exc), headers)


async def _client_disconnected(request: Request, exc: ClientDisconnect) -> JSONResponse:
    """The client hung up while sending its form: nobody reads this answer, and nothing failed."""
    return await _imgprov_error(request, ClientGone("the client disconnected while sending its request"))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error_json(exc.status_code, str(exc.detail), exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path"))
    return error_json(400, f"invalid request: {where or 'request'}: {first.get('msg', 'invalid value')}")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    return error_json(500, "internal error; see the server log")


def error_json(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"error": message}` on one line, without any stack trace."""
    line = " ".join(message.split())[:500]
    return JSONResponse({"error": line}, status_code=status, headers=headers)
