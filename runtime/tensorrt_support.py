"""Which TensorRT plan of a package can run here, and the pure shape/profile/buffer
arithmetic the TensorRT backend needs. Nothing here imports tensorrt at module level:
the rules are pure functions of the plan's manifest attributes and a `TrtEnvironment`,
so they are tested on machines without a GPU.

Version rules live in tensorrt_version.py. NVIDIA's hardware rules (TensorRT developer
guide, "Hardware Compatibility"; support matrix 11.4, "Engine Portability"):

- By default a plan runs only on the GPU architecture (compute capability) it was
  built on. Hardware-compatibility level "ampere+" plans run on any Ampere or newer
  discrete GPU (sm80+); hardware compatibility is not supported on JetPack/DRIVE OS
  (integrated GPUs).
- A plan built for a DLA core needs a device with that DLA core (Jetson Xavier/Orin).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from fakedet.artifact_kinds import TRT_PLAN
from fakedet.errors import first_line
from fakedet.manifest import Artifact
from fakedet.package import ModelPackage

from .tensorrt_version import parse_version, version_rule

# auto picks the fastest plan that runs: INT8 (calibrated, accuracy-guarded) before FP16 before FP32.
PLAN_PREFERENCE = ("int8", "fp16", "fp32")


# ---- environment ----------------------------------------------------------
@dataclass
class TrtEnvironment:
    """What this machine offers TensorRT. None fields mean "absent" (with `why_absent`)."""

    trt_version: str | None = None
    compute_capability: str | None = None
    device_name: str | None = None
    integrated: bool = False
    dla_cores: int = 0
    why_absent: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.trt_version is not None and self.compute_capability is not None


def installed_trt_version() -> str | None:
    try:
        import tensorrt as trt
    except Exception:
        return None
    return getattr(trt, "__version__", None)


@functools.lru_cache(maxsize=1)
def detect_environment() -> TrtEnvironment:
    """Probe TensorRT and the first GPU once per process (imports tensorrt and a CUDA
    binding lazily). `detect_environment.cache_clear()` probes again."""
    env = TrtEnvironment()
    env.trt_version = installed_trt_version()
    if env.trt_version is None:
        env.why_absent.append("TensorRT is not installed here")
    try:
        from .cuda_api import load_cuda

        dev = load_cuda().device_info()
        env.compute_capability, env.device_name, env.integrated = dev.compute_capability, dev.name, dev.integrated
    except Exception as e:  # no driver, no GPU, no binding: all mean "no GPU here"
        env.why_absent.append(f"no usable CUDA GPU ({first_line(e, 300)})")
    if env.usable:
        try:
            import tensorrt as trt

            env.dla_cores = int(trt.Runtime(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)
        except Exception:
            env.dla_cores = 0
    return env


# ---- hardware rules (pure) ----------------------------------------------
def parse_cc(text: str) -> tuple[int, int]:
    """'8.7' or 'sm_87' or '87' -> (8, 7)."""
    s = str(text).lower().replace("sm_", "").replace("sm", "").strip()
    if "." in s:
        a, b = s.split(".", 1)
        return int(a), int(b)
    if s.isdigit() and len(s) >= 2:
        return int(s[:-1]), int(s[-1])
    raise ValueError(f"not a compute capability: '{text}'")


def hardware_rule(
    plan_cc: str, runtime_cc: str, hardware_compatibility: str = "none", integrated: bool = False,
    plan_device: str | None = None, runtime_device: str | None = None,
) -> tuple[bool, str]:
    built, here = parse_cc(plan_cc), parse_cc(runtime_cc)
    on = f" ({runtime_device})" if runtime_device else ""
    frm = f" ({plan_device})" if plan_device else ""
    if built == here:
        return True, f"same GPU architecture sm{here[0]}{here[1]}{on}"
    if hardware_compatibility == "ampere+":
        if integrated:
            return False, (
                f"hardware-compatible (ampere+) plans are not supported on integrated GPUs (JetPack/DRIVE OS); "
                f"this GPU is sm{here[0]}{here[1]}{on}"
            )
        if here >= (8, 0):
            return True, f"hardware-compatible (ampere+) plan runs on sm{here[0]}{here[1]}{on}"
        return False, f"hardware-compatible (ampere+) plan needs sm80 or newer, this GPU is sm{here[0]}{here[1]}{on}"
    return False, (
        f"built for compute capability {built[0]}.{built[1]}{frm}, this GPU is {here[0]}.{here[1]}{on}; "
        f"plans are tied to the GPU architecture unless built hardware-compatible (ampere+)"
    )


def dla_rule(dla_core, dla_cores_here: int) -> tuple[bool, str]:
    if dla_core is None:
        return True, "GPU plan"
    if int(dla_core) < int(dla_cores_here):
        return True, f"DLA core {dla_core} present"
    return False, f"built for DLA core {dla_core}, this device has {dla_cores_here} DLA core(s)"


def plan_runs_here(attrs: dict, env: TrtEnvironment) -> tuple[bool, str]:
    """(ok, reason) for one trt-plan artifact's attrs on `env`."""
    missing = [k for k in ("trt_version", "compute_capability") if not attrs.get(k)]
    if missing:
        return False, f"plan metadata lacks {', '.join(missing)} (rebuild it with fakedet build)"
    if not env.usable:
        return False, env.why_absent[0] if env.why_absent else "TensorRT or a GPU is missing here"
    checks = [
        version_rule(attrs["trt_version"], env.trt_version, bool(attrs.get("version_compatible", False))),
        hardware_rule(
            attrs["compute_capability"], env.compute_capability, attrs.get("hardware_compatibility", "none") or "none",
            env.integrated, attrs.get("device_name"), env.device_name,
        ),
        dla_rule(attrs.get("dla_core"), env.dla_cores),
    ]
    failed = [why for ok, why in checks if not ok]
    if failed:
        return False, "; ".join(failed)
    return True, "; ".join(why for _, why in checks)


