"""Errors as ``hashsdk serve`` answers them: a JSON ``{"detail": reason}`` with a 4xx status;
an unexpected one logged and answered 500 without its traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from hashsdk.errors import HashsdkError
from hashsdk.serve.inputs import BadRequest
from hashsdk.serve.store import Conflict

log = logging.getLogger("hashsdk.serve")


def install(app: FastAPI) -> None:
    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        return JSONResponse({"detail": str(exc)}, exc.status)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict):
        return JSONResponse({"detail": str(exc)}, 409)

    @app.exception_handler(HashsdkError)
    async def user_error(request: Request, exc: HashsdkError):
        return JSONResponse({"detail": str(exc)}, 400)

    @app.exception_handler(TimeoutError)
    async def timeout(request: Request, exc: TimeoutError):
        limit = app.state.config.limits.request_timeout_s
        return JSONResponse({"detail": f"the request took longer than {limit:g} s"}, 503)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect):
        # the client left mid-body: nobody reads an answer; counted as 499 (middleware.py)
        log.debug("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error (logged by the server)"}, 500)
