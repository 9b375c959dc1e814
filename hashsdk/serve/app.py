"""The ASGI app of ``hashsdk serve`` (FastAPI): search, add, remove, thumbnails, stats, a page.

    POST   /search                   images (multipart) or codes / ids (JSON); k or radius
    POST   /items                    add images (multipart) or codes (JSON), under ids or new
    GET    /items/{id}               its code (hex) and path
    DELETE /items/{id}
    GET    /items/{id}/thumbnail     JPEG, only for images the index holds
    GET    /healthz, /stats, /metrics (Prometheus text), /openapi.json, /docs, and / (the page)

Searches run on a thread pool and read the index's snapshots, so they never wait for a write;
writes are durable before they are answered (``store``). Images are decoded on the thread
pool and encoded through ``batching.Batcher``. The routes live in ``routes/``, one module a
resource; what they share in ``requests.py``; errors as answered in ``errors.py``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from hashsdk import __version__
from hashsdk.encoder import Encoder
from hashsdk.errors import HashsdkError
from hashsdk.serve import errors
from hashsdk.serve.batching import MAX_BATCH, Batcher
from hashsdk.serve.inputs import Limits
from hashsdk.serve.middleware import BodyLimit, HeaderLimit, RequestStats
from hashsdk.serve.routes import ROUTES
from hashsdk.serve.stats import Stats
from hashsdk.serve.store import ServedIndex


@dataclass
class ServeConfig:
    """How the app behaves. ``api_key``: needed for writes where set. ``max_batch``: images in
    one model call (1: no dynamic batching). ``encode_workers``: model calls at once."""
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    max_batch: int = MAX_BATCH
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
    app.add_middleware(HeaderLimit, max_headers=config.limits.max_headers,
                       max_header_bytes=config.limits.max_header_bytes)
    app.add_middleware(RequestStats, stats=stats)  # the last added runs first: counts them all
    errors.install(app)
    for module in ROUTES:
        module.add_routes(app)
    return app


