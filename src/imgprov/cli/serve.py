"""The `imgprov serve` command. `register(app)` adds it to the main Typer app.

FastAPI and uvicorn (the `serve` extra) are imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgprov import presets
from imgprov.cli.options import DbOption, TrustOption
from imgprov.compare import COMPARES, DEFAULT_COMPARE
from imgprov.errors import ImgprovError
from imgprov.service.settings import OPEN_SEARCH_ENV, TOKEN_ENV, ServiceSettings

DEFAULTS = ServiceSettings(db=Path("."))
INSTALL_HINT = "pip install 'imgprov[serve]'"


def serve_command(
    db: DbOption,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=TOKEN_ENV,
            show_envvar=True,
            help="Bearer token for changes (and searches with --protect-search); prefer the environment "
            "variable, a command line is visible to other users. Without one the collection is read-only.",
        ),
    ] = None,
    open_search: Annotated[
        bool,
        typer.Option(
            "--open-search/--protect-search",
            envvar=OPEN_SEARCH_ENV,
            show_envvar=True,
            help="Whether searching needs the token.",
        ),
    ] = DEFAULTS.open_search,
    workers: Annotated[
        int, typer.Option(min=1, help="Threads running searches (default: the cores available).")
    ] = DEFAULTS.workers,
    queue: Annotated[
        int, typer.Option(min=0, help="Jobs that may wait for a worker; beyond that, 503.")
    ] = DEFAULTS.queue_size,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest uploaded file, in MiB.")
    ] = DEFAULTS.max_upload_bytes / (1 << 20),
    max_megapixels: Annotated[
        float, typer.Option(min=0.001, help="Largest decoded image, in megapixels.")
    ] = DEFAULTS.max_pixels / 1e6,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a request may wait for its job.")
    ] = DEFAULTS.request_timeout,
    cpu_seconds: Annotated[
        float,
        typer.Option(min=0.01, help="CPU seconds a search or comparison may use before it is stopped (504)."),
    ] = DEFAULTS.job_cpu_seconds,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, help="Matches returned by default.")
    ] = DEFAULTS.top_k,
    preset: Annotated[
        str, typer.Option(help=f"Search preset: {', '.join(sorted(presets.SEARCHES))}.")
    ] = presets.DEFAULT_SEARCH,
    compare_preset: Annotated[
        str, typer.Option(help=f"Compare preset: {', '.join(sorted(COMPARES))}.")
    ] = DEFAULT_COMPARE,
    trust_anchors: TrustOption = None,
    create: Annotated[bool, typer.Option(help="Create an empty index at --db when there is none.")] = False,
) -> None:
    """Serve the HTTP API and the web page for the index at --db."""
    try:
        from imgprov.service.server import run_server
    except ImportError as exc:
        raise ImgprovError(
            f"the server needs FastAPI and uvicorn ({exc.name} is missing): {INSTALL_HINT}"
        ) from None
    run_server(
        db,
        host,
        port,
        token or None,
        open_search,
        workers=workers,
        queue_size=queue,
        max_upload_bytes=round(max_upload_mb * (1 << 20)),
        max_pixels=round(max_megapixels * 1e6),
        request_timeout=timeout,
        job_cpu_seconds=cpu_seconds,
        top_k=top_k,
        search_preset=preset,
        compare_preset=compare_preset,
        trust_anchors=trust_anchors,
        create=create,
    )


def register(app: typer.Typer) -> None:
    """Add `imgprov serve` to the main app."""
    app.command(name="serve")(serve_command)
