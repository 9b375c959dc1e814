"""The ASGI app of ``hashsdk serve`` (FastAPI): search, add, remove, thumbnails, stats, a page.

    POST   /search                   images (multipart) or codes / ids (JSON); k or radius
    POST   /items                    add images (multipart) or codes (JSON), under ids or new
    GET    /items/{id}               its code (hex) and path
    DELETE /items/{id}
    GET    /items/{id}/thumbnail     JPEG, only for images the index holds
    GET    /healthz, /stats, /metrics (Prometheus text), /openapi.json, /docs, and / (the page)

Searches run on a thread pool and read the index's snapshots, so they never wait for a write;
writes are durable before they are answered (``store``). Images are decoded on the thread
pool and encoded through ``batching.Batcher``. Every error is a JSON ``{"detail": reason}``
with a 4xx status; an unexpected one is logged and answered 500 without its traceback.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import io
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from hashsdk import __version__
from hashsdk.encoder import Encoder
from hashsdk.errors import HashsdkError
from hashsdk.preprocess import UnreadableImage, decode
from hashsdk.serve import inputs
from hashsdk.serve.batching import Batcher
from hashsdk.serve.inputs import BadRequest, Body, Limits
from hashsdk.serve.limits import BodyLimit, RequestStats
from hashsdk.serve.stats import Stats
from hashsdk.serve.store import Conflict, ServedIndex

log = logging.getLogger("hashsdk.serve")
THUMBNAIL = 160  # pixels, the longer side
# Work this small runs on the event loop, because handing it to a thread costs more than doing
# it (measured in benchmarks/serve.py): a search that scans at most INLINE_SCAN_BYTES of codes
# (1M 64-bit codes: 0.16 ms on one core here) and decoding uploads of at most
# INLINE_DECODE_BYTES in all. Anything larger goes to the thread pool, so that one request
# never holds the loop for long.
INLINE_SCAN_BYTES = 8 << 20
INLINE_DECODE_BYTES = 64 << 10
ItemId = Annotated[int, Path(ge=0, le=2**63 - 1, description="an id the index holds")]


@dataclass
class ServeConfig:
    """How the app behaves. ``api_key``: needed for writes where set. ``max_batch``: images in
    one model call (1: no dynamic batching). ``encode_workers``: model calls at once."""
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    max_batch: int = 64
    encode_workers: int = 2
    model_name: str | None = None


def create_app(served: ServedIndex, encoder: Encoder | None = None,
               config: ServeConfig | None = None) -> FastAPI:
    """The app over an opened index and (optionally) the model that encodes its images."""
    config = config or ServeConfig()
    if encoder is not None and encoder.bits != served.index.bits:
        raise HashsdkError(f"the model makes {encoder.bits}-bit codes, the index holds "
                           f"{served.index.bits}-bit codes")
    stats = Stats()
    batcher = Batcher(encoder, config.encode_workers, config.max_batch) if encoder else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if batcher is not None:
            batcher.close()
        await run_in_threadpool(served.close)

    app = FastAPI(title="hashsdk serve", version=__version__, lifespan=lifespan,
                  description="Image search by binary codes: search, add and remove images "
                              "or codes in a Hamming index.")
    app.state.served, app.state.encoder, app.state.config = served, encoder, config
    app.state.stats, app.state.batcher = stats, batcher
    app.add_middleware(BodyLimit, max_bytes=config.limits.max_upload_bytes)
    app.add_middleware(RequestStats, stats=stats)
    _error_handlers(app)
    _routes(app)
    return app


# ---- errors --------------------------------------------------------------------------------

def _error_handlers(app: FastAPI) -> None:
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

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error (logged by the server)"}, 500)


def _timed(handler):
    """Runs a handler under the request time limit (answered 503 past it); asyncio.timeout
    where there is one (3.11), which unlike wait_for starts no task a request."""
    @functools.wraps(handler)
    async def wrapper(request: Request, *args, **kwargs):
        limit = request.app.state.config.limits.request_timeout_s
        if hasattr(asyncio, "timeout"):
            async with asyncio.timeout(limit):
                return await handler(request, *args, **kwargs)
        return await asyncio.wait_for(handler(request, *args, **kwargs), limit)
    return wrapper


def _check_key(request: Request) -> None:
    key = request.app.state.config.api_key
    if key is None:
        return
    given = request.headers.get("x-api-key") or ""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:]
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise BadRequest("writes need the API key (X-API-Key header, or Authorization: "
                         "Bearer KEY)", 401)


# ---- bodies --------------------------------------------------------------------------------

async def _body(request: Request) -> Body:
    limits: Limits = request.app.state.config.limits
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = await request.json()
        except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
            raise BadRequest("the body is not valid JSON") from None
        return inputs.from_json(data)
    if kind == "multipart/form-data":
        form = await request.form(max_files=limits.max_images, max_fields=100)
        images, fields = [], {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != "image":
                    raise BadRequest(f"upload field {name!r}: expected 'image'")
                images.append(inputs.Upload(value.filename or "upload", await value.read()))
            else:
                fields.setdefault(name, []).append(value)
        await form.close()
        return inputs.from_form(images, fields)
    raise BadRequest(f"content type {kind or 'none'!r}: expected multipart/form-data (images) "
                     f"or application/json (codes)", 415)


async def _encode_uploads(request: Request, uploads: list[inputs.Upload]
                          ) -> tuple[np.ndarray, list[str]]:
    """Packed codes of uploaded images and each one's file extension; 400 naming a bad one."""
    encoder, batcher = request.app.state.encoder, request.app.state.batcher
    limits = request.app.state.config.limits
    if encoder is None:
        raise BadRequest("this server has no model (start it with --model): send codes")
    if len(uploads) > limits.max_images:
        raise BadRequest(f"at most {limits.max_images} images a request, got {len(uploads)}")
    decoded = await _maybe_inline(
        sum(len(u.data) for u in uploads) <= INLINE_DECODE_BYTES,
        lambda: [inputs.decode_image(u, encoder.metadata, limits) for u in uploads])
    codes = await batcher.encode([array for array, _ in decoded])
    return codes, [ext for _, ext in decoded]


