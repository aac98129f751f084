"""Which TensorRT plan of a package can run here, and the pure shape/profile/buffer
arithmetic the TensorRT backend needs. Nothing here imports tensorrt at module level:
the rules are pure functions of the plan's manifest attributes and a `TrtEnvironment`,
so they are tested on machines without a GPU.

NVIDIA's compatibility rules (TensorRT developer guide, "Version Compatibility" and
"Hardware Compatibility"; support matrix 11.4, "Engine Portability"):

- By default a plan runs only with the exact TensorRT version that built it.
- A plan built with the version-compatible flag (builder TensorRT >= 8.6) also runs on
  *newer* runtimes of the same major version, never on older ones. Across majors only
  two pairs are supported: TensorRT 8 -> 10 and 10 -> 11 (the 10.x guide also names
  8 -> 9). Such plans embed a lean runtime, so the runtime must allow engine host code.
- By default a plan runs only on the GPU architecture (compute capability) it was
  built on. Hardware-compatibility level "ampere+" plans run on any Ampere or newer
  discrete GPU (sm80+); hardware compatibility is not supported on JetPack/DRIVE OS
  (integrated GPUs).
- A plan built for a DLA core needs a device with that DLA core (Jetson Xavier/Orin).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from fakedet.errors import first_line
from fakedet.manifest import Artifact
from fakedet.package import ModelPackage

# Majors a version-compatible plan may cross (builder major -> runtime major).
CROSS_MAJOR_OK = {(8, 9), (8, 10), (10, 11)}
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


# ---- version and hardware rules (pure) -----------------------------------
_VERSION = re.compile(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int]:
    """'10.3.0.26' -> (10, 3, 0); '10.0.0b6' -> (10, 0, 0). Missing parts count as 0.
    The one parser of TensorRT versions: the build stamps plans with it and the runtime
    compares with it, so a pre-release tag cannot make a plan refuse its own builder."""
    m = _VERSION.match(str(text))
    if not m:
        raise ValueError(f"not a TensorRT version: '{text}'")
    return tuple(int(g) if g is not None else 0 for g in m.groups())  # type: ignore[return-value]


def _v(t: tuple[int, int, int]) -> str:
    return ".".join(map(str, t))


def version_rule(plan_version: str, runtime_version: str, version_compatible: bool) -> tuple[bool, str]:
    built, here = parse_version(plan_version), parse_version(runtime_version)
    if built == here:
        return True, f"same TensorRT version ({_v(here)})"
    if not version_compatible:
        return False, (
            f"built with TensorRT {_v(built)}, this runtime is {_v(here)}; a plan runs only with the exact "
            f"TensorRT version that built it unless it was built version-compatible"
        )
    if built < (8, 6, 0):
        return False, f"built with TensorRT {_v(built)}; version compatibility needs a builder >= 8.6"
    if here < built:
        return False, (
            f"version-compatible plan built with TensorRT {_v(built)} cannot run on the older runtime {_v(here)} "
            f"(compatibility only reaches newer runtimes)"
        )
    if built[0] == here[0] or (built[0], here[0]) in CROSS_MAJOR_OK:
        return True, f"version-compatible plan from TensorRT {_v(built)} runs on the newer runtime {_v(here)}"
    return False, (
        f"version-compatible plan built with TensorRT {built[0]}.x cannot run on TensorRT {here[0]}.x "
        f"(NVIDIA supports only the same major, 8->10 and 10->11)"
    )


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
    plans = pkg.manifest.artifacts_of("trt-plan")
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



def profile_for_batch(profiles: list[tuple[tuple, tuple, tuple]], batch: int, sample_shape: tuple | None = None) -> int | None:
    """Index of the optimization profile whose [min, max] range covers `batch` (and, when
    given, every axis of `sample_shape`, the input without its batch axis: whole-image
    models have dynamic height and width). Among those, the one whose opt batch is
    nearest (ties: the smaller max, then the lower index). `profiles` holds (min, opt,
    max) shapes of the batched input. None if no profile covers it."""
    shape = (batch,) + tuple(sample_shape) if sample_shape is not None else (batch,)
    best = None
    for i, (lo, opt, hi) in enumerate(profiles):
        if all(lo[a] <= shape[a] <= hi[a] for a in range(min(len(shape), len(lo)))):
            key = (abs(opt[0] - batch), hi[0], i)
            if best is None or key < best[0]:
                best = (key, i)
    return None if best is None else best[1]


def max_profile_batch(profiles: list[tuple[tuple, tuple, tuple]]) -> int:
    return max(p[2][0] for p in profiles)


def min_profile_batch(profiles: list[tuple[tuple, tuple, tuple]]) -> int:
    return min(p[0][0] for p in profiles)


def split_batch(n: int, max_batch: int) -> list[int]:
    """Chunk sizes for n images when a run takes at most max_batch: [max, max, ..., rest]."""
    if n < 0 or max_batch < 1:
        raise ValueError(f"cannot split {n} images into runs of at most {max_batch}")
    full, rest = divmod(n, max_batch)
    return [max_batch] * full + ([rest] if rest else [])


def concrete_shape(engine_shape: tuple, batch: int, sample_shape: tuple) -> tuple:
    """The input shape to set for a run: the batch axis, then the sample's own dims where
    the engine's are dynamic (-1); fixed engine dims must match the sample."""
    shape = [batch]
    for i, (eng, got) in enumerate(zip(engine_shape[1:], sample_shape)):
        if eng not in (-1, None) and int(eng) != int(got):
            raise ValueError(f"input axis {i + 1} is {got}, the plan needs {eng}")
        shape.append(int(got))
    if len(engine_shape) - 1 != len(sample_shape):
        raise ValueError(f"input has {len(sample_shape) + 1} axes, the plan needs {len(engine_shape)}")
    return tuple(shape)


def buffer_nbytes(shape: tuple, itemsize: int) -> int:
    """Bytes for a tensor of `shape` (all dims concrete, >= 0)."""
    n = 1
    for d in shape:
        if d is None or int(d) < 0:
            raise ValueError(f"shape {shape} has a dynamic axis; use the profile's max shape")
        n *= int(d)
    return n * int(itemsize)


def max_shape_over_profiles(shapes: list[tuple]) -> tuple:
    """Elementwise max of several concrete shapes (buffers sized once for every profile)."""
    if not shapes:
        raise ValueError("no shapes")
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise ValueError(f"shapes of different rank: {shapes}")
    return tuple(max(int(s[i]) for s in shapes) for i in range(rank))
