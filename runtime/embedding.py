"""The embedding API: what an application needs to host a Detector in its own process.

`Detector` inherits these methods (see EmbeddingAPI's docstring for the guarantees):

    with Detector.open("model.fdet") as det:        # open once, at start-up
        det.warmup()                                # first calls pay no lazy set-up
        det.predict_frames(frames, channels="BGR")  # OpenCV frames (uint8 HxWx3)
        det.predict([jpeg_bytes, "a.png"])          # encoded bytes or paths, any thread
        await det.apredict([jpeg_bytes])           # from async code: the loop never blocks
"""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import Executor

import numpy as np

CHANNEL_ORDERS = ("RGB", "BGR")


class SerializedBackend:
    """A backend whose inference calls run one at a time (a lock per backend).

    Some engines may not be entered from two threads at once (a TensorRT execution
    context, a CUDA stream); ONNX Runtime may, but its intra-op pool already uses the
    cores, so concurrent calls would only contend. Everything else is forwarded."""

    def __init__(self, backend):
        self._backend = backend
        self._lock = threading.RLock()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._backend.infer(batch)

    def infer_timed(self, batch: np.ndarray):
        with self._lock:
            return self._backend.infer_timed(batch)

    def close(self) -> None:
        with self._lock:
            self._backend.close()

    @property
    def unwrapped(self):
        return self._backend

    def __getattr__(self, name):
        return getattr(self._backend, name)


def serialized(backend):
    return backend if isinstance(backend, SerializedBackend) else SerializedBackend(backend)


def frames_to_rgb(frames, channels: str) -> list:
    """uint8 HxWx3 frames in `channels` order -> RGB views (no copy for RGB)."""
    order = str(channels).upper()
    if order not in CHANNEL_ORDERS:
        raise ValueError(f"channels must be 'RGB' or 'BGR' (OpenCV's order), got {channels!r}")
    out = []
    for f in frames:
        if order == "BGR" and isinstance(f, np.ndarray) and f.ndim == 3 and f.shape[2] >= 3:
            f = f[..., 2::-1]
        out.append(f)
    return out


class EmbeddingAPI:
    """Methods for hosting a Detector inside an application.

    Thread safety: one Detector may be shared by any number of threads. `predict`,
    `predict_frames` and `apredict` may be called concurrently from any thread or event
    loop; each call decodes and preprocesses its own images in the calling thread (in
    parallel with other calls), and the backend's inference calls are serialized by a
    lock held per Detector, so results are exactly those of the same calls made one
    after another. `warmup` may run concurrently with them too. `close` must come after
    every call has returned (as with a file). This holds for ONNX Runtime (tested). GPU
    note: the CUDA device (cuda-python) or context (pycuda) is made current per thread by
    the TensorRT backend when it opens; from other threads this holds only on GPU 0 with
    cuda-python. Where that matters, run inference on the thread that opened the Detector,
    as `fakedet serve` does (it opens, runs and closes the model on one inference thread).

    Arrays: `predict` reads numpy arrays as RGB (uint8 HxWx3, or HxW grey);
    `predict_frames(frames, channels=...)` makes you state the order: "BGR" for frames
    from OpenCV (cv2.VideoCapture, cv2.imread), "RGB" for Pillow, imageio, PyAV.
    """

    def predict_frames(self, frames, channels: str, batch_size: int | None = None, captions=None):
        """Score uint8 HxWx3 frames; `channels` is "BGR" (OpenCV) or "RGB" (required:
        the wrong order silently changes scores, so it is never guessed)."""
        return self.predict(frames_to_rgb(frames, channels), batch_size=batch_size, captions=captions)

    async def apredict(self, items, batch_size: int | None = None, executor: Executor | None = None, captions=None):
        """`predict` for async code: runs in `executor` (default: the loop's default
        thread pool) so the event loop keeps serving while images decode and infer."""
        import asyncio  # only async hosts pay for it

        loop = asyncio.get_running_loop()
        call = functools.partial(self.predict, list(items), batch_size, captions=captions)
        return await loop.run_in_executor(executor, call)

    async def apredict_frames(self, frames, channels: str, batch_size: int | None = None,
                              executor: Executor | None = None):
        """`predict_frames` for async code (see apredict)."""
        return await self.apredict(frames_to_rgb(frames, channels), batch_size, executor)

    def warmup(self, batch_sizes=(1,), rounds: int = 1) -> float:
        """Run `rounds` inference calls per batch size on a zero tensor of the model's
        input shape, so lazy allocations and kernel selection happen now rather than on
        the first real request. Returns the seconds it took."""
        from .bench.inputs import sample_shape

        shape, _ = sample_shape(self.manifest)
        fixed = self.backend.input_spec.fixed_batch()
        sizes = [fixed] if fixed else sorted({max(1, int(b)) for b in batch_sizes})
        t0 = time.perf_counter()
        for b in sizes:
            x = np.zeros((b,) + tuple(shape), dtype=np.float32)
            if self.captions is not None:  # a caption-aware model: an empty caption beside each image
                x = self.captions.feed(self.manifest.input.name, x, [""] * b)
            for _ in range(max(1, rounds)):
                self.backend.infer(x)
        return time.perf_counter() - t0

    # ---- pieces for hosts that batch across callers (fakedet serve) ----------
    def prepare(self, item, deadline: float | None = None, cancelled=None) -> np.ndarray:
        """Decode + preprocess one image (path, bytes, RGB array, PIL image) to the model's
        input tensor. Raises fakedet.errors.ImageError for a bad image, or one whose decode
        outlives the budget, `deadline` (time.monotonic()) or `cancelled` (threading.Event)."""
        return self._prepare(item, deadline, cancelled)

    def predict_prepared(self, tensors: list, names: list | None = None, captions=None) -> list:
        """Score already prepared tensors (from `prepare`) in as few inference calls as
        their shapes allow; one Prediction per tensor, a failing batch costs only its rows.
        `captions` as for `predict` (a caption-aware model: an item without one fails)."""
        from .detector import Prediction

        names = names or [f"<tensor:{i}>" for i in range(len(tensors))]
        preds = [Prediction(source=n) for n in names]
        ready = dict(enumerate(tensors))
        caps = None
        if self.captions is not None:
            caps = self.captions.align(captions, len(tensors))
            for i in list(ready):
                preds[i].error = self.captions.problem(caps[i])  # a refused caption costs its item only
                if preds[i].error:
                    del ready[i]
        self._score(ready, preds, max(1, len(tensors)), caps)
        from .memory_budget import any_large, give_back_heap

        if any_large(tensors):  # the activations are freed; the caller still holds the inputs
            give_back_heap()
        return preds
