"""POST /search: the k nearest codes (or every code within a radius) of each uploaded image,
code or item id; at most ``Limits.max_results`` results in all (hashsdk.serve.inputs). One
image may also come as the raw body (``Content-Type: image/jpeg``, k or radius in the query
string)."""

from __future__ import annotations

import functools
import os

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hashsdk.serve import inputs
from hashsdk.serve.inputs import BadRequest
from hashsdk.serve.requests import (
    IDS,
    INLINE_SCAN_BYTES,
    encode_uploads,
    maybe_inline,
    openapi_body,
    queries,
    read_body,
    timed,
)
from hashsdk.serve.store import ServedIndex

_K = {"k": {"type": "integer", "default": 10}, "radius": {"type": "integer"}}
SEARCH_BODY = openapi_body(_K, {"ids": IDS, **_K})
SEARCH_BODY["requestBody"]["content"]["image/*"] = {"schema": {"type": "string",
                                                                "format": "binary"}}
SEARCH_BODY["parameters"] = [{"name": name, "in": "query", "required": False,
                              "schema": {"type": "integer"},
                              "description": "with an image/* body"} for name in _K]


def add_routes(app: FastAPI) -> None:
    served: ServedIndex = app.state.served
    config = app.state.config

    @app.post("/search", openapi_extra=SEARCH_BODY)
    @timed
    async def search(request: Request):
        """The k nearest (or every code within radius) of each image, code or item id."""
        body = await read_body(request)
        limits = config.limits
        if body.ids is not None and body.images:
            raise BadRequest("search by images or by ids, not both in one request")
        if body.images:
            codes, _ = await encode_uploads(request, body.images)
            names = [os.path.basename(u.name) for u in body.images]
        else:
            codes, names = queries(body, served, limits)
        if not len(codes):
            raise BadRequest("nothing to search: send images, codes or ids")
        inline = len(codes) * served.index.ntotal * served.index.code_size <= INLINE_SCAN_BYTES
        if body.radius is not None:
            radius = inputs.check_radius(body.radius, served.index.bits)
            return JSONResponse({"results": await maybe_inline(
                inline, _range, served, codes, names, radius, limits.max_results)})
        k = inputs.check_k(body.k, limits)
        if len(codes) * k > limits.max_results:
            raise BadRequest(f"{len(codes)} queries x k = {k} asks for {len(codes) * k:,} "
                             f"results; a search returns at most {limits.max_results:,}: send "
                             "fewer queries or a smaller k")
        dist, ids = await maybe_inline(
            inline, functools.partial(served.index.search, threads=1 if inline else None),
            codes, k)
        # a JSONResponse skips FastAPI's jsonable_encoder, a third of a small search's time
        return JSONResponse({"results": [{"query": name, "results": _hits(served, d, i)}
                                         for name, d, i in zip(names, dist, ids, strict=True)]})


def _hits(served: ServedIndex, dist: np.ndarray, ids: np.ndarray) -> list[dict]:
    return [{"id": int(i), "distance": int(d), "path": served.paths.get(int(i))}
            for d, i in zip(dist, ids, strict=True) if i >= 0]


def _range(served: ServedIndex, codes: np.ndarray, names: list, radius: int,
           cap: int) -> list[dict]:
    """Each query's codes within ``radius``, nearest first, ``cap`` results in all: the
    queries in order take what is left of it; a query cut short is marked truncated."""
    lims, dist, ids = served.index.range_search(codes, radius, threads=1)
    out = []
    for q, name in enumerate(names):
        lo, hi = int(lims[q]), int(lims[q + 1])
        end = min(hi, lo + cap)
        cap -= end - lo
        out.append({"query": name, "results": _hits(served, dist[lo:end], ids[lo:end]),
                    "truncated": hi > end})
    return out
