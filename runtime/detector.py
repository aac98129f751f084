"""The runtime API: open a package, predict P(fake) for images; what an application needs
to host a Detector in its own process:

    with Detector.open("model.fdet") as det:        # open once, at start-up
        det.warmup()                                # first calls pay no lazy set-up
        det.predict_frames(frames, channels="BGR")  # OpenCV frames (uint8 HxWx3)
        det.predict([jpeg_bytes, "a.png"])          # encoded bytes or paths, any thread
        await det.apredict([jpeg_bytes])           # from async code: the loop never blocks
"""

from __future__ import annotations

import functools
import time
from concurrent.futures import Executor

import numpy as np

from fakedet.errors import FakedetError, ImageError, first_line
from fakedet.package import ModelPackage

from .captions import CaptionInput
from .evidence import exported_map
from .decode_pool import DEFAULT_DECODE_SECONDS, DecodePool
from .frames import frames_to_rgb
from .imageio import source_name
from .memory_budget import any_large, give_back_heap
from .preprocess import geometry, normalize
from .provenance import read_provenance
from .backends.registry import split_options
from .prediction import NON_FINITE, Prediction
from .scoring import check_output, fake_logits
from .selection import Choice, choose, make_backend
from .tiled_scoring import TiledImage, tiler_for
from .verdict import calibrated_probability, decision_threshold


