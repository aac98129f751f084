"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedet.errors import BackendUnavailable, PackageError

from .base import Backend, TensorSpec

PROVIDERS = {
    "ort-cpu": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}

_NP_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


class OnnxRuntimeBackend(Backend):
    """Options: threads (intra-op), inter_threads, cache_dir (TensorRT EP engine and
    timing caches), fp16 (TensorRT EP), device_id."""

    def __init__(self, model_path, provider_set: str = "ort-cpu", **options):
        super().__init__(model_path, **options)
        if provider_set not in PROVIDERS:
            raise BackendUnavailable(f"unknown ONNX Runtime provider set '{provider_set}' (known: {', '.join(PROVIDERS)})")
        self.name = provider_set
        self.session = None

    def _provider_list(self) -> list:
        opts = self.options
        out = []
        for p in PROVIDERS[self.name]:
            if p == "TensorrtExecutionProvider":
                cfg = {"device_id": opts.get("device_id", 0), "trt_fp16_enable": bool(opts.get("fp16", False))}
                cache = opts.get("cache_dir")
                if cache:
                    Path(cache).mkdir(parents=True, exist_ok=True)
                    cfg.update(
                        trt_engine_cache_enable=True,
                        trt_engine_cache_path=str(cache),
                        trt_timing_cache_enable=True,
                        trt_timing_cache_path=str(cache),
                    )
                out.append((p, cfg))
            elif p == "CUDAExecutionProvider":
                out.append((p, {"device_id": opts.get("device_id", 0)}))
            else:
                out.append(p)
        return out

    def _activate(self) -> None:
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        missing = [p for p in PROVIDERS[self.name] if p not in have]
        if missing:
            raise BackendUnavailable(
                f"{self.name}: ONNX Runtime here lacks {', '.join(missing)} "
                f"(available: {', '.join(sorted(have))}); install onnxruntime-gpu (pip install 'fakedet[gpu]')"
            )
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.options.get("threads"):
            so.intra_op_num_threads = int(self.options["threads"])
        if self.options.get("inter_threads"):
            so.inter_op_num_threads = int(self.options["inter_threads"])
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.model_path), so, providers=self._provider_list())
        except Exception as e:
            raise PackageError(self.model_path, f"ONNX Runtime cannot load it: {str(e).splitlines()[0][:300]}") from None
        self._in = self.session.get_inputs()[0]
        self._out = self.session.get_outputs()[0]
        self._in_dtype = np.dtype(_NP_DTYPES.get(self._in.type, "float32"))

    @staticmethod
    def _spec(arg) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
        return TensorSpec(arg.name, shape, _NP_DTYPES.get(arg.type, arg.type))

    def _input_spec(self) -> TensorSpec:
        return self._spec(self._in)

    def _output_spec(self) -> TensorSpec:
        return self._spec(self._out)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != self._in_dtype:
            batch = batch.astype(self._in_dtype)
        out = self.session.run([self._out.name], {self._in.name: batch})[0]
        return np.asarray(out, dtype=np.float32)

    def _close(self) -> None:
        self.session = None

    def describe(self) -> str:
        if self.session is not None:
            return f"onnxruntime ({', '.join(self.session.get_providers())})"
        return f"onnxruntime ({self.name})"
