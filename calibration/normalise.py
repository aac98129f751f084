"""Graph normalisation of a foreign ONNX classifier, before `package` or `calibrate --input-spec`
wraps it: shape inference, folding of exporter artefacts and the fusions INT8 kernels need.

Why: exporters deduplicate equal initializers (PyTorch's TorchScript exporter feeds the copies
through `Identity` nodes). A Conv whose bias arrives through an Identity looks like a Conv
with an activation for a bias: the quantizer finds no range for it, keeps it float, and ONNX
Runtime then cannot fuse that Conv into an INT8 kernel (on a freshly initialised ResNet-50, 47
of 53 biases; INT8 ran at 0.76x FP32). ONNX Runtime's own quantization pre-processing
(`quant_pre_process`: symbolic shape inference, then its basic graph optimisations: constant
folding, Identity elimination, BatchNorm/Mul/Add folded into Conv) or onnxslim's slimming
turns those into plain initializers again. The result must agree with the original on the
parity inputs (max |logit diff|, recorded); otherwise the original graph is kept and the
record says why."""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from fakedet.errors import first_line
from fakedet.runtime.stoppable import call_stoppably, ort_run_options
from fakedet.tempdirs import owned_tempdir

log = logging.getLogger("fakedet.calibration")

METHODS = ("ort", "onnxslim", "none")
DEFAULT_METHOD = "ort"
METHOD_HELP = ("Graph normalisation before wrapping: ort (ONNX Runtime's quantization pre-processing: shape "
               "inference, constant folding, Identity elimination, BatchNorm folded into Conv), onnxslim, or none. "
               "The result must match the original's logits on the parity inputs or the original is kept.")
PARITY_RTOL = 1e-3  # of the largest |logit|, and at least this much absolute
PARITY_IMAGES = 3  # zeros and two seeded N(0, 1) images in the network's input space


def census(model) -> dict:
    """What in a graph hinders INT8: Identity nodes, Identity-fed initializers, BatchNorms,
    and Conv/Gemm biases that are not initializers (no range: the layer stays float)."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    ops = Counter(n.op_type for n in g.node)
    identity_fed = {o for n in g.node if n.op_type == "Identity" and n.input and n.input[0] in inits for o in n.output}
    biased = [n for n in g.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2]]
    return {
        "nodes": len(g.node),
        "identity": ops.get("Identity", 0),
        "identity_fed_initializers": len(identity_fed),
        "batchnorm": ops.get("BatchNormalization", 0),
        "conv": ops.get("Conv", 0),
        "biases_not_initializers": sum(n.input[2] not in inits for n in biased),
    }


def parity_batch(manifest) -> np.ndarray:
    """The parity inputs: a zero image and two seeded N(0, 1) ones at the spec's size."""
    pre = manifest.input.preprocess
    h, w = pre.size if pre.size else (64, 64)
    if pre.policy == "whole-image":
        h, w = max(h, 64), max(w, 64)
    x = np.random.default_rng(0).standard_normal(manifest.input.tensor_shape(PARITY_IMAGES, (h, w))).astype(np.float32)
    x[0] = 0.0
    return x


def _ort_pre_process(src: Path, dst: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst))
    except Exception as e:  # symbolic shape inference gives up on some graphs: the optimisations still help
        log.info("symbolic shape inference failed (%s); pre-processing without it", first_line(e))
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


def _slim(src: Path, dst: Path) -> None:
    import onnx
    import onnxslim

    onnx.save(onnxslim.slim(str(src)), str(dst))


