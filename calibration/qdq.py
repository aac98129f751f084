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
  share initializers back into one Q feeding several DQs, and that shape is not fused."""

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


def quantize_qdq(fp32_path: str | Path, amax: dict[str, float], per_channel: bool, out_path: str | Path) -> None:
    """Write the QDQ model for `fp32_path` using the activation ranges `amax`."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData, save_tensors_data

    amax = relu_input_ranges(onnx.load(str(fp32_path)), amax)
    ranges = TensorsData(
        CalibrationMethod.MinMax,
        {
            name: TensorData(lowest=np.array(-a, dtype=np.float32), highest=np.array(a, dtype=np.float32))
            for name, a in amax.items()
        },
    )
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
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "OpTypesToExcludeOutputQuantization": NO_OUTPUT_QDQ,
                    "DedicatedQDQPair": True,
                },
            )
        model = onnx.load(str(raw))
    from .surgery import float_graph_outputs, unshare_qdq_params

    float_graph_outputs(model)
    unshare_qdq_params(model)
    onnx.save(model, str(out_path))


def relu_input_ranges(model, amax: dict[str, float]) -> dict[str, float]:
    """A copy of `amax` where a tensor read only by a ReLU takes that ReLU's output range."""
    users: dict[str, list] = {}
    for n in model.graph.node:
        for t in n.input:
            users.setdefault(t, []).append(n)
    out = dict(amax)
    for n in model.graph.node:
        if n.op_type == "Relu" and n.output[0] in amax and n.input[0] in amax and len(users[n.input[0]]) == 1:
            out[n.input[0]] = amax[n.output[0]]
    return out
