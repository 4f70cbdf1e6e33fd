"""Connection hygiene for uvicorn: a deadline for each request's header lines, and a connection
limit sized to the worker pool.

uvicorn closes a keep-alive connection idle after a response (`timeout_keep_alive`) but has no
deadline for the first request's headers, nor for a request whose header lines trickle in: such
connections would stay open indefinitely and fill the connection limit, after which uvicorn
answers every request, `/v1/health` included, with 503. `HeaderDeadlineProtocol` closes a
connection whose request headers are not complete `HEADER_SECONDS` after it opened, or after the
first bytes of a following request arrived. The body has its own deadline (`BodyLimit`).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_SECONDS = 10.0
"""Time a client has to send a request's line and headers."""
KEEP_ALIVE_SECONDS = 5
"""Time an idle keep-alive connection stays open after a response."""
LIGHT_CONNECTIONS = 32
"""Connections beyond the job slots: health checks, the page's files, thumbnails, metadata, and
requests about to be told 503 by the job pool itself."""


def connection_limit(workers: int, queue_size: int) -> int:
    """Open connections uvicorn serves before answering 503 itself: one per job slot, and room for
    the light requests that need no slot."""
    return workers + queue_size + LIGHT_CONNECTIONS


class WithoutQueryString(logging.Filter):
    """Drops the query string from uvicorn's access log lines: a client may put a token there (it
    is refused, as tokens are only read from the Authorization header, but it must not be logged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == ACCESS_LOG_ARGUMENTS:
            client, method, path, version, status = record.args
            record.args = (client, method, str(path).partition("?")[0], version, status)
        return True


ACCESS_LOG_ARGUMENTS = 5
"""uvicorn's access log record: client address, method, path with query, HTTP version, status."""
ACCESS_LOG_FILTER = WithoutQueryString()


def hide_query_strings() -> None:
    """Keep query strings out of uvicorn's access log (idempotent)."""
    logging.getLogger("uvicorn.access").addFilter(ACCESS_LOG_FILTER)


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection that does not complete its request headers in
    `HEADER_SECONDS` (silent or slow-header clients)."""

    header_seconds = HEADER_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._start_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers() and self._header_deadline is None:
            self._start_header_deadline()
        super().data_received(data)
        if not self._awaiting_headers():
            self._stop_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_deadline()
        super().connection_lost(exc)

    def _awaiting_headers(self) -> bool:
        """No request in progress: the next bytes are (part of) a request's line and headers."""
        return self.cycle is None or self.cycle.response_complete

    def _start_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _stop_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._awaiting_headers() and not self.transport.is_closing():
            self.transport.close()
