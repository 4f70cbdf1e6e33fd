"""Access control and the request/response guards every route shares.

Tokens are compared in constant time and never logged. `BodyLimit` counts request bytes as they
arrive, so an oversized upload is refused before it is read to the end.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgprov.service.settings import TOKEN_ENV, ServiceSettings

bearer = HTTPBearer(auto_error=False, description="The server's token: `Authorization: Bearer <token>`.")

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def settings_of(request: Request) -> ServiceSettings:
    return request.app.state.service.settings


def token_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; False when either side is missing."""
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def require_token(settings: ServiceSettings, credentials: HTTPAuthorizationCredentials | None) -> None:
    """401 unless the request carries the server's token."""
    given = credentials.credentials if credentials is not None else None
    if not token_matches(given, settings.token):
        message = "missing token" if given is None else "wrong token"
        raise HTTPException(
            401, f"{message}: send `Authorization: Bearer <token>`", {"WWW-Authenticate": "Bearer"}
        )


def search_access(request: Request, credentials: BearerCredentials) -> None:
    """Reading the collection: open, or token-protected when the server was started so."""
    settings = settings_of(request)
    if not settings.open_search:
        require_token(settings, credentials)


def write_access(request: Request, credentials: BearerCredentials) -> None:
    """Changing the collection: always the token; refused outright when the server has none."""
    settings = settings_of(request)
    if not settings.writable:
        raise HTTPException(
            403, f"this server was started without a token (--token or ${TOKEN_ENV}); it is read-only"
        )
    require_token(settings, credentials)


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, by its Content-Length or as it streams,
    and 408 for a body still incomplete `timeout` seconds after the request began (a client that
    trickles its upload would otherwise hold a connection for as long as it likes).

    When a limit is passed mid-stream the error is sent at once, the application is told the client
    went away, and whatever it answers after that is dropped.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_error(send, 413, self._message())
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        exchange = _LimitedExchange(receive, send, self.max_bytes, self._message(), deadline)
        await self.app(scope, *exchange.channels())

    def _message(self) -> str:
        return f"the request body exceeds the limit of {self.max_bytes} bytes"


class _LimitedExchange:
    """The receive and send channels of one request under `BodyLimit`."""

    def __init__(self, receive: Receive, send: Send, max_bytes: int, message: str, deadline: float):
        self._receive = receive
        self._send = send
        self._max_bytes = max_bytes
        self._message = message
        self._deadline = deadline
        self._received = 0
        self._body_complete = False
        self._response_started = False
        self._refused = False

    def channels(self) -> tuple[Receive, Send]:
        return self.receive, self.send

    async def receive(self) -> Message:
        if self._refused:
            return {"type": "http.disconnect"}
        if self._body_complete:
            return await self._receive()
        try:
            message = await asyncio.wait_for(
                self._receive(), self._deadline - asyncio.get_running_loop().time()
            )
        except TimeoutError:
            return await self._refuse(408, "the request body took too long to arrive")
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            self._body_complete = not message.get("more_body", False)
            if self._received > self._max_bytes:
                return await self._refuse(413, self._message)
        return message

    async def _refuse(self, status: int, message: str) -> Message:
        self._refused = True
        if not self._response_started:
            await send_error(self._send, status, message)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self._refused:
            return
        if message["type"] == "http.response.start":
            self._response_started = True
        await self._send(message)


class SecurityHeaders:
    """ASGI middleware: the same security headers on every response (the page loads only itself)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """ASGI middleware: a HEAD request is answered as its GET, headers only (RFC 9110 section 9.3.2),
    instead of FastAPI's 405."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


async def send_error(send: Send, status: int, message: str) -> None:
    """Send a complete `{"error": message}` response on a raw ASGI channel."""
    body = json.dumps({"error": message}).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
