"""The ``hashsdk serve`` command (FastAPI and uvicorn are imported when it runs)."""

from __future__ import annotations

import faulthandler
import ipaddress
import logging
import os

import click

from hashsdk._cli_errors import user_errors
from hashsdk.errors import HashsdkError
from hashsdk.index import INDEX_KINDS, kinds_help
from hashsdk.serve.batching import MAX_BATCH
from hashsdk.serve.inputs import Limits
from hashsdk.serve.store import DEFAULT_FOLD_EVERY

_DEFAULTS = Limits()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.argument("index_path", type=click.Path(dir_okay=False))
@click.option("--model", type=click.Path(dir_okay=False, exists=True), default=None,
              help="The .onnx / .engine model that encodes uploaded images (without it: codes "
                   "only).")
@click.option("--create", is_flag=True,
              help="Start an empty index at INDEX_PATH if it is missing (its code length from "
                   "--model, or --bits).")
@click.option("--bits", type=int, default=None,
              help="Code length of a new index (implies --create) when there is no model.")
@click.option("--host", default="127.0.0.1", help="Address to bind; any other than loopback "
                                                   "needs --api-key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000)
@click.option("--api-key", envvar="HASHSDK_API_KEY", default=None, show_default=False,
              help="Key that writes must send (X-API-Key); also $HASHSDK_API_KEY.")
@click.option("--kind", type=click.Choice(sorted(INDEX_KINDS)), default="flat",
              help=kinds_help())
@click.option("--max-upload-mb", type=click.FloatRange(min=0.001),
              default=_DEFAULTS.max_upload_bytes / 2**20, help="Largest request body (413).")
@click.option("--max-k", type=click.IntRange(min=1), default=_DEFAULTS.max_k)
@click.option("--max-images", type=click.IntRange(min=1), default=_DEFAULTS.max_images,
              help="Images a request may carry.")
@click.option("--timeout", type=click.FloatRange(min=0.001),
              default=_DEFAULTS.request_timeout_s, help="Seconds a request may take (503).")
@click.option("--max-batch", type=click.IntRange(min=1), default=MAX_BATCH,
              help="Images in one model call; 1 turns dynamic batching off.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Model calls at once.  [default: every core]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Search threads.  [default: every core]")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
@click.option("--fold-every", type=click.IntRange(min=1), default=DEFAULT_FOLD_EVERY,
              help="Journal records between folds into INDEX_PATH.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info")
@user_errors(extra="serve")
def serve(index_path: str, model: str | None, create: bool, bits: int | None, host: str,
          port: int,
          api_key: str | None, kind: str, max_upload_mb: float, max_k: int, max_images: int,
          timeout: float, max_batch: int, workers: int | None, threads: int | None,
          device: str, fold_every: int, log_level: str) -> None:
    """Serve INDEX_PATH over HTTP: search by image or code, add and remove items, and a web
    page at /. Every acknowledged add or remove survives a crash (a journal beside the index,
    folded into it now and then). A missing INDEX_PATH is an error unless --create (or --bits)
    asks for a new, empty index."""
    import uvicorn

    from hashsdk._args import default_threads
    from hashsdk.encoder import Encoder
    from hashsdk.serve.app import ServeConfig, create_app
    from hashsdk.serve.store import ServedIndex

    if not os.path.exists(index_path) and not create and bits is None:
        raise HashsdkError(f"{index_path}: no such index. To start an empty one there, add "
                           "--create (its code length from --model) or --bits N")
    if create and model is None and bits is None and not os.path.exists(index_path):
        raise HashsdkError("--create: give --model (its code length) or --bits N")
    if not is_loopback(host) and not api_key:
        raise HashsdkError(f"--host {host} lets other machines write to the index: give "
                           f"--api-key (or $HASHSDK_API_KEY), or bind to 127.0.0.1")
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(message)s")
    faulthandler.enable()  # a crash in native code leaves every thread's stack in the log
    workers = workers or default_threads()
    encoder = None
    if model is not None:
        encoder = Encoder(model, device=None if device == "auto" else device,
                          threads=max(1, default_threads() // workers), decode_threads=0)
        bits = encoder.bits
    served = ServedIndex(index_path, bits=bits, kind=kind, threads=threads,
                         fold_every=fold_every)
    limits = Limits(max_upload_bytes=int(max_upload_mb * 2**20), max_images=max_images,
                    max_k=max_k, request_timeout_s=timeout)
    config = ServeConfig(limits=limits, api_key=api_key, max_batch=max_batch,
                         encode_workers=workers, model_name=model)
    app = create_app(served, encoder, config)
    missing = served.missing_images()
    if missing:
        click.echo(f"warning: {missing:,} of the index's {len(served.paths):,} image files are "
                   f"not found (their thumbnails will answer 404); paths are read relative to "
                   f"{os.path.dirname(os.path.abspath(index_path))}", err=True)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving {index_path} ({served.index.ntotal:,} codes of {served.index.bits} "
               f"bits, {served.replayed} journal records replayed) at http://{shown}:{port}/",
               err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
