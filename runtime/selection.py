"""Which backend and which artifact run a package here, and why.

`auto` order (fastest first): a TensorRT plan built for this GPU and TensorRT version,
else ONNX Runtime's TensorRT EP, else its CUDA EP, else the CPU (INT8 QDQ if the
package has one, then FP32). `choose` is a loop over the backends' records
(backends/registry.py: rank, what each runs, its providers and precisions); every step
it skips is recorded in `Choice.considered`, so `fakedet info` and `fakedet bench` can
say why.

Rules are pure given the environment: tests pass `providers=` (ONNX Runtime's
execution providers) and `trt_env=` (a tensorrt_support.TrtEnvironment) instead of
probing the machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fakedet.errors import BackendError, BackendUnavailable
from fakedet.artifact_kinds import ONNX_INT8_QDQ, PRECISION_OF_KIND, TRT_PLAN
from fakedet.manifest import Artifact
from fakedet.package import ModelPackage

from .backends import registry
from .cpu_tier import describe, int8_cpu_verdict

log = logging.getLogger("fakedet.runtime")

BACKENDS = registry.artifact_backends()  # chosen here from the package's artifacts
PRECISIONS = tuple(PRECISION_OF_KIND.values())  # fp32, fp16, int8: the ONNX kinds in the artifact-kind table


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


def onnx_for(pkg: ModelPackage, precision: str, target: str | None = None) -> Artifact | None:
    """The package's ONNX for `precision`. For int8, `target` ("ort-cpu" or "tensorrt", or a
    backend name) picks the QDQ flavour made for it, else the other one; None: the first."""
    if target in registry.BUILTIN:
        target = registry.BUILTIN[target].int8_target
    for kind, prec in PRECISION_OF_KIND.items():
        if prec != precision:
            continue
        arts = pkg.manifest.artifacts_of(kind)
        if target is not None and kind == ONNX_INT8_QDQ:
            arts = sorted(arts, key=lambda a: a.int8_target != target)  # stable: the matching one first
        if arts:
            return arts[0]
    return None


def runnable_hint(pkg: ModelPackage, backend: str = "auto", precision: str = "auto") -> str:
    """What the package has, and the command that would give it what is missing."""
    have = ", ".join(f"{a.file} ({a.kind}{', ' + a.attrs['precision'] if a.kind == TRT_PLAN and 'precision' in a.attrs else ''})"
                     for a in pkg.manifest.artifacts) or "no artifacts"
    src = pkg.source
    fixes = []
    runs = registry.BUILTIN[backend].runs if backend in registry.BUILTIN else "any"
    if runs in ("any", "plan"):
        prec = precision if precision in PRECISIONS else "fp16"
        fixes.append(f"build a TensorRT plan on this device: fakedet build {src} --precision {prec}")
    if precision in ("auto", "int8"):
        fixes.append(f"calibrate an INT8 ONNX: fakedet calibrate {src} --data CALIB_DIR")
    if precision in ("auto", "fp32", "fp16") and runs != "plan":
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

    extra, known = registry.other_backends(), registry.artifact_backends()
    if backend not in ("auto",) + known + extra:
        raise BackendUnavailable(f"unknown backend '{backend}' (known: auto, {', '.join(known + extra)})")
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

    def ort_choice(rec: registry.Entry, precs: list[str]) -> tuple[Choice | None, str]:
        """(the choice, "") or (None, why not); a why-not is also noted in `considered`."""
        for prec in precs:
            art = onnx_for(pkg, prec, target=rec.name)
            if art is not None:
                return Choice(rec.name, art, f"{rec.reason}; {prec} ONNX '{art.file}'", considered), ""
        why_not = f"the package has no {'/'.join(precs)} ONNX"
        considered.append(f"{rec.name}: {why_not}")
        return None, why_not

    def plan_choice(rec: registry.Entry) -> Choice | None:
        """A TensorRT plan for this GPU and TensorRT version."""
        plan, why = tensorrt_support.matching_plan(pkg, precision, env=trt_env)
        if plan is not None:
            return Choice(rec.name, plan, why, considered)
        considered.append(f"{rec.name}: {why}")
        if backend == rec.name:
            refuse(rec.name, why)
        return None

    def onnx_choice(rec: registry.Entry) -> Choice | None:
        """The package's ONNX on ONNX Runtime with the record's providers."""
        has_provider = rec.needs_provider is None or rec.needs_provider in provs()
        if has_provider:
            order, tier = (want or list(rec.precisions)), None
            if rec.int8_cpu_checks:
                order, tier = _cpu_order(pkg, want, list(rec.precisions), rec.name, cpu, considered)
            c, why_not = ort_choice(rec, order)
            if c:
                if tier is not None and c.precision == "int8" and tier[1]:
                    c.reason += f" ({tier[1]})"
                    if not tier[0]:
                        log.warning("fakedet: INT8 on a CPU tier its accuracy guard did not validate: %s", tier[1])
                return c
        else:
            why_not = f"ONNX Runtime here has no {rec.needs_provider} ({rec.provider_install})"
            considered.append(f"{rec.name}: {why_not}")
        if backend == rec.name:  # a missing provider is this machine's to fix, not the package's
            refuse(rec.name, why_not, package_can_fix=has_provider)
        return None

    # `auto` takes the fastest backend that can run the package here; a named one is
    # honoured or refused with the reason
    for rec in registry.fastest_first():
        if backend not in ("auto", rec.name):
            continue
        if pkg.manifest.takes_captions and rec.no_captions:
            considered.append(f"{rec.name}: {rec.no_captions}")
            if backend == rec.name:
                refuse(rec.name, rec.no_captions, package_can_fix=False)
            continue
        c = plan_choice(rec) if rec.runs == "plan" else onnx_choice(rec)
        if c is not None:
            return c
    raise BackendUnavailable(
        f"no backend can run this package here ({'; '.join(considered)}); {runnable_hint(pkg, backend, precision)}"
    )


def _cpu_order(pkg: ModelPackage, want: list[str] | None, order: list[str], name: str, cpu: dict | None,
               considered: list[str]) -> tuple[list[str], tuple[bool, str]]:
    """(precisions to try, (INT8 verdict for this CPU, why)). INT8 (QDQ, calibrated and
    accuracy-guarded) is usually fastest on a CPU, then FP32; FP16 is slow on CPUs. Not every
    network gains from INT8 on every CPU (ViTs often do not): where calibration measured INT8
    slower than FP32 on the CPU, FP32 goes first. INT8 kernels differ by CPU tier: the guard's
    figures hold here only if the artifact is tier-proof or was validated on this tier
    (cpu_tier.int8_cpu_verdict); if not, FP32 goes first too."""
    fp32_first = ["fp32", "int8"] + [p for p in order if p not in ("fp32", "int8")]
    int8 = onnx_for(pkg, "int8", target=name)
    speedup = int8.attrs.get("cpu_speedup") if int8 is not None else None
    if want is None and isinstance(speedup, (int, float)) and speedup < 1.0:
        order = fp32_first
        considered.append(f"{name} int8: ran at {speedup:.2f}x FP32's throughput when calibrated "
                          f"({int8.attrs.get('cpu_speedup_measured_on', 'the calibrating CPU')}); FP32 first")
    tier_ok, tier_why = True, ""
    if int8 is not None and "int8" in (want or order):
        tier_ok, tier_why = int8_cpu_verdict(int8.attrs, cpu)
    if not tier_ok and want is None:
        order = fp32_first
        considered.append(f"{name} int8 '{int8.file}': {tier_why}; FP32 first (--precision int8 runs it anyway)")
    return (want or order), (tier_ok, tier_why)


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
    for p in pkg.manifest.artifacts_of(TRT_PLAN):
        good, why = plan_runs_here(p.attrs, env)
        lines.append(f"plan {p.file} [{p.attrs.get('precision', '?')}, TensorRT {p.attrs.get('trt_version', '?')}, "
                     f"sm {p.attrs.get('compute_capability', '?')}]: {'runs here' if good else 'refused'}: {why}")
    lines.append(f"this CPU: {describe(cpu)}")
    for a in pkg.manifest.artifacts_of(ONNX_INT8_QDQ):
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
