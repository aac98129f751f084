"""Which backend and which artifact run a package here, and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from fakedet.errors import BackendUnavailable
from fakedet.manifest import Artifact
from fakedet.package import ModelPackage

BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
PRECISION_OF_KIND = {"onnx-fp32": "fp32", "onnx-fp16": "fp16", "onnx-int8-qdq": "int8"}


@dataclass
class Choice:
    backend: str
    artifact: Artifact
    reason: str
    considered: list[str] = field(default_factory=list)

    @property
    def precision(self) -> str:
        if self.artifact.kind == "trt-plan":
            return self.artifact.attrs.get("precision", "?")
        return PRECISION_OF_KIND.get(self.artifact.kind, "?")


def _ort_providers() -> set[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return set()
    return set(ort.get_available_providers())


def onnx_for(pkg: ModelPackage, precision: str) -> Artifact | None:
    for kind, prec in PRECISION_OF_KIND.items():
        if prec == precision:
            art = pkg.manifest.artifact(kind)
            if art is not None:
                return art
    return None


def _runnable_hint(pkg: ModelPackage) -> str:
    have = ", ".join(f"{a.file} ({a.kind})" for a in pkg.manifest.artifacts) or "no artifacts"
    return (
        f"the package has {have}. To make it runnable: export an ONNX model into it "
        f"(fakedet export), calibrate an INT8 one (fakedet calibrate {pkg.source}), "
        f"or build a TensorRT plan on this GPU (fakedet build {pkg.source} --precision fp16)"
    )


def choose(pkg: ModelPackage, backend: str = "auto", precision: str = "auto") -> Choice:
    """Pick backend and artifact. Explicit choices are honoured or refused with the
    reason; `auto` takes the fastest that can run here."""
    from . import tensorrt_support

    providers = _ort_providers()
    considered: list[str] = []

    if backend not in ("auto",) + BACKENDS:
        raise BackendUnavailable(f"unknown backend '{backend}' (known: auto, {', '.join(BACKENDS)})")
    if precision not in ("auto",) + PRECISIONS:
        raise BackendUnavailable(f"unknown precision '{precision}' (known: auto, {', '.join(PRECISIONS)})")

    def ort_choice(name: str, precs: list[str], why: str) -> Choice | None:
        for prec in precs:
            art = onnx_for(pkg, prec)
            if art is not None:
                return Choice(name, art, f"{why}; {prec} ONNX '{art.file}'", considered)
        considered.append(f"{name}: no ONNX artifact of precision {'/'.join(precs)}")
        return None

    want = [precision] if precision != "auto" else None

    # TensorRT plan for this GPU and TensorRT version
    if backend in ("auto", "tensorrt"):
        plan, why = tensorrt_support.matching_plan(pkg, precision)
        if plan is not None:
            return Choice("tensorrt", plan, why, considered)
        considered.append(f"tensorrt: {why}")
        if backend == "tensorrt":
            raise BackendUnavailable(f"tensorrt: {why}; {_runnable_hint(pkg)}")

    gpu_precs = want or ["fp16", "int8", "fp32"]
    if backend in ("auto", "ort-trt"):
        if "TensorrtExecutionProvider" in providers:
            c = ort_choice("ort-trt", gpu_precs, "ONNX Runtime has the TensorRT execution provider")
            if c:
                return c
        else:
            considered.append("ort-trt: ONNX Runtime here has no TensorrtExecutionProvider")
        if backend == "ort-trt":
            raise BackendUnavailable(f"ort-trt: {considered[-1].split(': ', 1)[1]}; {_runnable_hint(pkg)}")

    if backend in ("auto", "ort-cuda"):
        if "CUDAExecutionProvider" in providers:
            c = ort_choice("ort-cuda", want or ["fp16", "fp32"], "ONNX Runtime has the CUDA execution provider")
            if c:
                return c
        else:
            considered.append("ort-cuda: ONNX Runtime here has no CUDAExecutionProvider")
        if backend == "ort-cuda":
            raise BackendUnavailable(f"ort-cuda: {considered[-1].split(': ', 1)[1]}; {_runnable_hint(pkg)}")

    # CPU: INT8 (QDQ, calibrated and accuracy-guarded) is fastest, then FP32; FP16 is slow on CPUs.
    c = ort_choice("ort-cpu", want or ["int8", "fp32", "fp16"], "CPU execution with ONNX Runtime")
    if c:
        return c
    raise BackendUnavailable(f"no backend can run this package here ({'; '.join(considered)}); {_runnable_hint(pkg)}")


def make_backend(choice: Choice, pkg: ModelPackage, **options):
    path = pkg.path_of(choice.artifact)
    if choice.backend == "tensorrt":
        from .backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, **options)
    from .backends.onnxruntime_backend import OnnxRuntimeBackend

    if choice.backend == "ort-trt" and choice.precision == "fp16":
        options.setdefault("fp16", True)
    options.setdefault("cache_dir", str(pkg.root / ".cache" / "ort-trt") if pkg.source.is_dir() else None)
    return OnnxRuntimeBackend(path, provider_set=choice.backend, **options)
