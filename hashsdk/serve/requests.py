"""What every route of ``hashsdk serve`` shares: reading a body (JSON codes or multipart
images), encoding uploads through the batcher, the request time limit, the API key, and where
small work runs (on the event loop) and large work (on the thread pool)."""

from __future__ import annotations

import asyncio
import functools
import hmac

import numpy as np
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from hashsdk.serve import inputs
from hashsdk.serve.inputs import BadRequest, Body, Limits
from hashsdk.serve.store import ServedIndex

# Work this small runs on the event loop, because handing it to a thread costs more than doing
# it (measured in benchmarks/serve.py): a search that scans at most INLINE_SCAN_BYTES of codes
# (1M 64-bit codes: 0.16 ms on one core here) and decoding uploads of at most
# INLINE_DECODE_BYTES in all. Anything larger goes to the thread pool, so that one request
# never holds the loop for long.
INLINE_SCAN_BYTES = 8 << 20
INLINE_DECODE_BYTES = 64 << 10
IDS = {"type": "array", "items": {"type": "integer"}}


def openapi_body(form: dict, json: dict) -> dict:
    """The OpenAPI request body of a route that takes images (multipart, field ``image``) or
    codes (JSON, ``codes`` and ``code_encoding``), with each form's own fields added."""
    images = {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}}
    codes = {"codes": {"type": "array", "items": {"type": "string"}},
             "code_encoding": {"type": "string", "enum": list(inputs.CODE_ENCODINGS)}}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": images | form}},
        "application/json": {"schema": {"type": "object", "properties": codes | json}}}}}


def timed(handler):
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


def check_key(request: Request) -> None:
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


async def read_body(request: Request) -> Body:
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
                    raise BadRequest(f"upload field {inputs.quote(name)}: expected 'image'")
                images.append(inputs.Upload(value.filename or "upload", await value.read()))
            else:
                fields.setdefault(name, []).append(value)
        await form.close()
        return inputs.from_form(images, fields)
    if kind.startswith("image/"):  # one image as the raw body; k, radius, ids in the query
        fields: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            fields.setdefault(name, []).append(value)
        return inputs.from_form([inputs.Upload("upload", await request.body())], fields)
    raise BadRequest(f"content type {inputs.quote(kind or 'none')}: expected image/* (one "
                     "image as the body), multipart/form-data (images) or application/json "
                     "(codes)", 415)


async def encode_uploads(request: Request, uploads: list[inputs.Upload]
                          ) -> tuple[np.ndarray, list[str]]:
    """Packed codes of uploaded images and each one's file extension; 400 naming a bad one."""
    encoder, batcher = request.app.state.encoder, request.app.state.batcher
    limits = request.app.state.config.limits
    if encoder is None:
        raise BadRequest("this server has no model (start it with --model): send codes")
    if len(uploads) > limits.max_images:
        raise BadRequest(f"at most {limits.max_images} images a request, got {len(uploads)}")
    decoded = await maybe_inline(
        sum(len(u.data) for u in uploads) <= INLINE_DECODE_BYTES,
        lambda: [inputs.decode_image(u, encoder.metadata, limits) for u in uploads])
    codes = await batcher.encode([array for array, _ in decoded])
    return codes, [ext for _, ext in decoded]


def queries(body: Body, served: ServedIndex, limits: Limits) -> tuple[np.ndarray, list]:
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


async def maybe_inline(inline: bool, fn, *args):
    """``fn(*args)`` on the event loop where ``inline``, else on the thread pool."""
    return fn(*args) if inline else await run_in_threadpool(fn, *args)
