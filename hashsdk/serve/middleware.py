"""The ASGI middlewares of ``hashsdk serve``: header limits, the body size limit and
per-route statistics.

``HeaderLimit`` answers 431 to a request with more than ``max_headers`` headers or more than
``max_header_bytes`` of them in all (names and values), before any route runs.

``BodyLimit`` answers 413 to a body whose Content-Length is over the limit at once, before
reading any of it (so an ``Expect: 100-continue`` client is never told to send it), and to a
body sent without one (chunked) as soon as it passes the limit: no request makes the server
hold more than the limit. The answer goes out first; then what the client is still sending is
read and dropped (up to the limit again, and only while it keeps coming: ``DRAIN_IDLE_SECONDS``
without a byte ends it) before the connection closes, because closing a connection with unread
data makes the kernel reset it, and a client that sends its whole body before it reads (as
http.client does) would lose the 413 (nginx's lingering close does the same).

``RequestStats`` counts a request whose client went away before the answer as 499 (nginx's
"client closed request"), not as a server error.
"""

from __future__ import annotations

import asyncio
import json
import time

from hashsdk.serve.stats import Stats

DRAIN_IDLE_SECONDS = 0.25
CLIENT_CLOSED = 499


async def _answer(send, status: int, detail: str, more: bool = False) -> None:
    """A JSON ``{"detail": ...}`` answer that closes the connection; ``more``: its whole body
    is sent but the response is not complete yet (the connection stays open until an empty
    last chunk)."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": more})


class HeaderLimit:
    def __init__(self, app, max_headers: int, max_header_bytes: int):
        self.app, self.max_headers, self.max_header_bytes = app, max_headers, max_header_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = scope["headers"]
            if len(headers) > self.max_headers:
                return await _answer(send, 431, f"more than {self.max_headers} headers")
            if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
                return await _answer(send, 431, f"headers over {self.max_header_bytes:,} "
                                                "bytes in all")
        return await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            # answered before anything is read: an Expect: 100-continue client gets no 100
            return await self._refuse(receive, send)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        async def watching_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _TooLarge:
            if not started:
                await self._refuse(receive, send)

    async def _refuse(self, receive, send) -> None:
        """The 413, then the rest of the body drained (see the module docstring), then the
        response's end, which closes the connection."""
        await _answer(send, 413, f"the request body is over the limit of {self.max_bytes:,} "
                                 "bytes", more=True)
        seen = 0
        while seen <= self.max_bytes:
            try:
                message = await asyncio.wait_for(receive(), DRAIN_IDLE_SECONDS)
            except asyncio.TimeoutError:
                break
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
            seen += len(message.get("body", b""))
        await send({"type": "http.response.body", "body": b""})


class RequestStats:
    """Records each HTTP request's route template, status and seconds in a ``Stats``."""

    def __init__(self, app, stats: Stats):
        self.app, self.stats = app, stats

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status, answered = 500, False

        async def watching_receive():
            nonlocal status
            message = await receive()
            if message["type"] == "http.disconnect" and not answered:
                status = CLIENT_CLOSED
            return message

        async def watching_send(message):
            nonlocal status, answered
            if message["type"] == "http.response.start" and status != CLIENT_CLOSED:
                status, answered = message["status"], True
            await send(message)

        try:
            await self.app(scope, watching_receive, watching_send)
        finally:
            route = scope.get("route")
            name = f"{scope['method']} {getattr(route, 'path', 'other')}"
            self.stats.record(name, status, time.perf_counter() - start)
