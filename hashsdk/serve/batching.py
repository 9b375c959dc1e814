"""Dynamic batching: the images of requests that wait for the model go through it together.

A model server's trick (Triton's dynamic batcher, TorchServe's batch_size): one model call on
n images costs less than n calls on one, so requests that arrive while every worker is busy
are merged into the next call. Nothing waits on purpose (no batching delay): a request that
finds a worker free runs at once, alone; under load the queue fills while the workers run, and
each free worker takes up to ``max_batch`` queued images. ``benchmarks/serve.py`` measures it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hashsdk.encoder import Encoder

MAX_BATCH = 64  # images in one model call, by default (hashsdk serve --max-batch)


class Batcher:
    """Runs ``encoder.encode`` on ``workers`` threads, merging waiting requests.

    Args:
        encoder: the model (its onnxruntime session is thread-safe).
        workers: model calls at once; the pool's threads.
        max_batch: most images in one call; 1 turns batching off (one request a call, or
            less where a request has more images than this).
    """

    def __init__(self, encoder: Encoder, workers: int, max_batch: int = MAX_BATCH):
        self.encoder, self.workers, self.max_batch = encoder, workers, max_batch
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hashsdk-encode")
        self._queue: deque[tuple[list[np.ndarray], asyncio.Future]] = deque()
        self._running = 0
        self.calls = 0
        self.images = 0

    async def encode(self, images: list[np.ndarray]) -> np.ndarray:
        """Packed codes, uint8 (len(images), code size), of decoded images (``load_uint8``)."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((images, future))
        self._start()
        return await future

    def _start(self) -> None:
        """Starts model calls on the queued requests while a worker is free (event loop only)."""
        loop = asyncio.get_running_loop()
        while self._queue and self._running < self.workers:
            taken = [self._queue.popleft()]
            size = len(taken[0][0])
            while self._queue and size + len(self._queue[0][0]) <= self.max_batch:
                taken.append(self._queue.popleft())
                size += len(taken[-1][0])
            images = [image for request, _ in taken for image in request]
            self._running += 1
            self.calls += 1
            self.images += len(images)
            call = loop.run_in_executor(self._pool, self._run, images)
            call.add_done_callback(lambda done, taken=taken: self._finish(done, taken))

    def _run(self, images: list[np.ndarray]) -> np.ndarray:
        return self.encoder.encode(images, batch_size=max(len(images), 1))

    def _finish(self, done: asyncio.Future, taken: list) -> None:
        self._running -= 1
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        start = 0
        for images, future in taken:
            if future.done():  # its request was cancelled (a timeout)
                pass
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result()[start:start + len(images)])
            start += len(images)
        self._start()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
