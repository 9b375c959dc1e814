"""``hashsdk serve``: an image search service over a Hamming index (the ``serve`` extra).

    hashsdk serve db.hidx --model model.onnx [--host 127.0.0.1] [--port 8000]

or in Python, with any ASGI server::

    from hashsdk.serve import ServedIndex, create_app
    app = create_app(ServedIndex("db.hidx"), Encoder("model.onnx"))

``store`` keeps writes durable (journal, fold), ``app`` holds the routes, ``inputs`` checks
requests, ``batching`` merges waiting images into one model call, ``limits`` and ``stats``
are the middlewares and counters. FastAPI is imported only by ``app``.
"""

from hashsdk.serve.store import Conflict, ServedIndex

__all__ = ["Conflict", "ServedIndex", "create_app"]


def __getattr__(name: str):
    if name in ("create_app", "ServeConfig"):
        from hashsdk.serve import app

        return getattr(app, name)
    raise AttributeError(name)
