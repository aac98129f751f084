"""ONNX Runtime CPU sessions, configured in one place for every stage that runs a model
on the CPU outside a backend: calibration's guard and ranges, export's parity check, the
CPU-tier probe. The backend builds its options here too.

`optimization`: "all" is how the runtime runs a model (ORT's fused kernels: for a QDQ
model, its INT8 kernels, whose results differ by CPU tier); "none" evaluates every
QuantizeLinear/DequantizeLinear as written with float ops between them, i.e. the exact
quantization arithmetic."""

from __future__ import annotations

LEVELS = ("all", "extended", "basic", "none")


def session_options(*, threads: int | None = None, inter_threads: int | None = None, spin: bool | None = None,
                    optimization: str = "all"):
    import onnxruntime as ort

    if optimization not in LEVELS:
        raise ValueError(f"optimization must be one of {', '.join(LEVELS)}, got '{optimization}'")
    level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
             "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    so = ort.SessionOptions()
    so.graph_optimization_level = level[optimization]
    if threads:
        so.intra_op_num_threads = int(threads)
    if inter_threads:
        so.inter_op_num_threads = int(inter_threads)
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if spin is False:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def model_source(model):
    """What InferenceSession takes: a path as str, serialized bytes as they are, or an
    in-memory onnx.ModelProto serialized."""
    if isinstance(model, (str, bytes)):
        return model
    if hasattr(model, "__fspath__"):
        return str(model)
    return model.SerializeToString()


def cpu_session(model, *, threads: int | None = None, optimization: str = "all", disabled_optimizers=()):
    """An ORT CPU session for a path, serialized bytes or an onnx.ModelProto."""
    import onnxruntime as ort

    return ort.InferenceSession(model_source(model), session_options(threads=threads, optimization=optimization),
                                providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled_optimizers) or None)
