"""QDQ INT8 ONNX with TensorRT-compatible placement, made by ONNX Runtime's quantize_static
from ranges computed beforehand (so the same ranges feed the QDQ model and the TensorRT
cache): symmetric int8 activations and weights, zero-point 0, per-channel weights.

Placement: Q/DQ on the inputs and outputs of convolutions, ReLUs, pools, residual adds and
concats, none on the model's outputs (the logit is never rounded to 8 bits). Two details
decide whether ONNX Runtime's CPU provider really runs INT8 kernels (checked on the
session's optimized graph of a ResNet-50: with neither, 20 of 53 convolutions and 12 of 16
adds stayed float):
- a convolution becomes QLinearConv only when a QuantizeLinear reads its output directly,
  so a Conv -> ReLU pair gets Q/DQ between the two. The conv output is quantized with the
  ReLU *output's* range (negatives are clipped where ReLU would zero them anyway), so the
  ReLU's own Q/DQ re-quantizes losslessly: one rounding, as with a fused conv+relu.
  TensorRT commutes Q/DQ with ReLU and still fuses conv+relu.
- every consumer of a quantized tensor gets its own Q/DQ pair with its own scale and
  zero-point initializers; ORT's common-subexpression elimination merges Q nodes that
  share initializers back into one Q feeding several DQs, and that shape is not fused.

A second flavour for ONNX Runtime on CPUs (`activations="uint8"`, ORT's U8S8 QDQ format)
is made from the *same* symmetric ranges: a tensor that is non-negative by construction
(a ReLU output, and pools/adds/concats/reshapes of only such tensors) is quantized on
[0, amax] with uint8 zero-point 0, the others on [-amax, amax] (zero-point 128). With the
zero-point at the type minimum ORT folds every ReLU into the quantizer and fuses the whole
backbone into QLinearConv/QLinearAdd; symmetric int8 (TensorRT's form) cannot allow that.
There ORT's quantizer already drops those ReLUs, so a residual Add's output feeds the next
blocks directly: it must carry ONE Q (shared by several DQs) or ORT leaves the Add in float
(15 of 16 in a ResNet-50), hence no dedicated Q/DQ pairs in this flavour.

The CPU flavour's weights are 7-bit ([-64, 64], ORT's reduce_range): on x86 without VNNI
ORT's u8 x s8 kernels (vpmaddubsw) saturate with 8-bit weights, so the artifact's accuracy
would depend on the CPU tier; with 7-bit weights the kernels compute the exact quantization
arithmetic on every tier (benchmarks/int8_cpu_tiers.py, benchmarks/calibration_int8.py)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np

QUANTIZED_OPS = [
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Concat",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Transpose",
    "Resize", "Pad", "Slice", "Split", "Squeeze", "Unsqueeze", "Gather", "Softmax", "Relu",
]  # fmt: skip
NO_OUTPUT_QDQ = ["Gemm", "MatMul"]
FLOAT_TYPES = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


@contextlib.contextmanager
def _quiet_ort_logging():
    """quantize_static logs 'consider pre-processing' warnings through the root logger."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(old)


ACTIVATIONS = ("int8", "uint8")
# Weight forms. On x86 without VNNI, ONNX Runtime's fused u8 x s8 kernels multiply with
# vpmaddubsw, whose int16 pair sums saturate (255*127*2 > 32767): the result then depends on
# the CPU's instruction tier. 7-bit weights ([-64, 64], ORT's reduce_range) cannot saturate
# (255*64*2 = 32640); uint8 weights take the u8u8 kernels, exact on every tier but slower.
WEIGHTS = ("int8", "int8-7bit", "uint8")
NONNEG_PRODUCERS = {"Relu"}
NONNEG_IF_INPUTS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape",
                    "Transpose", "Squeeze", "Unsqueeze", "Identity", "Add", "Concat", "Resize", "Slice"}  # fmt: skip


def nonnegative_tensors(model) -> set[str]:
    """Tensors that cannot be negative by construction (graph order is topological)."""
    inits = {i.name for i in model.graph.initializer}
    out: set[str] = set()
    for n in model.graph.node:
        data = [t for t in n.input if t] if n.op_type in ("Add", "Concat") else [t for t in n.input[:1] if t]
        if n.op_type in NONNEG_PRODUCERS or (
            n.op_type in NONNEG_IF_INPUTS and data and all(t in out and t not in inits for t in data)
        ):
            out.update(t for t in n.output[:1] if t)
    return out


