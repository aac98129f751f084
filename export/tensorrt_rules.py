"""The pure rules of a TensorRT build: no tensorrt import here, so all of it is
testable anywhere.

Version rules (TensorRT release notes 8.5-11.4; the facts as code in
fakedet.runtime.tensorrt_version):
  8.5 / 8.6 (JetPack 5 / 6.0)   weakly typed, builder flags FP16/INT8; INT8 from the
                                 calibration cache (implicit) or the QDQ ONNX (explicit).
  10.x (JetPack 6.1+, desktop)   same flags; implicit INT8 deprecated since 10.1, so the
                                 QDQ ONNX is preferred there when the package has one.
  11.x                           strongly typed only: precision comes from the ONNX file
                                 (FP16 ONNX, QDQ ONNX); no FP16/INT8 flags, no calibrators.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fakedet.artifact_kinds import ONNX_FP16, ONNX_FP32, ONNX_INT8_QDQ, TRT_CALIBRATION_CACHE
from fakedet.errors import FakedetError
from fakedet.manifest import InputSpec
from fakedet.runtime.tensorrt_support import parse_cc
from fakedet.runtime.tensorrt_version import TrtVersion, cache_header_version

PRECISIONS = ("fp32", "fp16", "int8")
HARDWARE_COMPAT = ("none", "ampere+")
DEFAULT_IMAGE_SIZES = (128, 512, 1024)  # min:opt:max side for whole-image models


class BuildOptionError(FakedetError):
    """A build option that cannot work with this TensorRT, GPU or package."""


# ---- what to build from ----------------------------------------------------
@dataclass
class BuildRecipe:
    """Which package artifact a plan is built from and how."""

    onnx_kind: str  # onnx-fp32 | onnx-fp16 | onnx-int8-qdq
    network_flags: list[str]  # NetworkDefinitionCreationFlag names
    builder_flags: list[str]  # BuilderFlag names
    calibration: str | None  # None | "trt-calibration-cache" | "qdq"
    notes: list[str] = field(default_factory=list)


def source_artifact(manifest, kind: str):
    """The package artifact a recipe's `onnx_kind` names. A package may hold two QDQ INT8
    models (`fakedet calibrate`): TensorRT takes the one not made for ONNX Runtime's CPU
    provider (attrs target "ort-cpu" has uint8 activations); older ones have no target."""
    arts = manifest.artifacts_of(kind)
    if kind == ONNX_INT8_QDQ:
        arts = [a for a in arts if a.int8_target == "tensorrt"] or arts
    return arts[0] if arts else None


def choose_recipe(version: TrtVersion, precision: str, kinds: set[str] | list[str]) -> BuildRecipe:
    """Pick the source artifact, network flags and builder flags for a precision on
    a TensorRT version, given the artifact kinds the package holds."""
    recipe = _choose_recipe(version, precision, kinds)
    if recipe.builder_flags and version.precision_flags_deprecated:
        recipe.notes.append(f"the {'/'.join(recipe.builder_flags)} builder flags are deprecated since TensorRT 10.12 "
                            "(strong typing supersedes them) and gone in 11; this 10.x build still uses them")
    return recipe


def _choose_recipe(version: TrtVersion, precision: str, kinds: set[str] | list[str]) -> BuildRecipe:
    kinds = set(kinds)
    if precision not in PRECISIONS:
        raise BuildOptionError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
    if not version.supported:
        raise BuildOptionError(f"TensorRT {version} is too old: fakedet builds with TensorRT 8.5 or newer")

    def need(kind: str, how: str) -> None:
        if kind not in kinds:
            raise BuildOptionError(f"the package has no {kind} artifact, needed for {precision} on TensorRT {version}; {how}")

    if version.strongly_typed_only:
        typed = ["STRONGLY_TYPED"]
        if precision == "fp32":
            need(ONNX_FP32, "re-export it (fakedet export)")
            return BuildRecipe(ONNX_FP32, typed, [], None)
        if precision == "fp16":
            need(ONNX_FP16, "export it with --precision fp16 (TensorRT 11 takes FP16 from the ONNX types)")
            return BuildRecipe(ONNX_FP16, typed, [], None)
        need(ONNX_INT8_QDQ, "calibrate it first (fakedet calibrate): TensorRT 11 takes INT8 only from Q/DQ nodes")
        return BuildRecipe(ONNX_INT8_QDQ, typed, [], "qdq")

    net = ["EXPLICIT_BATCH"] if version.major < 10 else []  # explicit batch is the only mode from 10 on
    if precision == "fp32":
        need(ONNX_FP32, "re-export it (fakedet export)")
        return BuildRecipe(ONNX_FP32, net, [], None)
    if precision == "fp16":
        if ONNX_FP32 not in kinds and ONNX_FP16 in kinds:  # exported with --precision fp16 only
            return BuildRecipe(ONNX_FP16, net, ["FP16"], None)
        need(ONNX_FP32, "re-export it (fakedet export)")
        return BuildRecipe(ONNX_FP32, net, ["FP16"], None)
    # int8: builder flags, FP16 too so layers without INT8 kernels fall back to FP16, not FP32
    has_qdq, has_cache = ONNX_INT8_QDQ in kinds, TRT_CALIBRATION_CACHE in kinds and ONNX_FP32 in kinds
    if not (has_qdq or has_cache):
        raise BuildOptionError(
            f"int8 on TensorRT {version} needs the package's onnx-int8-qdq or trt-calibration-cache "
            "artifact; calibrate it first (fakedet calibrate)"
        )
    prefer_qdq = version.implicit_int8_deprecated or not has_cache
    if prefer_qdq and has_qdq:
        return BuildRecipe(ONNX_INT8_QDQ, net, ["INT8", "FP16"], "qdq")
    notes = []
    if version.implicit_int8_deprecated:
        notes.append(f"implicit INT8 (calibration cache) is deprecated on TensorRT {version}; "
                     "calibrate to a QDQ ONNX to keep INT8 on TensorRT 11")
    return BuildRecipe(ONNX_FP32, net, ["INT8", "FP16"], TRT_CALIBRATION_CACHE, notes)


def check_options(version: TrtVersion, precision: str, dla_core: int | None, version_compatible: bool,
                  hardware_compat: str, compute_capability: str | None = None) -> list[str]:
    """Refuse combinations TensorRT cannot build; return warnings for the ones it can."""
    warnings: list[str] = []
    if hardware_compat not in HARDWARE_COMPAT:
        raise BuildOptionError(f"unknown hardware compatibility '{hardware_compat}' (known: {', '.join(HARDWARE_COMPAT)})")
    if (version_compatible or hardware_compat != "none") and (version.major, version.minor) < (8, 6):
        raise BuildOptionError(f"--version-compatible and --hardware-compat need TensorRT 8.6 or newer (found {version})")
    if dla_core is not None:
        if dla_core < 0:
            raise BuildOptionError(f"--dla must be a core index >= 0, got {dla_core}")
        if precision == "fp32":
            raise BuildOptionError("DLA runs fp16 or int8 only: use --precision fp16 or int8 with --dla")
        if hardware_compat != "none":
            raise BuildOptionError("--hardware-compat cannot be combined with --dla (DLA plans are device specific)")
        if version.strongly_typed_only:
            warnings.append("DLA with a strongly typed network: layers whose types DLA lacks fall back to the GPU")
    if hardware_compat == "ampere+" and compute_capability is not None:
        if parse_cc(compute_capability) < (8, 0):
            raise BuildOptionError(f"--hardware-compat ampere+ needs an Ampere or newer GPU (this one is sm{cc_tag(compute_capability)})")
    return warnings


# ---- sizes, shapes, names --------------------------------------------------
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size_bytes(text: str) -> int:
    """'4G' -> 4 GiB in bytes; also 512M, 1.5G, 2GiB, 1048576."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", str(text).upper())
    if not m:
        raise BuildOptionError(f"cannot read a size from '{text}' (examples: 4G, 512M, 1073741824)")
    value = int(float(m.group(1)) * _UNITS[m.group(2)])
    if value <= 0:
        raise BuildOptionError(f"size must be > 0, got '{text}'")
    return value


