"""The page and the server's state: GET / (the page), /healthz, /stats (JSON, or Prometheus
text with ?format=prometheus) and /metrics (Prometheus text)."""

from __future__ import annotations

import time
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from hashsdk.encoder import Encoder
from hashsdk.serve.batching import Batcher
from hashsdk.serve.store import ServedIndex


def add_routes(app: FastAPI) -> None:
    served: ServedIndex = app.state.served

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
