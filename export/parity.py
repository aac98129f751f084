"""Parity between the PyTorch model and its ONNX export, on random tensors and on
real images through the runtime's preprocessing, at several batch sizes."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fakedet.errors import FakedetError
from fakedet.manifest import InputSpec
from fakedet.runtime.scoring import sigmoid

from .captions import NO_TEXT
from .onnx_export import example_input_shape

PARITY_BATCHES = (1, 3, 8)


class ParityError(FakedetError):
    """The ONNX model's logits differ from PyTorch's by more than the tolerance."""


def synthetic_images(n: int, size: tuple[int, int], seed: int = 0) -> list[Image.Image]:
    """Natural-ish RGB images (smooth colour fields, shapes, texture, sensor noise, a
    JPEG round trip): statistics closer to photos than uniform noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = x0 + int(rng.integers(4, max(5, w // 2))), y0 + int(rng.integers(4, max(5, h // 2)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5))))
        arr = np.asarray(img).astype(np.float32) + rng.normal(0, 4.0, size=(h, w, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(70, 96)))
        out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def synthetic_size(spec: InputSpec, whole_image_size: tuple[int, int]) -> tuple[int, int]:
    pre = spec.preprocess
    if pre.policy == "whole-image":
        return tuple(whole_image_size)
    h, w = pre.size
    return (h + 24, w + 40)  # larger than the crop: the crop/resize path is exercised


@dataclass
class ParityInputs:
    random: dict[int, np.ndarray]
    real: dict[int, np.ndarray]
    real_source: str
    n_real_images: int
    skipped_images: list[str] = field(default_factory=list)
    text: object = NO_TEXT  # captions.GraphText (caption-aware: token ids beside each image batch) or NO_TEXT

    def feeds(self, kind: str, image_name: str) -> dict[int, dict[str, np.ndarray]]:
        """Per batch size, the ONNX inputs by name."""
        batches = self.random if kind == "random" else self.real
        return {b: {image_name: np.ascontiguousarray(x), **self.text.feed(b)} for b, x in batches.items()}


def _batches_from(tensors: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Batches of 1, 3 and 8 from same-shaped tensors (the most common shape; cycled when
    short). Each smaller batch is the head of the largest one."""
    by_shape: dict[tuple, list[np.ndarray]] = {}
    for t in tensors:
        by_shape.setdefault(t.shape, []).append(t)
    group = max(by_shape.values(), key=len)
    full = np.stack([group[i % len(group)] for i in range(max(PARITY_BATCHES))])
    return {b: full[:b] for b in PARITY_BATCHES}


def make_inputs(spec: InputSpec, whole_image_size: tuple[int, int] = (64, 64), images_dir: str | Path | None = None,
                n_synthetic: int = 8, seed: int = 0, text=NO_TEXT) -> ParityInputs:
    """Image batches of 1, 3 and 8 (random tensors, and real or synthetic images through the
    runtime's preprocessing); with `text` (captions.GraphText), its captions beside them."""
    from fakedet.runtime.imageio import expand_paths
    from fakedet.runtime.preprocess import preprocess, preprocess_image

    rng = np.random.default_rng(seed)
    full = rng.standard_normal(example_input_shape(spec, max(PARITY_BATCHES), whole_image_size)).astype(np.float32)
    random = {b: full[:b] for b in PARITY_BATCHES}
    tensors, skipped = [], []
    if images_dir is not None:
        paths = expand_paths([Path(images_dir)])[: max(PARITY_BATCHES) * 4]
        for p in paths:
            try:
                tensors.append(preprocess(p, spec))
            except FakedetError as e:  # one bad image is skipped, not fatal
                skipped.append(str(e))
        if not tensors:
            raise ParityError(f"{images_dir}: no readable images for the parity check")
        source = str(images_dir)
    else:
        imgs = synthetic_images(n_synthetic, synthetic_size(spec, whole_image_size), seed)
        tensors = [preprocess_image(im, spec) for im in imgs]
        source = "synthetic"
    return ParityInputs(random, _batches_from(tensors), source, len(tensors), skipped, text)


def torch_logits(model, inputs: ParityInputs) -> dict[str, dict[int, np.ndarray]]:
    """PyTorch's logits, computed once on the largest batch (rows of an eval-mode model are
    independent; the smaller batches are its head), so the ONNX model is what runs at
    every batch size."""
    import torch

    out: dict[str, dict[int, np.ndarray]] = {}
    big = max(PARITY_BATCHES)
    with torch.no_grad():
        for kind, batches in (("random", inputs.random), ("real", inputs.real)):
            args = [torch.from_numpy(np.ascontiguousarray(batches[big]))] + inputs.text.torch_args(big)
            full = model(*args).float().numpy().reshape(big, -1)
            out[kind] = {b: full[:b] for b in batches}
    return out


def onnx_logits(onnx_model: str | Path | bytes, inputs: ParityInputs,
                disabled_optimizers: list[str] | tuple = ()) -> dict[str, dict[int, np.ndarray]]:
    """Run the ONNX file on ONNX Runtime's CPU provider with its default (full) graph
    optimisations, as the runtime does (fails loudly if a kernel is missing)."""
    from fakedet.runtime.ort_session import cpu_session

    sess = cpu_session(onnx_model, disabled_optimizers=disabled_optimizers)
    name = sess.get_inputs()[0].name
    out: dict[str, dict[int, np.ndarray]] = {}
    for kind in ("random", "real"):
        out[kind] = {b: np.asarray(sess.run(None, feed)[0], dtype=np.float32).reshape(b, -1)
                     for b, feed in inputs.feeds(kind, name).items()}
    return out


def compare(reference: dict, candidate: dict, threshold: float, atol: float, inputs: ParityInputs) -> dict:
    """max / mean |logit diff| per input kind and batch, score agreement at the threshold."""
    report: dict = {"atol": atol, "threshold": threshold, "batches": list(PARITY_BATCHES),
                    "real_source": inputs.real_source, "n_real_images": inputs.n_real_images,
                    **inputs.text.parity_facts(max(PARITY_BATCHES))}
    all_diffs, agree, total = [], 0, 0
    for kind in ("random", "real"):
        per = {}
        for b in PARITY_BATCHES:
            ref, got = reference[kind][b], candidate[kind][b]
            if ref.shape != got.shape:
                raise ParityError(f"ONNX output shape {got.shape} != PyTorch output shape {ref.shape} at batch {b}")
            d = np.abs(ref.astype(np.float64) - got.astype(np.float64))
            same = (sigmoid(ref) >= threshold) == (sigmoid(got) >= threshold)
            per[f"batch_{b}"] = {"max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
                                 "score_agreement": float(same.mean())}
            all_diffs.append(d.ravel())
            agree, total = agree + int(same.sum()), total + same.size
        report[kind] = per
    diffs = np.concatenate(all_diffs)
    report["max_abs_diff"] = float(diffs.max())
    report["mean_abs_diff"] = float(diffs.mean())
    report["score_agreement"] = agree / total
    report["passed"] = bool(np.isfinite(diffs).all() and diffs.max() <= atol)
    return report


def format_report(label: str, report: dict) -> str:
    status = "ok" if report["passed"] else f"FAILED (> atol {report['atol']:g})"
    lines = [f"parity {label}: max |logit diff| {report['max_abs_diff']:.3g}, mean {report['mean_abs_diff']:.3g}, "
             f"score agreement {report['score_agreement'] * 100:.1f}% at threshold {report['threshold']:g}: {status}"]
    for kind in ("random", "real"):
        cells = ", ".join(f"b{k.split('_')[1]} {v['max_abs_diff']:.2g}" for k, v in report[kind].items())
        lines.append(f"  {kind:6s} max diff by batch: {cells}")
    return "\n".join(lines)