def _queries(body: Body, served: ServedIndex, limits: Limits) -> tuple[np.ndarray, list]:
    """Codes and names of the code and id queries of a JSON body."""
    codes = inputs.parse_codes(body.codes, body.code_encoding, served.index.bits, limits)
    names: list = list(body.codes)
    ids = inputs.check_ids(body.ids, None, limits)
    if ids is not None and len(ids):
        found, found_codes = served.index.lookup(ids)
        missing = sorted(set(ids.tolist()) - set(found.tolist()))
        if missing:
            raise BadRequest(f"ids not in the index: {missing[:10]}", 404)
        order = np.searchsorted(found, ids)
        codes = np.concatenate([codes, found_codes[order]])
        names += [{"id": int(i)} for i in ids]
    return codes, names


# ---- routes --------------------------------------------------------------------------------

SEARCH_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "k": {"type": "integer", "default": 10}, "radius": {"type": "integer"}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "codes": {"type": "array", "items": {"type": "string"}},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "k": {"type": "integer", "default": 10}, "radius": {"type": "integer"},
        "code_encoding": {"type": "string", "enum": list(inputs.CODE_ENCODINGS)}}}}}}}
ITEMS_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "ids": {"type": "string", "description": "comma-separated ids, one per image"}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "codes": {"type": "array", "items": {"type": "string"}},
        "ids": {"type": "array", "items": {"type": "integer"}},
        "code_encoding": {"type": "string", "enum": list(inputs.CODE_ENCODINGS)}}}}}}}


def _routes(app: FastAPI) -> None:
    served: ServedIndex = app.state.served
    config: ServeConfig = app.state.config

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return (resources.files("hashsdk.serve") / "static" / "index.html").read_text("utf-8")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "size": served.index.ntotal}

    @app.get("/stats")
    async def stats(request: Request, format: str = "json"):
        if format == "prometheus":
            return PlainTextResponse(_prometheus(app), media_type="text/plain; version=0.0.4")
        return _stats(app)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        return PlainTextResponse(_prometheus(app), media_type="text/plain; version=0.0.4")

    @app.post("/search", openapi_extra=SEARCH_BODY)
    @_timed
    async def search(request: Request):
        """The k nearest (or every code within radius) of each image, code or item id."""
        body = await _body(request)
        limits = config.limits
        if body.ids is not None and body.images:
            raise BadRequest("search by images or by ids, not both in one request")
        if body.images:
            codes, _ = await _encode_uploads(request, body.images)
            names = [os.path.basename(u.name) for u in body.images]
        else:
            codes, names = _queries(body, served, limits)
        if not len(codes):
            raise BadRequest("nothing to search: send images, codes or ids")
        inline = len(codes) * served.index.ntotal * served.index.code_size <= INLINE_SCAN_BYTES
        if body.radius is not None:
            radius = inputs.check_radius(body.radius, served.index.bits)
            return JSONResponse({"results": await _maybe_inline(
                inline, _range, served, codes, names, radius, limits.max_range_results)})
        k = inputs.check_k(body.k, limits)
        dist, ids = await _maybe_inline(
            inline, functools.partial(served.index.search, threads=1 if inline else None),
            codes, k)
        # a JSONResponse skips FastAPI's jsonable_encoder, a third of a small search's time
        return JSONResponse({"results": [{"query": name, "results": _hits(served, d, i)}
                                         for name, d, i in zip(names, dist, ids, strict=True)]})

    @app.post("/items", openapi_extra=ITEMS_BODY)
    @_timed
    async def add_items(request: Request):
        """Adds images or codes under the given ids, or new ones; durable when answered."""
        _check_key(request)
        body = await _body(request)
        if body.k is not None or body.radius is not None:
            raise BadRequest("k and radius are for /search")
        if body.images:
            return {"ids": await _add_images(request, body)}
        codes = inputs.parse_codes(body.codes, body.code_encoding, served.index.bits,
                                   config.limits)
        if not len(codes):
            raise BadRequest("nothing to add: send images (multipart) or codes (JSON)")
        ids = inputs.check_ids(body.ids, len(codes), config.limits)
        ids = await run_in_threadpool(served.add, codes, ids)  # None: new ids, under its lock
        return {"ids": ids.tolist()}

    @app.get("/items/{item_id}")
    async def get_item(item_id: ItemId):
        found, codes = served.index.lookup(np.array([item_id]))
        if not len(found):
            raise HTTPException(404, f"no item {item_id}")
        return {"id": item_id, "code": inputs.code_text(codes[0]),
                "path": served.paths.get(item_id)}

    @app.delete("/items/{item_id}")
    async def delete_item(request: Request, item_id: ItemId):
        _check_key(request)
        path = served.paths.get(item_id)
        if not await run_in_threadpool(served.remove, [item_id]):
            raise HTTPException(404, f"no item {item_id}")
        served.drop_upload(path)
        return {"removed": item_id}

    @app.get("/items/{item_id}/thumbnail", responses={200: {"content": {"image/jpeg": {}}}})
    async def thumbnail(item_id: ItemId):
        path = served.paths.get(item_id)  # only paths the index holds; never the request's
        if path is None:
            raise HTTPException(404, f"no image for item {item_id}")
        data = await run_in_threadpool(_thumbnail, path, config.limits.max_pixels)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=60"})