class Detector:
    """A model package loaded on a backend.

        det = Detector.open("model.fdet")            # backend="auto"
        for p in det.predict(["a.jpg", "b.png"]):
            print(p.source, p.score, p.is_fake, p.error)

    Thread safety: one Detector may be shared by any number of threads. `predict`,
    `predict_frames`, `apredict` and `warmup` may be called concurrently from any thread or
    event loop; each call decodes and preprocesses its own images in the calling thread (in
    parallel with other calls). Inference concurrency is the backend's to decide, in one
    place (runtime/backends/base.py's contract): ONNX Runtime runs concurrent calls at once,
    the TensorRT backend up to its `contexts` at once (the others wait for a free context);
    the Detector adds no lock of its own. Results are exactly those of the same calls made
    one after another. `close` must come after every call has returned (as with a file).
    GPU note: the CUDA device (cuda-python) or context (pycuda) is made current per thread by
    the TensorRT backend when it opens; from other threads this holds only on GPU 0 with
    cuda-python. Where that matters, run inference on the thread that opened the Detector,
    as `fakedet serve` does (it opens, runs and closes the model on one inference thread).

    Arrays: `predict` reads numpy arrays as RGB (uint8 HxWx3, or HxW grey);
    `predict_frames(frames, channels=...)` makes you state the order: "BGR" for frames
    from OpenCV (cv2.VideoCapture, cv2.imread), "RGB" for Pillow, imageio, PyAV.
    """

    def __init__(self, package: ModelPackage, choice: Choice, backend, batch_size: int = 8, threshold: float | None = None,
                 operating_point: str | None = None):
        self.package = package
        self.manifest = package.manifest
        self.choice = choice
        self.backend = backend  # thread-safe by the backend contract: the Detector adds no lock
        self.batch_size = max(1, int(batch_size))
        self.threshold, self.operating_point = decision_threshold(self.manifest, threshold, operating_point)
        self.calibration = self.manifest.calibration  # None: P(fake) = sigmoid(logit)
        self.captions = CaptionInput.for_package(package)  # ImageOnly (the null object) for an image-only model
        self.decoder = DecodePool(DEFAULT_DECODE_SECONDS, 1)  # paths and bytes decode in an abandonable worker
        self.pixel_budget = None  # set_memory_budget
        self._tiler = None  # (Tiler or None, why), found on first use: runtime.tiled_scoring

    def set_decode_budget(self, seconds: float = DEFAULT_DECODE_SECONDS, workers: int = 1) -> None:
        """Each image (path or bytes) decodes within `seconds` or fails with "decode took longer
        than N s"; up to `workers` decode at once (one per thread that calls `prepare`); 0:
        in the calling thread, without a budget (trusted images only)."""
        old, self.decoder = self.decoder, DecodePool(seconds, workers)
        old.close()

    def set_memory_budget(self, max_memory: int, option: str = "the memory budget") -> int:
        """Refuse images larger than `max_memory` bytes allow this model (measured on this
        machine: see memory_budget); returns the pixel limit now in force."""
        from .memory_budget import pixel_budget

        self.pixel_budget = pixel_budget(self, max_memory, option, self.tiler)
        return min(self.pixel_budget.max_pixels, self.manifest.input.preprocess.max_pixels)

    @property
    def tiler(self):
        """How large images are scored in exact tiles (runtime.tiled_scoring.Tiler), or None
        where the model cannot be tiled (`tiling_note` says why)."""
        if self._tiler is None:
            self._tiler = tiler_for(self)
        return self._tiler[0]

    @property
    def tiling_note(self) -> str:
        """"tiled", or why this model's images are scored whole."""
        self.tiler  # noqa: B018  (found on first use)
        return self._tiler[1]

    def warmup_tensor(self, x: np.ndarray) -> None:
        """One inference on a ready tensor (captions, if the model takes them, left empty)."""
        self.backend.infer(self.captions.feed(self.manifest.input.name, x, [""] * len(x)))

    @property
    def takes_captions(self) -> bool:
        """True for a caption-aware model: each image is scored with its caption."""
        return self.captions.takes_captions

    @classmethod
    def open(
        cls,
        path_or_package,
        backend: str = "auto",
        precision: str = "auto",
        batch_size: int = 8,
        threshold: float | None = None,
        operating_point: str | None = None,
        **backend_options,
    ) -> "Detector":
        """`operating_point`: a named point of the package (its threshold decides is_fake;
        refused with `threshold`). `backend_options` go to the backend (e.g. threads=4 for ONNX Runtime); unknown ones
        are refused. With backend="auto", an option the chosen backend does not take (threads
        on TensorRT) is left out."""
        pkg = path_or_package if isinstance(path_or_package, ModelPackage) else ModelPackage.open(path_or_package)
        decision_threshold(pkg.manifest, threshold, operating_point)  # an unknown point fails before the backend opens
        choice = choose(pkg, backend, precision)
        if backend == "auto":
            backend_options, _ = split_options(choice.backend, backend_options)
        runner = make_backend(choice, pkg, **backend_options).open()
        try:
            check_output(runner.output_spec, pkg.manifest.output, choice.artifact.file)
        except FakedetError:
            runner.close()
            raise
        return cls(pkg, choice, runner, batch_size, threshold, operating_point)

    # ---- prediction -------------------------------------------------------
    def _prepare(self, item, deadline: float | None = None, cancelled=None) -> np.ndarray:
        name = source_name(item)
        limit, why = self.manifest.input.preprocess.max_pixels, "decompression-bomb guard"
        if self.pixel_budget is not None and self.pixel_budget.max_pixels < limit:
            limit, why = self.pixel_budget.max_pixels, self.pixel_budget.why
        img = self.decoder.load(item, limit, deadline, cancelled, why)
        arr = geometry(img, self.manifest.input.preprocess, name)
        del img
        if self.tiler is not None and self.tiler.wants_tiles(*arr.shape[:2]):
            return TiledImage(arr)  # uint8 until each tile is cut
        return normalize(arr, self.manifest.input)

    def explainer(self):
        """How this detector makes evidence maps (runtime.explain.Explainer), made once."""
        if getattr(self, "_explainer", None) is None:
            from .explain import Explainer

            self._explainer = Explainer(self)
        return self._explainer

    def predict(self, items, batch_size: int | None = None, captions=None, provenance: bool = False,
                explain: bool = False) -> list[Prediction]:
        """Score images (paths, bytes, uint8 arrays or PIL images). One failing item gets
        its error in its Prediction; the others are scored. Items are decoded, preprocessed
        and scored one batch-sized window at a time, so memory follows the batch size, not
        the number of items.

        `captions`: one per image (str, or None for none), read by a caption-aware model
        (`takes_captions`); an image without one fails unless the package says an empty
        caption is valid. An image-only model ignores them.

        `provenance`: also read what each path or encoded image declares about its origin
        (C2PA, XMP, EXIF / PNG text) into Prediction.provenance; the score is untouched.

        `explain`: each prediction also gets its evidence map and the `partial` verdict
        (runtime.evidence; the exported output costs nothing, a tile map one forward per tile)."""
        items = list(items)
        caps = self.captions.align(captions, len(items))
        preds = [Prediction(source=source_name(it)) for it in items]
        window = self.backend.input_spec.fixed_batch() or batch_size or self.batch_size
        for start in range(0, len(items), window):
            tensors: dict[int, np.ndarray] = {}
            for i in range(start, min(start + window, len(items))):
                if provenance:
                    preds[i].provenance = read_provenance(items[i])  # bounded; never raises
                try:
                    self.captions.check(caps[i])
                    tensors[i] = self._prepare(items[i])
                except ImageError as e:
                    preds[i].error = e.problem
                except FakedetError as e:
                    preds[i].error = str(e)
                except Exception as e:  # whatever decoding or preprocessing raises costs its item only
                    preds[i].error = f"cannot prepare the image: {type(e).__name__}: {first_line(e)}"
            self._score(tensors, preds, window, caps, explain)
            if explain and not self.explainer().exported:
                self._explain_tiles(items, preds, range(start, min(start + window, len(items))), caps)
            large = any_large(tensors.values())
            del tensors
            if large:
                give_back_heap()
        return preds

    def predict_tensors(self, batch: np.ndarray, captions=None) -> np.ndarray:
        """Preprocessed float32 batch (and, for a caption-aware model, a caption per row) ->
        P(fake) per row (calibrated where the package has a calibration)."""
        return calibrated_probability(self.logits_tensors(batch, captions), self.calibration)

    def logits_tensors(self, batch: np.ndarray, captions=None) -> np.ndarray:
        """The model's raw logit per row of a preprocessed batch (what a calibration is fitted on)."""
        caps = self.captions.align(captions, len(batch))
        for c in caps:
            self.captions.check(c)
        feed = self.captions.feed(self.manifest.input.name, batch, caps)
        return fake_logits(self.backend.infer(feed), self.manifest.output)

    def _explain_tiles(self, items, preds: list[Prediction], indices, caps) -> None:
        for i in indices:
            if preds[i].ok:
                try:
                    self.explainer().attach(preds[i], self.explainer().tiles(items[i], caps[i]))
                except FakedetError as e:
                    preds[i].error = f"evidence map failed: {first_line(e)}"

    def _score(self, tensors: dict[int, np.ndarray], preds: list[Prediction], batch_size: int, caps: list,
               explain: bool = False) -> None:
        exported = explain and self.explainer().exported
        by_shape: dict[tuple, list[int]] = {}
        for i, t in tensors.items():
            if isinstance(t, TiledImage):
                self._score_tiled(t, preds[i], exported)
                continue
            by_shape.setdefault(t.shape, []).append(i)
        for idx in by_shape.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                # one image: a view, not a copy (a 4000x4000 tensor is 192 MB); the backend fits
                # the batch to the engine's batch sizes
                batch = tensors[chunk[0]][None] if len(chunk) == 1 else np.stack([tensors[i] for i in chunk])
                batch = self.captions.feed(self.manifest.input.name, batch, [caps[i] for i in chunk])
                maps = None
                try:
                    if exported:
                        out, maps = self.explainer().infer(batch)
                    else:
                        out = self.backend.infer(batch)
                    logits = fake_logits(out, self.manifest.output)
                except Exception as e:  # a failing batch costs its items, not the run
                    for i in chunk:
                        preds[i].error = f"inference failed: {first_line(e)}"
                    continue
                probs = calibrated_probability(logits, self.calibration)
                for i, lg, p in zip(chunk, logits, probs):
                    self._record(preds[i], lg, p)
                if maps is not None:
                    for i, ev in zip(chunk, maps):
                        if preds[i].ok:
                            self.explainer().attach(preds[i], ev)

    def _record(self, pred: Prediction, logit, prob) -> None:
        if not np.isfinite(logit):  # NaN/inf is no verdict (NaN std, fp16 overflow, inf - inf)
            pred.error = NON_FINITE
            return
        pred.logit = float(logit)
        pred.score = float(prob)
        pred.is_fake = bool(prob >= self.threshold)
        pred.operating_point = self.operating_point

    def _score_tiled(self, image: TiledImage, pred: Prediction, explain: bool) -> None:
        """One large image in exact tiles: the stitched map's mean is its logit, the map its evidence."""
        try:
            logit, cells = self.tiler.score(image.pixels)
        except Exception as e:  # a failing image costs itself only
            pred.error = f"inference failed: {first_line(e)}"
            return
        self._record(pred, logit, calibrated_probability(np.array([logit]), self.calibration)[0])
        if explain and pred.ok:
            ex = self.explainer()
            ex.attach(pred, exported_map(cells, image.shape[:2], self.threshold, ex.anchor))

    def predict_frames(self, frames, channels: str, batch_size: int | None = None, captions=None):
        """Score uint8 HxWx3 frames; `channels` is "BGR" (OpenCV) or "RGB" (required:
        the wrong order silently changes scores, so it is never guessed)."""
        return self.predict(frames_to_rgb(frames, channels), batch_size=batch_size, captions=captions)

    async def apredict(self, items, batch_size: int | None = None, executor: Executor | None = None, captions=None,
                       provenance: bool = False):
        """`predict` for async code: runs in `executor` (default: the loop's default
        thread pool) so the event loop keeps serving while images decode and infer."""
        import asyncio  # only async hosts pay for it

        loop = asyncio.get_running_loop()
        call = functools.partial(self.predict, list(items), batch_size, captions=captions, provenance=provenance)
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
            # a caption-aware model: an empty caption beside each image
            x = self.captions.feed(self.manifest.input.name, np.zeros((b,) + tuple(shape), dtype=np.float32), [""] * b)
            for _ in range(max(1, rounds)):
                self.backend.infer(x)
        return time.perf_counter() - t0

    # ---- pieces for hosts that batch across callers (fakedet serve) ----------
    def prepare(self, item, deadline: float | None = None, cancelled=None) -> np.ndarray:
        """Decode + preprocess one image (path, bytes, RGB array, PIL image) to the model's
        input tensor. Raises fakedet.errors.ImageError for a bad image, or one whose decode
        outlives the budget, `deadline` (time.monotonic()) or `cancelled` (threading.Event)."""
        return self._prepare(item, deadline, cancelled)

    def predict_prepared(self, tensors: list, names: list | None = None, captions=None, explain: bool = False) -> list:
        """Score already prepared tensors (from `prepare`) in as few inference calls as
        their shapes allow; one Prediction per tensor, a failing batch costs only its rows.
        `captions` as for `predict` (a caption-aware model: an item without one fails)."""
        names = names or [f"<tensor:{i}>" for i in range(len(tensors))]
        preds = [Prediction(source=n) for n in names]
        ready = dict(enumerate(tensors))
        caps = self.captions.align(captions, len(tensors))
        for i in list(ready):
            preds[i].error = self.captions.problem(caps[i])  # a refused caption costs its item only
            if preds[i].error:
                del ready[i]
        self._score(ready, preds, max(1, len(tensors)), caps, explain and self.explainer().exported)
        if any_large(tensors):  # the activations are freed; the caller still holds the inputs
            give_back_heap()
        return preds

    def describe(self) -> str:
        return f"{self.backend.describe()} running {self.choice.artifact.file}: {self.choice.reason}"

    def close(self) -> None:
        self.decoder.close()
        self.backend.close()
        self.package.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