def nonfinite_constant_readers(model) -> dict[str, str]:
    """{node name: initializer} for nodes that read a float initializer holding infinities or
    NaNs (an attention mask's -inf): ORT would quantize it as a weight to a NaN scale, so
    those nodes stay in float."""
    from onnx import numpy_helper

    bad = set()
    for init in model.graph.initializer:
        if init.data_type in FLOAT_TYPES:
            a = numpy_helper.to_array(init)
            if not np.isfinite(a).all():
                bad.add(init.name)
    return {n.name: t for n in model.graph.node for t in n.input if t in bad}


def quantize_qdq(
    fp32_path: str | Path,
    amax: dict[str, float],
    per_channel: bool,
    out_path: str | Path,
    activations: str = "int8",
    weights: str | None = None,
    float_nodes=(),
):
    """Write the QDQ model for `fp32_path` using the activation ranges `amax`: symmetric
    int8 activations (TensorRT) or asymmetric uint8 ones (ONNX Runtime CPU), and symmetric
    `weights` (one of WEIGHTS; default int8 for TensorRT, int8-7bit with uint8 activations,
    the tier-proof CPU form). `float_nodes` (names), and nodes reading a non-finite constant,
    compute in float on float inputs and weights; their outputs are quantized only for
    quantized readers. Returns it (the ModelProto saved to `out_path`)."""
    if weights is None:
        weights = "int8-7bit" if activations == "uint8" else "int8"
    if activations not in ACTIVATIONS:
        raise ValueError(f"unknown activation type '{activations}' (known: {', '.join(ACTIVATIONS)})")
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weight form '{weights}' (known: {', '.join(WEIGHTS)})")
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    fp32 = onnx.load(str(fp32_path))
    float_nodes = [*float_nodes, *(n for n in nonfinite_constant_readers(fp32) if n not in set(float_nodes))]
    amax, moved = relu_input_ranges(fp32, amax)
    nonneg: set[str] = set()
    if activations == "uint8":
        # a conv output read only by a ReLU takes the ReLU's range, floor included
        nonneg = nonnegative_tensors(fp32) | moved
    ranges = TensorsData(
        CalibrationMethod.MinMax,
        {
            name: TensorData(
                lowest=np.array(0.0 if name in nonneg else -a, dtype=np.float32), highest=np.array(a, dtype=np.float32)
            )
            for name, a in amax.items()
        },
    )
    qtype = QuantType.QInt8 if activations == "int8" else QuantType.QUInt8
    with tempfile.TemporaryDirectory(prefix="fakedet-qdq-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(ranges, cache)
        raw = Path(tmp) / "qdq.onnx"
        with _quiet_ort_logging():
            quantize_static(
                str(fp32_path),
                str(raw),
                calibration_data_reader=None,
                calibration_cache_path=str(cache),
                calibrate_method=CalibrationMethod.MinMax,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=QUANTIZED_OPS,
                nodes_to_exclude=list(float_nodes) or None,
                per_channel=per_channel,
                activation_type=qtype,
                weight_type=QuantType.QUInt8 if weights == "uint8" else QuantType.QInt8,
                reduce_range=weights == "int8-7bit",
                extra_options={
                    "ActivationSymmetric": activations == "int8",
                    "WeightSymmetric": True,
                    "OpTypesToExcludeOutputQuantization": NO_OUTPUT_QDQ,
                    "DedicatedQDQPair": activations == "int8",
                },
            )
        model = onnx.load(str(raw))
    from .surgery import float_graph_outputs, read_float_inputs, unshare_qdq_params

    if float_nodes:
        read_float_inputs(model, fp32, float_nodes)
    float_graph_outputs(model)
    if activations == "int8":
        unshare_qdq_params(model)
    onnx.save(model, str(out_path))
    return model


def relu_input_ranges(model, amax: dict[str, float]) -> tuple[dict[str, float], set[str]]:
    """(a copy of `amax` where a tensor read only by a ReLU takes that ReLU's output range,
    the set of those tensors)."""
    from fakedet.onnx_graph import consumers

    users = consumers(model.graph)
    out = dict(amax)
    moved = set()
    for n in model.graph.node:
        if n.op_type == "Relu" and n.output[0] in amax and n.input[0] in amax and len(users[n.input[0]]) == 1:
            out[n.input[0]] = amax[n.output[0]]
            moved.add(n.input[0])
    return out, moved
