"""Which backend and which artifact run a package here, and why.

`auto` order (fastest first): a TensorRT plan built for this GPU and TensorRT version,
else ONNX Runtime's TensorRT EP, else its CUDA EP, else the CPU (INT8 QDQ if the
package has one, then FP32). Every step it skips is recorded in `Choice.considered`,
so `fakedet info` and `fakedet bench` can say why.

Rules are pure given the environment: tests pass `providers=` (ONNX Runtime's
execution providers) and `trt_env=` (a tensorrt_support.TrtEnvironment) instead of
probing the machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fakedet.errors import BackendError, BackendUnavailable
from fakedet.manifest import Artifact
from fakedet.package import ModelPackage

from .backends import registry
from .cpu_tier import describe, int8_cpu_verdict

log = logging.getLogger("fakedet.runtime")

BACKENDS = registry.artifact_backends()  # chosen here from the package's artifacts
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
        if self.artifact.kind in PRECISION_OF_KIND:
            return PRECISION_OF_KIND[self.artifact.kind]
        return self.artifact.attrs.get("precision", "?")  # plans, and what plugin backends run


def ort_providers() -> set[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return set()
    return set(ort.get_available_providers())


TARGET_OF_BACKEND = {"ort-cpu": "ort-cpu", "ort-cuda": "tensorrt", "ort-trt": "tensorrt", "tensorrt": "tensorrt"}


def onnx_for(pkg: ModelPackage, precision: str, target: str | None = None) -> Artifact | None:
    """The package's ONNX for `precision`. For int8, `target` ("ort-cpu" or "tensorrt", or a
    backend name) picks the QDQ flavour made for it, else the other one; None: the first."""
    target = TARGET_OF_BACKEND.get(target, target)
    for kind, prec in PRECISION_OF_KIND.items():
        if prec != precision:
            continue
        arts = pkg.manifest.artifacts_of(kind)
        if target is not None and kind == "onnx-int8-qdq":
            arts = sorted(arts, key=lambda a: a.int8_target != target)  # stable: the matching one first
        if arts:
            return arts[0]
    return None


def runnable_hint(pkg: ModelPackage, backend: str = "auto", precision: str = "auto") -> str:
    """What the package has, and the command that would give it what is missing."""
    have = ", ".join(f"{a.file} ({a.kind}{', ' + a.attrs['precision'] if a.kind == 'trt-plan' and 'precision' in a.attrs else ''})"
                     for a in pkg.manifest.artifacts) or "no artifacts"
    src = pkg.source
    fixes = []
    if backend in ("auto", "tensorrt"):
        prec = precision if precision in PRECISIONS else "fp16"
        fixes.append(f"build a TensorRT plan on this device: fakedet build {src} --precision {prec}")
    if precision in ("auto", "int8"):
        fixes.append(f"calibrate an INT8 ONNX: fakedet calibrate {src} --data CALIB_DIR")
    if precision in ("auto", "fp32", "fp16") and backend != "tensorrt":
        fixes.append(f"export the {precision if precision != 'auto' else 'fp32'} ONNX from the checkpoint: "
                     f"fakedet export CHECKPOINT -o {src}")
    return f"the package has {have}. To make it runnable: " + "; or ".join(fixes)


def choose(
    pkg: ModelPackage,
    backend: str = "auto",
    precision: str = "auto",
    *,
    providers=None,
    trt_env=None,
    cpu: dict | None = None,
    **hints,
) -> Choice:
    """Pick backend and artifact. Explicit choices are honoured or refused with the
    reason and what would make the package runnable; `auto` takes the fastest that can
    run here. `providers` / `trt_env` / `cpu` (a cpu_tier.cpu_record()) override the
    probes (tests, `fakedet info`). `hints` go to a plugin backend's own choice
    (torch: checkpoint=DIR)."""
    from . import tensorrt_support

    extra = registry.other_backends()
    if backend not in ("auto",) + BACKENDS + extra:
        raise BackendUnavailable(f"unknown backend '{backend}' (known: auto, {', '.join(BACKENDS + extra)})")
    if precision not in ("auto",) + PRECISIONS:
        raise BackendUnavailable(f"unknown precision '{precision}' (known: auto, {', '.join(PRECISIONS)})")
    if backend in extra:
        return registry.backend_class(backend).choose_for_package(pkg, precision, **hints)
    if hints:
        raise BackendError(f"{backend}: choose() takes no {', '.join(sorted(hints))} (only for {', '.join(extra)})")
    considered: list[str] = []
    want = [precision] if precision != "auto" else None

    def provs() -> set[str]:
        nonlocal providers
        if providers is None:
            providers = ort_providers()
        return set(providers)

    def refuse(name: str, why: str, package_can_fix: bool = True):
        hint = f"; {runnable_hint(pkg, name, precision)}" if package_can_fix else ""
        raise BackendUnavailable(f"{name}: {why}{hint}")

    def ort_choice(name: str, precs: list[str], why: str) -> tuple[Choice | None, str]:
        """(the choice, "") or (None, why not); a why-not is also noted in `considered`."""
        for prec in precs:
            art = onnx_for(pkg, prec, target=name)
            if art is not None:
                return Choice(name, art, f"{why}; {prec} ONNX '{art.file}'", considered), ""
        why_not = f"the package has no {'/'.join(precs)} ONNX"
        considered.append(f"{name}: {why_not}")
        return None, why_not

    # 1. A TensorRT plan for this GPU and TensorRT version.
    if backend in ("auto", "tensorrt") and pkg.manifest.takes_captions:
        why = "the native TensorRT backend runs one-input models; a caption-aware package runs on ort-trt"
        considered.append(f"tensorrt: {why}")
        if backend == "tensorrt":
            refuse("tensorrt", why, package_can_fix=False)
    elif backend in ("auto", "tensorrt"):
        plan, why = tensorrt_support.matching_plan(pkg, precision, env=trt_env)
        if plan is not None:
            return Choice("tensorrt", plan, why, considered)
        considered.append(f"tensorrt: {why}")
        if backend == "tensorrt":
            refuse("tensorrt", why)

    # 2./3. ONNX Runtime on the GPU.
    for name, provider, precs in (
        ("ort-trt", "TensorrtExecutionProvider", want or ["int8", "fp16", "fp32"]),
        ("ort-cuda", "CUDAExecutionProvider", want or ["fp16", "fp32"]),
    ):
        if backend not in ("auto", name):
            continue
        has_provider = provider in provs()
        if has_provider:
            c, why_not = ort_choice(name, precs, f"ONNX Runtime has the {provider}")
            if c:
                return c
        else:
            why_not = f"ONNX Runtime here has no {provider} (pip install onnxruntime-gpu)"
            considered.append(f"{name}: {why_not}")
        if backend == name:  # a missing provider is this machine's to fix, not the package's
            refuse(name, why_not, package_can_fix=has_provider)

    # 4. CPU: INT8 (QDQ, calibrated and accuracy-guarded) is usually fastest, then FP32; FP16 is
    # slow on CPUs. Not every network gains from INT8 on every CPU (ViTs often do not): where
    # calibration measured INT8 slower than FP32 on the CPU, FP32 goes first.
    cpu_order = ["int8", "fp32", "fp16"]
    int8 = onnx_for(pkg, "int8", target="ort-cpu")
    speedup = int8.attrs.get("cpu_speedup") if int8 is not None else None
    if want is None and isinstance(speedup, (int, float)) and speedup < 1.0:
        cpu_order = ["fp32", "int8", "fp16"]
        considered.append(f"ort-cpu int8: ran at {speedup:.2f}x FP32's throughput when calibrated "
                          f"({int8.attrs.get('cpu_speedup_measured_on', 'the calibrating CPU')}); FP32 first")
    # INT8 kernels differ by CPU tier: the guard's figures hold here only if the artifact is
    # tier-proof or was validated on this tier (cpu_tier.int8_cpu_verdict)
    tier_ok, tier_why = True, ""
    if int8 is not None and "int8" in (want or cpu_order):
        tier_ok, tier_why = int8_cpu_verdict(int8.attrs, cpu)
    if not tier_ok and want is None:
        cpu_order = ["fp32", "int8", "fp16"]
        considered.append(f"ort-cpu int8 '{int8.file}': {tier_why}; FP32 first (--precision int8 runs it anyway)")
    c, why_not = ort_choice("ort-cpu", want or cpu_order, "CPU execution with ONNX Runtime")
    if c:
        if c.precision == "int8" and tier_why:
            c.reason += f" ({tier_why})"
            if not tier_ok:
                log.warning("fakedet: INT8 on a CPU tier its accuracy guard did not validate: %s", tier_why)
        return c
    if backend == "ort-cpu":
        refuse("ort-cpu", why_not)
    raise BackendUnavailable(
        f"no backend can run this package here ({'; '.join(considered)}); {runnable_hint(pkg, backend, precision)}"
    )


def explain(pkg: ModelPackage, providers=None, trt_env=None, cpu: dict | None = None) -> list[str]:
    """Lines for `fakedet info`: this machine, each plan's verdict, what auto runs and why."""
    from .cpu_tier import cpu_record
    from .tensorrt_support import detect_environment, plan_runs_here

    env = trt_env if trt_env is not None else detect_environment()
    cpu = cpu or cpu_record()
    lines = []
    if env.usable:
        lines.append(
            f"this machine: TensorRT {env.trt_version}, GPU {env.device_name or '?'} "
            f"(compute capability {env.compute_capability}{', integrated' if env.integrated else ''}"
            f"{f', {env.dla_cores} DLA cores' if env.dla_cores else ''})"
        )
    else:
        lines.append("this machine: " + ("; ".join(env.why_absent) or "no TensorRT"))
    for p in pkg.manifest.artifacts_of("trt-plan"):
        good, why = plan_runs_here(p.attrs, env)
        lines.append(f"plan {p.file} [{p.attrs.get('precision', '?')}, TensorRT {p.attrs.get('trt_version', '?')}, "
                     f"sm {p.attrs.get('compute_capability', '?')}]: {'runs here' if good else 'refused'}: {why}")
    lines.append(f"this CPU: {describe(cpu)}")
    for a in pkg.manifest.artifacts_of("onnx-int8-qdq"):
        if a.int8_target == "ort-cpu":
            ok, why = int8_cpu_verdict(a.attrs, cpu)
            lines.append(f"INT8 CPU artifact {a.file} [{a.attrs.get('weights', '8-bit')} weights]: "
                         f"{'accuracy guard holds here' if ok else 'NOT validated for this CPU'}: {why}")
    try:
        c = choose(pkg, "auto", "auto", trt_env=env, providers=providers, cpu=cpu)
        lines.append(f"auto selects {c.backend} / {c.precision} / {c.artifact.file}: {c.reason}")
        lines.extend(f"  not chosen: {line}" for line in c.considered)
    except Exception as e:  # BackendUnavailable: say it, do not fail `info`
        lines.append(f"auto cannot run this package here: {e}")
    return lines


def make_backend(choice: Choice, pkg: ModelPackage, **options):
    """The backend for a choice, not loaded yet: the file and the options the package
    implies (the backend's `package_inputs`), overridden by `options`; unknown options
    are refused."""
    path, implied = registry.backend_class(choice.backend).package_inputs(pkg, choice)
    return registry.create(choice.backend, path, **{**implied, **options})
