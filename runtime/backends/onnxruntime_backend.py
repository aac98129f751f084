"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers.

CPU: intra/inter-op thread counts (`threads`, `inter_threads`), optional spin-wait off
(`spin=False`, kinder to shared cores). GPU (ort-cuda, ort-trt): IO binding, so the
input is copied to the GPU once and the output stays there until fetched; that also
lets `infer_timed` separate H2D, compute and D2H. TensorRT EP: engine and timing caches
in `cache_dir` (the package's `.cache/ort-trt/`), FP16/INT8 flags from the artifact.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fakedet.errors import BackendUnavailable, PackageError, first_line


from ..ort_session import session_options
from ..stoppable import call_stoppably, ort_run_options
from .base import Backend, TensorSpec
from .registry import BUILTIN

# provider set (a registry record's name) -> ONNX Runtime providers, in priority order
PROVIDERS = {e.name: list(e.providers) for e in BUILTIN.values() if e.providers}

_NP_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}


def provider_options(provider_set: str, options: dict) -> list:
    """The `providers=` list for InferenceSession (pure: no ORT import, no filesystem)."""
    if provider_set not in PROVIDERS:
        raise BackendUnavailable(f"unknown ONNX Runtime provider set '{provider_set}' (known: {', '.join(PROVIDERS)})")
    dev = int(options.get("device_id", 0))
    out = []
    for p in PROVIDERS[provider_set]:
        if p == "TensorrtExecutionProvider":
            cfg = {
                "device_id": dev,
                "trt_fp16_enable": bool(options.get("fp16", False)),
                "trt_int8_enable": bool(options.get("int8", False)),  # QDQ models: explicit quantization
            }
            cache = options.get("cache_dir")
            if cache:
                cfg.update(
                    trt_engine_cache_enable=True,
                    trt_engine_cache_path=str(cache),
                    trt_timing_cache_enable=True,
                    trt_timing_cache_path=str(cache),
                )
            if options.get("workspace_bytes"):
                cfg["trt_max_workspace_size"] = int(options["workspace_bytes"])
            out.append((p, cfg))
        elif p == "CUDAExecutionProvider":
            out.append((p, {"device_id": dev}))
        else:
            out.append(p)
    return out


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on one provider set (`provider_set`: ort-cpu, ort-cuda, ort-trt)."""

    OPTIONS = {
        "threads": "intra-op threads",
        "inter_threads": "inter-op threads (parallel execution mode)",
        "spin": "False: no spin-waiting between ops (kinder to shared cores)",
        "cache_dir": "TensorRT EP: folder of its engine and timing caches",
        "fp16": "TensorRT EP: allow FP16 kernels",
        "int8": "TensorRT EP: run the QDQ model in INT8",
        "workspace_bytes": "TensorRT EP: builder workspace limit",
        "device_id": "GPU index (ort-cuda, ort-trt)",
        "io_binding": "bind inputs and outputs to the device (default: on for the GPU sets, off for ort-cpu)",
        "cpu_arena": "False: no ONNX Runtime CPU memory arena (set for whole-image packages, whose memory "
                     "per call follows the image size)",
        "disabled_optimizers": "graph transformers to skip (the export records NchwcTransformer for fp16 "
                               "ViTs, which crash ORT's CPU build)",
    }

    def __init__(self, model_path, provider_set: str = "ort-cpu", **options):
        if provider_set not in PROVIDERS:
            raise BackendUnavailable(f"unknown ONNX Runtime provider set '{provider_set}' (known: {', '.join(PROVIDERS)})")
        self.name = provider_set
        super().__init__(model_path, **options)
        self.session = None

    @classmethod
    def package_inputs(cls, pkg, choice) -> tuple[object, dict]:
        path, opts = super().package_inputs(pkg, choice)
        attrs = choice.artifact.attrs
        if choice.backend == "ort-cpu" and pkg.manifest.input.preprocess.policy == "whole-image":
            # Each image size allocates anew: an arena would keep the largest image's memory
            # for good (a 4000x4000 image: gigabytes); without it the memory goes back after.
            opts["cpu_arena"] = False
        if choice.backend == "ort-cpu" and attrs.get("ort_cpu_disabled_optimizers"):
            opts["disabled_optimizers"] = attrs["ort_cpu_disabled_optimizers"]
        if "TensorrtExecutionProvider" in PROVIDERS[choice.backend]:
            opts.update(fp16=choice.precision == "fp16", int8=choice.precision == "int8")
            if pkg.source.is_dir():
                opts["cache_dir"] = str(pkg.root / ".cache" / choice.backend)
        return path, opts

    def session_options(self):
        o = self.options
        so = session_options(threads=o.get("threads"), inter_threads=o.get("inter_threads"), spin=o.get("spin"))
        if self.options.get("cpu_arena") is False:
            so.enable_cpu_mem_arena = False
        return so

    def _open(self) -> None:
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        missing = [p for p in PROVIDERS[self.name] if p not in have]
        if missing:
            raise BackendUnavailable(
                f"{self.name}: ONNX Runtime here lacks {', '.join(missing)} "
                f"(available: {', '.join(sorted(have))}); install onnxruntime-gpu (pip install 'fakedet[gpu]')"
            )
        if self.options.get("cache_dir"):
            Path(self.options["cache_dir"]).mkdir(parents=True, exist_ok=True)
        try:
            extra = {}
            if self.options.get("disabled_optimizers"):
                extra["disabled_optimizers"] = list(self.options["disabled_optimizers"])
            self.session = ort.InferenceSession(
                str(self.model_path), self.session_options(), providers=provider_options(self.name, self.options), **extra
            )
        except Exception as e:
            raise PackageError(self.model_path, f"ONNX Runtime cannot load it: {first_line(e, 300)}") from e
        self._ins = self.session.get_inputs()
        self._in = self._ins[0]
        self._out = self.session.get_outputs()[0]
        # IO binding: on by default for the GPU sets; on ort-cpu only when asked, binding
        # to host memory (the same code path, so the CPU test suite exercises it).
        on_gpu = BUILTIN[self.name].on_gpu
        self._bind_device = ("cuda" if on_gpu else "cpu") if self.options.get("io_binding", on_gpu) else None
        self._device_id = int(self.options.get("device_id", 0))

    @staticmethod
    def _spec(arg) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else None for d in arg.shape)
        return TensorSpec(arg.name, shape, _NP_DTYPES.get(arg.type, arg.type))

    def _input_spec(self) -> TensorSpec:
        return self._spec(self._in)

    def _input_specs(self) -> list[TensorSpec]:
        return [self._spec(i) for i in self._ins]

    def _output_spec(self) -> TensorSpec:
        return self._spec(self._out)

    def _run(self, batch):
        """On the CPU there is no H2D/D2H: the base times the whole run as compute. With IO
        binding each step is timed on the host around ORT's synchronous copy / run / copy."""
        feed = batch if isinstance(batch, dict) else {self._in.name: batch}
        with ort_run_options() as ro:
            if not self._bind_device:
                return call_stoppably(self.session.run, [self._out.name], feed, ro)[0]
            return self._run_bound(feed, ro)

    def _run_bound(self, feed: dict, ro):
        import onnxruntime as ort

        t0 = time.perf_counter()
        xs = {k: ort.OrtValue.ortvalue_from_numpy(v, self._bind_device, self._device_id) for k, v in feed.items()}
        t1 = time.perf_counter()
        binding = self.session.io_binding()
        for k, x in xs.items():
            binding.bind_ortvalue_input(k, x)
        binding.bind_output(self._out.name, self._bind_device, self._device_id)
        call_stoppably(self.session.run_with_iobinding, binding, ro)
        t2 = time.perf_counter()
        out = binding.get_outputs()[0].numpy()
        t3 = time.perf_counter()
        return out, {"h2d": (t1 - t0) * 1e3, "compute": (t2 - t1) * 1e3, "d2h": (t3 - t2) * 1e3}

    def _close(self) -> None:
        self.session = None

    def describe(self) -> str:
        if self.session is not None:
            return f"onnxruntime {_ort_version()} ({', '.join(self.session.get_providers())})"
        return f"onnxruntime ({self.name})"


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__
