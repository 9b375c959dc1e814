"""Two ASGI middlewares of ``hashsdk serve``: the body size limit and per-route statistics.

``BodyLimit`` answers 413 to a body whose Content-Length is over the limit without passing it
on, and stops a body sent without one (chunked) as soon as it passes the limit: no request
makes the server hold more than the limit. The rest of a body up to the limit again is read
and dropped before the answer, because closing a connection with unread data makes the kernel
reset it, and the client would lose the 413 (as nginx's lingering close avoids).
"""

from __future__ import annotations

import json
import time

from hashsdk.serve.stats import Stats


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
            await self._drain(receive, 0)
            return await self._refuse(send)
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
                await self._drain(receive, seen)
                await self._refuse(send)

    async def _drain(self, receive, seen: int) -> None:
        """Reads and drops the body until it ends or twice the limit has come."""
        while seen <= 2 * self.max_bytes:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            seen += len(message.get("body", b""))

    async def _refuse(self, send):
        body = json.dumps({"detail": f"the request body is over the limit of "
                                     f"{self.max_bytes:,} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class RequestStats:
    """Records each HTTP request's route template, status and seconds in a ``Stats``."""

    def __init__(self, app, stats: Stats):
        self.app, self.stats = app, stats

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def watching_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            route = scope.get("route")
            name = f"{scope['method']} {getattr(route, 'path', 'other')}"
            self.stats.record(name, status, time.perf_counter() - start)
