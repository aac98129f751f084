"""torch -> ONNX: dynamic axes from the input spec, the exporter that works for the
architecture, onnxslim simplification, onnx.checker and shape inference.

Exporters:
  legacy  TorchScript-based torch.onnx.export. PyTorch's fused "fast path" of
          nn.MultiheadAttention (taken in eval mode under no_grad, as open_clip ViTs
          do) traces to aten::_native_multi_head_attention, which has no ONNX
          symbolic; we switch the fast path off for the export, so the attention is
          traced as plain matmul/softmax ops.
  dynamo  torch.export-based exporter (onnxscript); the fallback when legacy fails.
  auto    legacy, then dynamo if legacy raises.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from fakedet.errors import FakedetError, first_line
from fakedet.manifest import InputSpec

from .captions import NO_TEXT

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "legacy", "dynamo")
DEFAULT_OPSET = 17
OUTPUT_NAME = "logit"
EVIDENCE_AXES = {0: "batch", 2: "evidence_height", 3: "evidence_width"}  # the optional second output


class ExportError(FakedetError):
    """The model could not be converted to a valid ONNX graph."""


@dataclass
class OnnxExportInfo:
    exporter: str
    opset: int
    simplified: bool
    notes: list[str]


def dynamic_dims(spec: InputSpec) -> dict[int, str]:
    """Input axis index -> symbolic name, from the spec's dynamic axes (batch always)."""
    names = set(spec.dynamic_axes) | {"batch"}
    if spec.preprocess.policy == "whole-image":
        names |= {"height", "width"}
    h_axis, w_axis = spec.hw_axes()
    axes = {0: "batch"}
    if "height" in names:
        axes[h_axis] = "height"
    if "width" in names:
        axes[w_axis] = "width"
    return axes


def example_input_shape(spec: InputSpec, batch: int, whole_image_size: tuple[int, int]) -> tuple[int, ...]:
    hw = whole_image_size if spec.preprocess.policy == "whole-image" else None
    return spec.tensor_shape(batch, hw)


@contextlib.contextmanager
def mha_fastpath_disabled():
    """Switch off nn.MultiheadAttention's fused inference kernel for the duration."""
    import torch

    backend = getattr(torch.backends, "mha", None)
    if backend is None or not hasattr(backend, "set_fastpath_enabled"):
        yield
        return
    before = backend.get_fastpath_enabled()
    backend.set_fastpath_enabled(False)
    try:
        yield
    finally:
        backend.set_fastpath_enabled(before)


def _legacy_export(model, samples, path: Path, spec: InputSpec, opset: int, text, outputs: list[str]) -> None:
    import torch

    names = [spec.name] + text.input_names()
    axes = {spec.name: dynamic_dims(spec), OUTPUT_NAME: {0: "batch"}}
    axes.update({name: EVIDENCE_AXES for name in outputs[1:]})
    axes.update(text.legacy_axes())
    with mha_fastpath_disabled(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, samples, str(path),
            dynamo=False,
            input_names=names, output_names=outputs,
            dynamic_axes=axes,
            opset_version=opset, do_constant_folding=True,
        )


def _dynamo_export(model, samples, path: Path, spec: InputSpec, opset: int, text, outputs: list[str]) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    dims = {i: batch if name == "batch" else torch.export.Dim(name, min=16, max=8192)
            for i, name in dynamic_dims(spec).items()}
    shapes = (dims,) + text.dynamo_shapes(batch)
    names = [spec.name] + text.input_names()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, samples, dynamo=True, input_names=names, output_names=outputs,
            dynamic_shapes=shapes, opset_version=opset, verbose=False,
        )
        program.save(str(path), external_data=False)


def export_onnx(model, spec: InputSpec, path: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "auto",
                whole_image_size: tuple[int, int] = (64, 64), simplify: bool = True,
                text=NO_TEXT, extra_outputs: tuple[str, ...] = ()):
    """Export `model` to `path` (an ONNX file) and return (onnx.ModelProto, OnnxExportInfo).
    The file at `path` is a working file: the caller saves the final model where it belongs.
    `text`: captions.GraphText for a caption-aware model taking (image, token ids), whose
    second input is the token ids, traced on its first 2 rows; NO_TEXT (its null twin) for an
    image-only one. `extra_outputs`: names of
    the outputs the model returns after the logit (an evidence map: N x 1 x h x w)."""
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter '{exporter}' (known: {', '.join(EXPORTERS)})")
    path = Path(path)
    model = model.eval()
    samples = (torch.randn(*example_input_shape(spec, 2, whole_image_size)),) + text.trace_args()
    order = ["legacy", "dynamo"] if exporter == "auto" else [exporter]
    notes: list[str] = []
    used = None
    for name in order:
        try:
            (_legacy_export if name == "legacy" else _dynamo_export)(model, samples, path, spec, opset, text,
                                                                   [OUTPUT_NAME, *extra_outputs])
            used = name
            break
        except Exception as e:
            notes.append(f"{name} exporter failed: {type(e).__name__}: {first_line(e, 300)}")
            log.warning(notes[-1])
    if used is None:
        raise ExportError(f"no exporter could convert the model to ONNX ({'; '.join(notes)})")

    proto = onnx.load(str(path))
    simplified = False
    if simplify:
        try:
            import onnxslim

            # onnxslim's own (symbolic) shape inference re-serialises the whole model once per
            # node type: minutes on a ViT. We run onnx shape inference once, below, instead.
            proto = onnxslim.slim(proto, no_shape_infer=True)
            simplified = True
        except Exception as e:  # simplification is an optimisation: keep the valid unsimplified graph
            notes.append(f"onnxslim failed, graph kept unsimplified: {first_line(e, 300)}")
            log.warning(notes[-1])
    proto = check_and_infer(proto)
    actual = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset)
    if actual != opset:
        notes.append(f"the {used} exporter wrote opset {actual} (asked: {opset})")
    return proto, OnnxExportInfo(used, actual, simplified, notes)


def check_and_infer(proto):
    """onnx.checker (full) and shape inference; raise ExportError naming the problem."""
    import onnx

    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ExportError(f"the exported ONNX graph is invalid: {first_line(e, 300)}") from None
    return proto