async def _maybe_inline(inline: bool, fn, *args):
    """``fn(*args)`` on the event loop where ``inline``, else on the thread pool."""
    return fn(*args) if inline else await run_in_threadpool(fn, *args)


async def _add_images(request: Request, body: Body) -> list[int]:
    served: ServedIndex = request.app.state.served
    limits = request.app.state.config.limits
    ids = inputs.check_ids(body.ids, len(body.images), limits)
    if ids is not None:
        served.check_new(ids)  # before the model runs; add checks again under its lock
    codes, exts = await _encode_uploads(request, body.images)

    def store() -> np.ndarray:
        paths: list[str | None] = []
        try:
            for upload, ext in zip(body.images, exts, strict=True):
                paths.append(served.save_upload(upload.data, ext))
            return served.add(codes, ids, paths)  # ids None: new ones, under its lock
        except BaseException:
            for path in paths:
                served.drop_upload(path)
            raise

    return (await run_in_threadpool(store)).tolist()


def _hits(served: ServedIndex, dist: np.ndarray, ids: np.ndarray) -> list[dict]:
    return [{"id": int(i), "distance": int(d), "path": served.paths.get(int(i))}
            for d, i in zip(dist, ids, strict=True) if i >= 0]


def _range(served: ServedIndex, codes: np.ndarray, names: list, radius: int,
           cap: int) -> list[dict]:
    lims, dist, ids = served.index.range_search(codes, radius, threads=1)
    out = []
    for q, name in enumerate(names):
        lo, hi = int(lims[q]), int(lims[q + 1])
        out.append({"query": name, "results": _hits(served, dist[lo:min(hi, lo + cap)],
                                                     ids[lo:min(hi, lo + cap)]),
                    "truncated": hi - lo > cap})
    return out


def _thumbnail(path: str, max_pixels: int) -> bytes:
    try:
        image = decode(path, "RGB", resize_to=THUMBNAIL, max_pixels=max_pixels)
    except UnreadableImage as exc:
        raise HTTPException(404, f"the item's image is unreadable ({exc.reason})") from None
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def _stats(app: FastAPI) -> dict:
    served: ServedIndex = app.state.served
    encoder: Encoder | None = app.state.encoder
    batcher: Batcher | None = app.state.batcher
    return {
        "size": served.index.ntotal, "bits": served.index.bits,
        "index": {"path": served.path, "kind": served.kind,
                  "journal_records": served.journal_records},
        "model": None if encoder is None else {
            "path": app.state.config.model_name or encoder.path,
            "providers": encoder.providers, "input_size": encoder.input_size},
        "batching": None if batcher is None else {
            "max_batch": batcher.max_batch, "workers": batcher.workers,
            "model_calls": batcher.calls, "images": batcher.images,
            "mean_batch": round(batcher.images / batcher.calls, 2) if batcher.calls else None},
        "uptime_s": round(time.time() - app.state.stats.started, 1),
        "routes": app.state.stats.routes(),
    }


def _prometheus(app: FastAPI) -> str:
    served: ServedIndex = app.state.served
    batcher: Batcher | None = app.state.batcher
    gauges = {"index_size": served.index.ntotal, "index_bits": served.index.bits,
              "journal_records": served.journal_records}
    if batcher is not None:
        gauges.update(model_calls=batcher.calls, model_images=batcher.images)
    return app.state.stats.prometheus(gauges)
