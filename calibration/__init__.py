"""fakedet.calibration: INT8 that keeps its accuracy, for every TensorRT generation.

calibration set (runtime preprocessing, stratified, digested) -> ranges (ONNX Runtime
calibrators; MSE by hand) -> QDQ INT8 ONNX (quantize_static, TensorRT-compatible placement)
and a TensorRT native calibration cache -> accuracy guard with per-layer sensitivity and a
mixed-precision fallback -> artifacts added to the package atomically, keyed against
stale reuse. Imports the runtime, onnx and onnxruntime; never torch."""

from .pipeline import Options, Result, calibrate

__all__ = ["Options", "Result", "calibrate"]