def _logits(path: Path, batch: np.ndarray) -> np.ndarray:
    """The model's first output on `batch`, one image at a time if the batch axis is fixed."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    fixed = s.get_inputs()[0].shape[0]
    parts = [batch[i:i + 1] for i in range(len(batch))] if isinstance(fixed, int) else [batch]
    outs = []
    for p in parts:  # stoppable: SIGTERM or Ctrl-C ends a model that never returns (runtime/stoppable.py)
        with ort_run_options() as ro:
            outs.append(call_stoppably(s.run, None, {name: p}, ro)[0].reshape(len(p), -1))
    return np.concatenate(outs).astype(np.float64)


def _same_io(a, b) -> bool:
    return [i.name for i in a.graph.input if i.name not in {t.name for t in a.graph.initializer}] == \
        [i.name for i in b.graph.input if i.name not in {t.name for t in b.graph.initializer}] and \
        [o.name for o in a.graph.output] == [o.name for o in b.graph.output]  # fmt: skip


def _parity_miss(ref: np.ndarray, got: np.ndarray, record: dict) -> str | None:
    """Why `got` does not match `ref` (None: it does); the figures go in `record` (JSON-safe:
    non-finite logits must match exactly and are left out of the difference)."""
    if ref.shape != got.shape:
        return f"its output has shape {list(got.shape)}, the original's {list(ref.shape)}"
    finite = np.isfinite(ref)
    if not np.array_equal(finite, np.isfinite(got)) or not np.array_equal(ref[~finite], got[~finite], equal_nan=True):
        return "its logits are non-finite where the original's are not (or the other way round)"
    diff = float(np.max(np.abs(ref[finite] - got[finite]))) if finite.any() else 0.0
    tol = PARITY_RTOL * max(1.0, float(np.max(np.abs(ref[finite]))) if finite.any() else 1.0)
    record.update(max_abs_logit_diff=diff, parity_tolerance=tol)
    return None if diff <= tol else f"its logits differ from the original's by {diff:.3g} (> {tol:.3g})"


def _drop_unused_domains(model) -> None:
    """ONNX Runtime's optimiser declares all its own operator domains; keep the used ones
    (and the default), so other consumers (TensorRT's parser) see the graph's real needs."""
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def normalise(model, batch: np.ndarray, method: str = DEFAULT_METHOD):
    """(model to use, record for the manifest's provenance). Runs on a copy in a temp dir;
    any failure or a parity miss keeps `model` and says why in the record."""
    import onnx

    if method not in METHODS:
        raise ValueError(f"unknown graph normalisation '{method}' (known: {', '.join(METHODS)})")
    record = {"method": method, "applied": False, "before": census(model)}
    if method == "none":
        return model, record
    try:
        raw = model.SerializeToString()
    except Exception as e:  # over protobuf's 2 GB: no temp copy to work on
        record["why_not"] = f"the graph cannot be serialised in one piece ({first_line(e)[:200]})"
        return model, record
    record["original_sha256"] = hashlib.sha256(raw).hexdigest()
    with owned_tempdir("fakedet-normalise-") as work:
        src, dst = work / "original.onnx", work / "normalised.onnx"
        src.write_bytes(raw)
        try:
            (_ort_pre_process if method == "ort" else _slim)(src, dst)
            out = onnx.load(str(dst))
            if not _same_io(model, out):
                raise ValueError("it renamed the graph's inputs or outputs")
            ref, got = _logits(src, batch), _logits(dst, batch)
        except Exception as e:  # any library's failure leaves the original in place
            record["why_not"] = f"{method} normalisation failed: {first_line(e)[:300]}"
            return model, record
    record.update(after=census(out), parity_inputs=f"{len(batch)} images {list(batch.shape[1:])}: zeros and seeded N(0,1)")
    why = _parity_miss(ref, got, record)
    if why:
        record["why_not"] = why
        return model, record
    record["applied"] = True
    _drop_unused_domains(out)
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    return out, record


def describe(record: dict) -> str:
    """One line for the user: what normalisation changed, or why it was not applied."""
    if record["method"] == "none":
        return "graph normalisation: off (--normalise none)"
    if not record["applied"]:
        return f"graph normalisation ({record['method']}) not applied: {record['why_not']}; the original graph is used"
    b, a = record["before"], record["after"]
    return (f"graph normalisation ({record['method']}): {b['nodes']} -> {a['nodes']} nodes, Identity-fed initializers "
            f"{b['identity_fed_initializers']} -> {a['identity_fed_initializers']}, BatchNorms {b['batchnorm']} -> "
            f"{a['batchnorm']}, biases that are not initializers {b['biases_not_initializers']} -> "
            f"{a['biases_not_initializers']}; max |logit diff| vs the original {record['max_abs_logit_diff']:.2g}")
