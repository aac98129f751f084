"""The runtime API: open a package, predict P(fake) for images."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fakedet.errors import FakedetError, ImageError, first_line
from fakedet.package import ModelPackage

from .captions import CaptionInput
from .decode_pool import DEFAULT_DECODE_SECONDS, DecodePool
from .memory_budget import any_large, give_back_heap
from .embedding import EmbeddingAPI, serialized
from .imageio import source_name
from .preprocess import preprocess_image
from .backends.registry import split_options
from .scoring import check_output, fake_logits, sigmoid
from .selection import Choice, choose, make_backend

NON_FINITE = "model produced a non-finite score (NaN or infinity)"


@dataclass
class Prediction:
    source: str
    score: float | None = None  # P(fake)
    logit: float | None = None
    is_fake: bool | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)


class Detector(EmbeddingAPI):
    """A model package loaded on a backend.

        det = Detector.open("model.fdet")            # backend="auto"
        for p in det.predict(["a.jpg", "b.png"]):
            print(p.source, p.score, p.is_fake, p.error)

    Safe to share between threads (inference is serialized per Detector): see
    EmbeddingAPI for the guarantee, apredict, predict_frames and warmup.
    """

    def __init__(self, package: ModelPackage, choice: Choice, backend, batch_size: int = 8, threshold: float | None = None):
        self.package = package
        self.manifest = package.manifest
        self.choice = choice
        self.backend = serialized(backend)  # thread safety: one inference call at a time
        self.batch_size = max(1, int(batch_size))
        self.threshold = float(threshold) if threshold is not None else self.manifest.threshold.value
        self.captions = CaptionInput.of(package)  # None for an image-only model
        self.decoder = DecodePool(DEFAULT_DECODE_SECONDS, 1)  # paths and bytes decode in an abandonable worker
        self.pixel_budget = None  # set_memory_budget

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

        self.pixel_budget = pixel_budget(self, max_memory, option)
        return min(self.pixel_budget.max_pixels, self.manifest.input.preprocess.max_pixels)

    def warmup_tensor(self, x: np.ndarray) -> None:
        """One inference on a ready tensor (captions, if the model takes them, left empty)."""
        if self.captions is not None:
            x = self.captions.feed(self.manifest.input.name, x, [""] * len(x))
        self.backend.infer(x)

    @property
    def takes_captions(self) -> bool:
        """True for a caption-aware model: each image is scored with its caption."""
        return self.captions is not None

    @classmethod
    def open(
        cls,
        path_or_package,
        backend: str = "auto",
        precision: str = "auto",
        batch_size: int = 8,
        threshold: float | None = None,
        **backend_options,
    ) -> "Detector":
        """`backend_options` go to the backend (e.g. threads=4 for ONNX Runtime); unknown ones
        are refused. With backend="auto", an option the chosen backend does not take (threads
        on TensorRT) is left out."""
        pkg = path_or_package if isinstance(path_or_package, ModelPackage) else ModelPackage.open(path_or_package)
        choice = choose(pkg, backend, precision)
        if backend == "auto":
            backend_options, _ = split_options(choice.backend, backend_options)
        runner = make_backend(choice, pkg, **backend_options).open()
        try:
            check_output(runner.output_spec, pkg.manifest.output, choice.artifact.file)
        except FakedetError:
            runner.close()
            raise
        return cls(pkg, choice, runner, batch_size, threshold)

    # ---- prediction -------------------------------------------------------
    def _prepare(self, item, deadline: float | None = None, cancelled=None) -> np.ndarray:
        name = source_name(item)
        limit, why = self.manifest.input.preprocess.max_pixels, "decompression-bomb guard"
        if self.pixel_budget is not None and self.pixel_budget.max_pixels < limit:
            limit, why = self.pixel_budget.max_pixels, self.pixel_budget.why
        img = self.decoder.load(item, limit, deadline, cancelled, why)
        return preprocess_image(img, self.manifest.input, name)

    def predict(self, items, batch_size: int | None = None, captions=None) -> list[Prediction]:
        """Score images (paths, bytes, uint8 arrays or PIL images). One failing item gets
        its error in its Prediction; the others are scored. Items are decoded, preprocessed
        and scored one batch-sized window at a time, so memory follows the batch size, not
        the number of items.

        `captions`: one per image (str, or None for none), read by a caption-aware model
        (`takes_captions`); an image without one fails unless the package says an empty
        caption is valid. An image-only model ignores them."""
        items = list(items)
        caps = self.captions.align(captions, len(items)) if self.captions is not None else None
        preds = [Prediction(source=source_name(it)) for it in items]
        window = self.backend.input_spec.fixed_batch() or batch_size or self.batch_size
        for start in range(0, len(items), window):
            tensors: dict[int, np.ndarray] = {}
            for i in range(start, min(start + window, len(items))):
                try:
                    if caps is not None:
                        self.captions.check(caps[i])
                    tensors[i] = self._prepare(items[i])
                except ImageError as e:
                    preds[i].error = e.problem
                except FakedetError as e:
                    preds[i].error = str(e)
                except Exception as e:  # whatever decoding or preprocessing raises costs its item only
                    preds[i].error = f"cannot prepare the image: {type(e).__name__}: {first_line(e)}"
            self._score(tensors, preds, window, caps)
            large = any_large(tensors.values())
            del tensors
            if large:
                give_back_heap()
        return preds

    def predict_tensors(self, batch: np.ndarray, captions=None) -> np.ndarray:
        """Preprocessed float32 batch (and, for a caption-aware model, a caption per row) ->
        P(fake) per row."""
        feed = batch
        if self.captions is not None:
            caps = self.captions.align(captions, len(batch))
            for c in caps:
                self.captions.check(c)
            feed = self.captions.feed(self.manifest.input.name, batch, caps)
        return sigmoid(fake_logits(self.backend.infer(feed), self.manifest.output))

    def _score(self, tensors: dict[int, np.ndarray], preds: list[Prediction], batch_size: int, caps=None) -> None:
        by_shape: dict[tuple, list[int]] = {}
        for i, t in tensors.items():
            by_shape.setdefault(t.shape, []).append(i)
        for idx in by_shape.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                # one image: a view, not a copy (a 4000x4000 tensor is 192 MB); the backend fits
                # the batch to the engine's batch sizes
                batch = tensors[chunk[0]][None] if len(chunk) == 1 else np.stack([tensors[i] for i in chunk])
                if caps is not None:
                    batch = self.captions.feed(self.manifest.input.name, batch, [caps[i] for i in chunk])
                try:
                    logits = fake_logits(self.backend.infer(batch), self.manifest.output)
                except Exception as e:  # a failing batch costs its items, not the run
                    for i in chunk:
                        preds[i].error = f"inference failed: {first_line(e)}"
                    continue
                probs = sigmoid(logits)
                for i, lg, p in zip(chunk, logits, probs):
                    if not np.isfinite(lg):  # NaN/inf is no verdict (NaN std, fp16 overflow, inf - inf)
                        preds[i].error = NON_FINITE
                        continue
                    preds[i].logit = float(lg)
                    preds[i].score = float(p)
                    preds[i].is_fake = bool(p >= self.threshold)

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

