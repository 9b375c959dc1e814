"""The items of the index: POST /items (images or codes, durable when answered), GET and
DELETE /items/{id}, and GET /items/{id}/thumbnail (only images the index holds)."""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from hashsdk.encoder.preprocess import UnreadableImage, decode
from hashsdk.index.kinds import MAX_ID
from hashsdk.serve import inputs
from hashsdk.serve.inputs import BadRequest, Body
from hashsdk.serve.requests import (
    IDS,
    check_key,
    encode_uploads,
    openapi_body,
    read_body,
    timed,
)
from hashsdk.serve.store import ServedIndex

THUMBNAIL = 160  # pixels, the longer side
ItemId = Annotated[int, Path(ge=0, le=MAX_ID, description="an id the index holds")]

ITEMS_BODY = openapi_body(
    {"ids": {"type": "string", "description": "comma-separated ids, one per image"}},
    {"ids": IDS})


def add_routes(app: FastAPI) -> None:
    served: ServedIndex = app.state.served
    config = app.state.config

    @app.post("/items", openapi_extra=ITEMS_BODY)
    @timed
    async def add_items(request: Request):
        """Adds images or codes under the given ids, or new ones; durable when answered."""
        check_key(request)
        body = await read_body(request)
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
        check_key(request)
        path = served.paths.get(item_id)
        if not await run_in_threadpool(served.remove, [item_id]):
            raise HTTPException(404, f"no item {item_id}")
        served.drop_upload(path)
        return {"removed": item_id}

    @app.get("/items/{item_id}/thumbnail", responses={200: {"content": {"image/jpeg": {}}}})
    async def thumbnail(item_id: ItemId):
        path = served.image_file(item_id)  # only paths the index holds; never the request's
        if path is None:
            raise HTTPException(404, f"no image for item {item_id}")
        data = await run_in_threadpool(_thumbnail, path, config.limits.max_pixels)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=60"})


async def _add_images(request: Request, body: Body) -> list[int]:
    served: ServedIndex = request.app.state.served
    limits = request.app.state.config.limits
    ids = inputs.check_ids(body.ids, len(body.images), limits)
    if ids is not None:
        served.check_new(ids)  # before the model runs; add checks again under its lock
    codes, exts = await encode_uploads(request, body.images)

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


def _thumbnail(path: str, max_pixels: int) -> bytes:
    try:
        image = decode(path, "RGB", resize_to=THUMBNAIL, max_pixels=max_pixels)
    except UnreadableImage as exc:
        raise HTTPException(404, f"the item's image is unreadable ({exc.reason})") from None
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()