def parse_range(text: str, what: str = "--batch") -> tuple[int, int, int]:
    """'1:8:32' -> (1, 8, 32); 'N' -> (1, N, N)."""
    parts = str(text).split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise BuildOptionError(f"{what} '{text}': expected MIN:OPT:MAX integers, e.g. 1:8:32") from None
    if len(nums) == 1:
        nums = [1, nums[0], nums[0]]
    if len(nums) != 3:
        raise BuildOptionError(f"{what} '{text}': expected MIN:OPT:MAX, e.g. 1:8:32")
    lo, opt, hi = nums
    if lo < 1 or not lo <= opt <= hi:
        raise BuildOptionError(f"{what} '{text}': need 1 <= MIN <= OPT <= MAX")
    return lo, opt, hi


def _round_to(v: int, m: int, up: bool) -> int:
    if m <= 1:
        return v
    return -(-v // m) * m if up else max(m, v // m * m)


def profile_shapes(spec: InputSpec, batch: tuple[int, int, int], image_sizes: tuple[int, int, int] | None = None) -> list[dict]:
    """The optimization profile for the model input: min/opt/max shapes.

    Fixed-size inputs take their height/width from the preprocessing contract; whole-image
    inputs (dynamic height/width) take square sides from `image_sizes` (default 128:512:1024),
    rounded to the padding multiple so every padded image fits the profile."""
    pre = spec.preprocess
    if pre.policy == "whole-image":
        sides = image_sizes or DEFAULT_IMAGE_SIZES
        m = int(pre.multiple_of)
        lo, opt, hi = _round_to(sides[0], m, True), _round_to(sides[1], m, True), _round_to(sides[2], m, False)
        if not lo <= opt <= hi:
            raise BuildOptionError(f"image sizes {sides} do not give min <= opt <= max after rounding to multiples of {m}")
        hw = [(lo, lo), (opt, opt), (hi, hi)]
    else:
        if image_sizes is not None:
            raise BuildOptionError(f"--image-size applies to whole-image models only; this one takes {pre.size[0]}x{pre.size[1]} inputs")
        hw = [tuple(pre.size)] * 3

    def shape(b: int, h: int, w: int) -> list[int]:
        return list(spec.tensor_shape(b, (h, w)))

    (bl, bo, bh) = batch
    return [{
        "input": spec.name,
        "min": shape(bl, *hw[0]),
        "opt": shape(bo, *hw[1]),
        "max": shape(bh, *hw[2]),
    }]


def cc_tag(compute_capability: str) -> str:
    """'8.7' -> '87'."""
    return str(compute_capability).replace(".", "")


def plan_filename(version: TrtVersion | str, compute_capability: str, precision: str, dla_core: int | None = None,
                  hardware_compat: str = "none") -> str:
    """plans/trt-10.3.0_sm87_fp16.plan (+ _dla0, + _ampere+ as _ampereplus)."""
    name = f"trt-{version}_sm{cc_tag(compute_capability)}_{precision}"
    if dla_core is not None:
        name += f"_dla{dla_core}"
    if hardware_compat != "none":
        name += "_" + hardware_compat.replace("+", "plus")
    return f"plans/{name}.plan"


def plan_attrs(version: TrtVersion | str, compute_capability: str, device_name: str, precision: str,
               profiles: list[dict], dla_core: int | None, version_compatible: bool, hardware_compat: str,
               built_from: str, calibration: str | None) -> dict:
    """The trt-plan artifact attrs; the runtime reads exactly these keys."""
    return {
        "trt_version": str(version),
        "compute_capability": str(compute_capability),
        "device_name": str(device_name),
        "precision": precision,
        "profiles": profiles,
        "dla_core": dla_core,
        "version_compatible": bool(version_compatible),
        "hardware_compatibility": hardware_compat,
        "built_from": built_from,
        "calibration": calibration,
    }


def check_calibration_cache(first_line: str, version: TrtVersion) -> None:
    """A calibration cache is read only by the TensorRT major.minor that wrote it;
    refuse a stale one instead of letting TensorRT silently fall back to FP precision."""
    wrote = cache_header_version(first_line)
    if wrote is None:
        raise BuildOptionError(f"the trt-calibration-cache does not start with a TensorRT header "
                               f"(expected e.g. 'TRT-{version.cache_tag}-EntropyCalibration2', found '{first_line[:60]}')")
    if (wrote.major, wrote.minor) != (version.major, version.minor):
        raise BuildOptionError(f"the calibration cache was written for TensorRT {wrote}, this is TensorRT {version}; "
                               "recalibrate for it (fakedet calibrate --trt-version) or build from the QDQ ONNX")


def default_timing_cache(cache_dir: str | None, version: TrtVersion, compute_capability: str) -> str:
    """Timing caches are per TensorRT version and GPU: one file per pair."""
    import os

    base = cache_dir or os.environ.get("FAKEDET_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "fakedet")
    return os.path.join(base, "trt-timing", f"trt-{version}_sm{cc_tag(compute_capability)}.cache")
