"""The runtime API: open a package, predict P(fake) for images."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fakedet.errors import FakedetError, ImageError, first_line
from fakedet.package import ModelPackage

from .captions import CaptionInput
from .embedding import EmbeddingAPI, serialized
from .imageio import load_image, source_name
from .preprocess import preprocess_image
from .provenance import read_provenance
from .backends.registry import split_options
from .scoring import check_output, fake_logits
from .verdict import calibrated_probability, decision_threshold
from .selection import Choice, choose, make_backend

NON_FINITE = "model produced a non-finite score (NaN or infinity)"


@dataclass
class Prediction:
    source: str
    score: float | None = None  # P(fake), calibrated where the package has a calibration
    logit: float | None = None  # the model's raw logit
    is_fake: bool | None = None
    error: str | None = None
    operating_point: str | None = None  # the named point whose threshold decided is_fake
    provenance: dict | None = None  # declared origin (C2PA, XMP, EXIF), beside the score; predict(provenance=True)

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

    def __init__(self, package: ModelPackage, choice: Choice, backend, batch_size: int = 8, threshold: float | None = None,
                 operating_point: str | None = None):
        self.package = package
        self.manifest = package.manifest
        self.choice = choice
        self.backend = serialized(backend)  # thread safety: one inference call at a time
        self.batch_size = max(1, int(batch_size))
        self.threshold, self.operating_point = decision_threshold(self.manifest, threshold, operating_point)
        self.calibration = self.manifest.calibration  # None: P(fake) = sigmoid(logit)
        self.captions = CaptionInput.of(package)  # None for an image-only model

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
    def _prepare(self, item) -> np.ndarray:
        name = source_name(item)
        img = load_image(item, self.manifest.input.preprocess.max_pixels)
        return preprocess_image(img, self.manifest.input, name)

    def predict(self, items, batch_size: int | None = None, captions=None, provenance: bool = False) -> list[Prediction]:
        """Score images (paths, bytes, uint8 arrays or PIL images). One failing item gets
        its error in its Prediction; the others are scored. Items are decoded, preprocessed
        and scored one batch-sized window at a time, so memory follows the batch size, not
        the number of items.

        `captions`: one per image (str, or None for none), read by a caption-aware model
        (`takes_captions`); an image without one fails unless the package says an empty
        caption is valid. An image-only model ignores them.

        `provenance`: also read what each path or encoded image declares about its origin
        (C2PA, XMP, EXIF / PNG text) into Prediction.provenance; the score is untouched."""
        items = list(items)
        caps = self.captions.align(captions, len(items)) if self.captions is not None else None
        preds = [Prediction(source=source_name(it)) for it in items]
        window = self.backend.input_spec.fixed_batch() or batch_size or self.batch_size
        for start in range(0, len(items), window):
            tensors: dict[int, np.ndarray] = {}
            for i in range(start, min(start + window, len(items))):
                if provenance:
                    preds[i].provenance = read_provenance(items[i])  # bounded; never raises
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
            del tensors
        return preds

    def predict_tensors(self, batch: np.ndarray, captions=None) -> np.ndarray:
        """Preprocessed float32 batch (and, for a caption-aware model, a caption per row) ->
        P(fake) per row (calibrated where the package has a calibration)."""
        return calibrated_probability(self.logits_tensors(batch, captions), self.calibration)

    def logits_tensors(self, batch: np.ndarray, captions=None) -> np.ndarray:
        """The model's raw logit per row of a preprocessed batch (what a calibration is fitted on)."""
        feed = batch
        if self.captions is not None:
            caps = self.captions.align(captions, len(batch))
            for c in caps:
                self.captions.check(c)
            feed = self.captions.feed(self.manifest.input.name, batch, caps)
        return fake_logits(self.backend.infer(feed), self.manifest.output)

    def _score(self, tensors: dict[int, np.ndarray], preds: list[Prediction], batch_size: int, caps=None) -> None:
        by_shape: dict[tuple, list[int]] = {}
        for i, t in tensors.items():
            by_shape.setdefault(t.shape, []).append(i)
        for idx in by_shape.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                batch = np.stack([tensors[i] for i in chunk])  # the backend fits it to the engine's batch sizes
                if caps is not None:
                    batch = self.captions.feed(self.manifest.input.name, batch, [caps[i] for i in chunk])
                try:
                    logits = fake_logits(self.backend.infer(batch), self.manifest.output)
                except Exception as e:  # a failing batch costs its items, not the run
                    for i in chunk:
                        preds[i].error = f"inference failed: {first_line(e)}"
                    continue
                probs = calibrated_probability(logits, self.calibration)
                for i, lg, p in zip(chunk, logits, probs):
                    if not np.isfinite(lg):  # NaN/inf is no verdict (NaN std, fp16 overflow, inf - inf)
                        preds[i].error = NON_FINITE
                        continue
                    preds[i].logit = float(lg)
                    preds[i].score = float(p)
                    preds[i].is_fake = bool(p >= self.threshold)
                    preds[i].operating_point = self.operating_point

    def describe(self) -> str:
        return f"{self.backend.describe()} running {self.choice.artifact.file}: {self.choice.reason}"

    def close(self) -> None:
        self.backend.close()
        self.package.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

