"""Running the service: `run_server` for `imgprov serve`, `background_server` for tests and benchmarks."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from imgprov.service.app import create_app
from imgprov.service.connections import (
    KEEP_ALIVE_SECONDS,
    HeaderDeadlineProtocol,
    connection_limit,
    hide_query_strings,
)
from imgprov.service.settings import ServiceSettings
from imgprov.storage import parse_location

STARTUP_SECONDS = 60.0


def run_server(
    db: Path | str,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    open_search: bool = True,
    **options: object,
) -> None:
    """Serve the index at `db` until interrupted; `options` are further `ServiceSettings` fields."""
    settings = ServiceSettings(db=db, token=token, open_search=open_search, **options)
    app = create_app(settings)
    print(
        f"imgprov: serving {parse_location(db).describe()} at {page_url(host, port)} "
        f"(search {'open' if open_search else 'token-protected'}, "
        f"changes {'token-protected' if settings.writable else 'disabled'}); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.Server(server_config(app, host=host, port=port)).run()


def server_config(app: FastAPI, *, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """uvicorn settings: no proxy headers trusted, connections bounded in number (by the job pool's
    size) and in time (idle keep-alive, request headers), no server banner, no query strings in the
    access log."""
    settings = app.state.service.settings
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=HeaderDeadlineProtocol,
        proxy_headers=False,
        server_header=False,
        limit_concurrency=connection_limit(settings.workers, settings.queue_size),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    hide_query_strings()
    return config


def page_url(host: str, port: int) -> str:
    """The URL to open in a browser (a wildcard address is reachable on the loopback)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/"


@contextlib.contextmanager
def background_server(app: FastAPI, *, log_level: str = "warning") -> Iterator[str]:
    """Serve `app` on a free loopback port in a thread; yields its base URL, stops it on exit."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        _wait_until_started(server, thread)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


def _wait_until_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the background server did not start")
        time.sleep(0.02)