def matching_plan(
    pkg: ModelPackage, precision: str = "auto", env: TrtEnvironment | None = None
) -> tuple[Artifact | None, str]:
    """(plan, reason): the best trt-plan artifact that runs here, or None with why not."""
    plans = pkg.manifest.artifacts_of(TRT_PLAN)
    if precision != "auto":
        other = [p for p in plans if p.attrs.get("precision") != precision]
        plans = [p for p in plans if p.attrs.get("precision") == precision]
        if not plans:
            have = f" (it has {', '.join(sorted({str(p.attrs.get('precision')) for p in other}))})" if other else ""
            return None, f"the package has no {precision} TensorRT plan{have}"
    if not plans:
        return None, "the package has no TensorRT plan"
    env = env if env is not None else detect_environment()
    verdicts = [(p, *plan_runs_here(p.attrs, env)) for p in plans]
    ok = [(p, why) for p, good, why in verdicts if good]
    if ok:
        rank = {prec: i for i, prec in enumerate(PLAN_PREFERENCE)}
        p, why = min(ok, key=lambda pw: rank.get(pw[0].attrs.get("precision"), 99))
        return p, f"TensorRT plan '{p.file}' ({p.attrs.get('precision')}) runs here: {why}"
    return None, "; ".join(f"plan '{p.file}' refused: {why}" for p, _, why in verdicts)


# ---- API generation, profiles, batches and buffers (pure) -----------------
def io_api(trt_version: str, has_tensor_api: bool, forced: str | None = None) -> str:
    """"tensor" (names: set_input_shape / set_tensor_address / execute_async_v3) or
    "bindings" (indices: set_binding_shape / execute_async_v2). TensorRT 10+ has only the
    former; 8.5 introduced it, but JetPack 5's 8.5 is run the way it was proven (bindings)
    unless `forced`. Older than 8.5 has only bindings."""
    if forced in ("tensor", "bindings"):
        if forced == "tensor" and not has_tensor_api:
            raise ValueError(f"TensorRT {trt_version} has no tensor-name API")
        if forced == "bindings" and parse_version(trt_version)[0] >= 10:
            raise ValueError(f"TensorRT {trt_version} has no bindings API")
        return forced
    if not has_tensor_api:
        return "bindings"
    return "tensor" if parse_version(trt_version) >= (8, 6, 0) else "bindings"
