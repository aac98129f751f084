"""Dynamic batching across concurrent requests.

Every admitted image joins one queue. A single batcher task cuts batches: it takes the
oldest image, then whatever else arrives within `max_delay_s` of it, up to `max_batch`,
and runs the batch in one dedicated inference thread, so the event loop never waits on
the model. While a batch runs, the next one gathers; under load batches fill up without
waiting. Admission is bounded: `admit(n)` refuses (QueueFull) once `max_queue` images
are admitted and not yet answered, which the service turns into 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


def inference_thread() -> ThreadPoolExecutor:
    """The one thread that runs the model. Open the Detector on it too (`.submit(Detector.open,
    ...)`): a CUDA context pushed by pycuda is current only on the thread that pushed it."""
    return ThreadPoolExecutor(1, thread_name_prefix="fakedet-infer")


class QueueFull(Exception):
    pass


@dataclass
class Scored:
    """What one queued image gets back: the batch's result for it and the stage times."""

    result: object  # what run_batch returned for this image
    queue_s: float
    infer_s: float
    batch_size: int


@dataclass
class _Item:
    tensor: np.ndarray
    caption: object  # its token ids (or None), travelling with the image into whichever batch takes it
    future: asyncio.Future
    enqueued: float


ABANDON_CHECK_S = 0.05
_FLUSH = object()  # queued on drain: stop waiting for fuller batches


class Batcher:
    """`run_batch(list of tensors, captions=list of captions) -> list of per-image
    results` is called in the inference thread (captions[i] belongs to tensors[i], None
    where an image came without one); `on_batch(size, infer_s)` (optional) after each batch."""

    def __init__(self, run_batch, max_batch: int, max_delay_s: float, max_queue: int, on_batch=None,
                 executor: ThreadPoolExecutor | None = None, on_abandoned=None):
        self.run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self.max_delay_s = max(0.0, float(max_delay_s))
        self.max_queue = max(1, int(max_queue))
        self.on_batch = on_batch
        self.on_abandoned = on_abandoned  # called once when every image of the running batch is cancelled
        self.pending = 0  # admitted, not yet released
        self.executor = executor or inference_thread()
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    # ---- admission ---------------------------------------------------------
    def admit(self, n: int) -> None:
        if self.pending + n > self.max_queue:
            raise QueueFull(f"{self.pending} image(s) queued, {n} more would exceed --max-queue {self.max_queue}")
        self.pending += n

    def release(self, n: int) -> None:
        self.pending = max(0, self.pending - n)

    # ---- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = self._loop.create_task(self._run(), name="fakedet-batcher")

    def drain(self) -> None:
        """From any thread (a signal handler too): dispatch what is queued without waiting."""
        self._draining = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, _FLUSH)

    async def stop(self) -> None:
        """Stop cutting batches (the inference thread stays, for the caller to close the model on)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    # ---- work ----------------------------------------------------------------
    async def infer(self, tensor: np.ndarray, caption: str | None = None) -> Scored:
        """Queue one preprocessed tensor (and its caption); resolves when its batch has run."""
        fut = self._loop.create_future()
        self._queue.put_nowait(_Item(tensor, caption, fut, time.perf_counter()))
        return await fut

    async def _next(self, timeout: float | None):
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait()
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _collect(self) -> list[_Item]:
        batch: list[_Item] = []
        first = None
        while first is None or first is _FLUSH:
            first = await self._next(None)
        batch.append(first)
        deadline = first.enqueued + self.max_delay_s
        while len(batch) < self.max_batch:
            wait = 0.0 if self._draining else deadline - time.perf_counter()
            try:
                item = self._queue.get_nowait() if wait <= 0 else await self._next(wait)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if item is _FLUSH:
                continue
            batch.append(item)
        return [it for it in batch if not it.future.done()]  # a timed-out request's items are dropped

    async def _until_done_or_abandoned(self, running: asyncio.Future, batch: list[_Item]):
        """The batch's results; if all its requests time out meanwhile, `on_abandoned` is
        called (the service stops the model run) and the results are what the run returns."""
        abandoned = False
        while True:
            done, _ = await asyncio.wait({running}, timeout=ABANDON_CHECK_S)
            if done:
                return running.result()
            if not abandoned and self.on_abandoned and all(it.future.done() for it in batch):
                abandoned = True
                self.on_abandoned()

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            if batch:
                await self._dispatch(batch)
            del batch  # its tensors (a 4000x4000 image: 192 MB) must not wait for the next request

    async def _dispatch(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            run = functools.partial(self.run_batch, [it.tensor for it in batch],
                                    captions=[it.caption for it in batch])
            results = await self._until_done_or_abandoned(loop.run_in_executor(self.executor, run), batch)
        except Exception as e:  # run_batch reports per-image failures itself; this is a last resort
            results = [e] * len(batch)
        infer_s = time.perf_counter() - started
        if self.on_batch:
            self.on_batch(len(batch), infer_s)
        for it, res in zip(batch, results):
            if not it.future.done():
                it.future.set_result(Scored(res, started - it.enqueued, infer_s, len(batch)))
