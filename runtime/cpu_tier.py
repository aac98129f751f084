"""The CPU's instruction tier, as far as ONNX Runtime's INT8 kernels care, and a check that an
INT8 QDQ model's kernels agree with the exact quantization arithmetic on this CPU.

ONNX Runtime picks its 8-bit GEMM kernels by instruction set: AMX or VNNI (AVX512-VNNI,
AVX-VNNI) multiply-accumulate u8 x s8 straight into int32; plain AVX2/AVX-512 use
vpmaddubsw, whose int16 pair sums saturate with full 8-bit weights; ARM uses NEON (dot
product / i8mm when present). So an INT8 artifact's accuracy can depend on the tier that
runs it; fakedet records the tier the accuracy guard validated on and compares it here.

Read without extra dependencies: /proc/cpuinfo on Linux, sysctl on macOS, platform otherwise."""

from __future__ import annotations

import functools
import platform
import subprocess

import numpy as np

# feature flags (as /proc/cpuinfo spells them) that change which INT8 kernels run
X86_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FEATURES = ("asimd", "asimddp", "i8mm")
ARM_MACHINES = ("aarch64", "arm64", "armv8l")
ARM_IMPLEMENTERS = {"0x41": "ARM", "0x4e": "NVIDIA", "0x61": "Apple", "0x51": "Qualcomm", "0x48": "HiSilicon"}
ARM_PARTS = {"0xd08": "Cortex-A72", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1",
             "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE", "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2",
             "0x004": "Carmel"}  # fmt: skip


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's `key: value` lines of /proc/cpuinfo, keys lower-case (x86 lists
    its features under 'flags', ARM under 'Features')."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip().lower(), value.strip())
    return out


def _proc_cpuinfo() -> dict[str, str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        return {}


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def tier_of(arch: str, features: set[str] | list[str]) -> str:
    """The kernel tier name: x86 amx / avx512-vnni / avx-vnni / avx512 / avx2 / sse, arm64 i8mm /
    dotprod / neon (what decides whether u8 x s8 products can saturate)."""
    f = set(features)
    if arch in ARM_MACHINES:
        return "arm64-" + ("i8mm" if "i8mm" in f else "dotprod" if "asimddp" in f else "neon")
    for name, flag in (("amx", "amx_int8"), ("avx512-vnni", "avx512_vnni"), ("avx-vnni", "avx_vnni"),
                       ("avx512", "avx512bw"), ("avx2", "avx2")):  # fmt: skip
        if flag in f:
            return f"{arch}-{name}"
    return f"{arch}-sse"


def cpu_record() -> dict:
    """{vendor, model, arch, features (the kernel-relevant ones), tier} of this machine."""
    rec = _read_cpu_record()
    return {**rec, "features": list(rec["features"])}


@functools.lru_cache(maxsize=1)
def _read_cpu_record() -> dict:
    arch = platform.machine().lower() or "unknown"
    info = _proc_cpuinfo()
    if not info and platform.system() == "Darwin":
        return _darwin_record(arch)
    return record_from_cpuinfo(info, arch)


def record_from_cpuinfo(info: dict[str, str], arch: str) -> dict:
    """The CPU record from parsed /proc/cpuinfo fields and the machine name."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    flags = set((info.get("flags") or info.get("features") or "").split())
    vendor = info.get("vendor_id") or info.get("cpu implementer", "")
    if vendor.startswith("0x"):  # ARM implementer code
        vendor = ARM_IMPLEMENTERS.get(vendor.lower(), f"ARM implementer {vendor}")
    model = info.get("model name") or info.get("cpu model") or ""
    if not model and info.get("cpu part"):
        model = ARM_PARTS.get(info["cpu part"].lower(), f"part {info['cpu part']}")
    return _record(vendor, model or platform.processor(), arch, flags)


def _darwin_record(arch: str) -> dict:
    arch = {"arm64": "aarch64"}.get(arch, arch)
    model = _sysctl("machdep.cpu.brand_string")
    if arch == "aarch64":
        flags = {"asimddp"} | ({"i8mm"} if _sysctl("hw.optional.arm.FEAT_I8MM") == "1" else set())
        return _record("Apple", model, arch, flags)
    raw = (_sysctl("machdep.cpu.features") + " " + _sysctl("machdep.cpu.leaf7_features")).lower().replace(".", "_")
    return _record(_sysctl("machdep.cpu.vendor"), model, arch, set(raw.split()))


def _record(vendor: str, model: str, arch: str, flags: set[str]) -> dict:
    features = sorted(flags & set(ARM_FEATURES if arch in ARM_MACHINES else X86_FEATURES))
    return {"vendor": vendor or "unknown", "model": model or "unknown", "arch": arch, "features": features,
            "tier": tier_of(arch, features)}  # fmt: skip


def describe(rec: dict | None) -> str:
    if not rec:
        return "an unrecorded CPU"
    feats = ", ".join(rec.get("features") or []) or "no INT8-relevant extensions"
    return f"{rec.get('vendor', '?')} {rec.get('model', '?')} (tier {rec.get('tier', '?')}: {feats})"


def kernel_vs_exact(model: str | bytes, x: np.ndarray, threads: int | None = None) -> float:
    """Largest |output| difference between ONNX Runtime's fused INT8 kernels (all graph
    optimizations) and the exact quantization arithmetic (optimizations off: every
    QuantizeLinear/DequantizeLinear evaluated as written, the ops between them in float).
    `model`: a path or the serialized model; `x`: its one input, or {input name: array}."""
    from .ort_session import cpu_session

    outs = []
    for level in ("all", "none"):
        s = cpu_session(model, threads=threads, optimization=level)
        outs.append(np.asarray(s.run(None, x if isinstance(x, dict) else {s.get_inputs()[0].name: x})[0], np.float64))
    return float(np.abs(outs[0] - outs[1]).max())


# weight forms whose products cannot saturate ORT's INT8 kernels on any tier (calibration/qdq.py)
TIER_PROOF_WEIGHTS = ("int8-7bit", "uint8")
# tiers whose 8-bit kernels accumulate straight into int32 (exact with 8-bit weights too); the
# ARM ones measured with `make test-arm64` (qemu Cortex-A76 and `max`: every form exact)
EXACT_TIERS = ("amx", "avx512-vnni", "avx-vnni", "dotprod", "i8mm")


def int8_cpu_verdict(attrs: dict, here: dict | None = None) -> tuple[bool, str]:
    """(may this INT8 artifact run first on this CPU, why) from its manifest attrs: the CPU
    the accuracy guard validated on (`validated_cpu`) and its weight form (`weights`)."""
    here = here or cpu_record()
    validated = attrs.get("validated_cpu") if isinstance(attrs.get("validated_cpu"), dict) else None
    where = f"validated on {describe(validated)}" if validated else "validated on an unrecorded CPU"
    this = f"this CPU is {describe(here)}"
    if validated and validated.get("tier") == here.get("tier"):
        return True, f"{where}: the same INT8 kernel tier as this CPU"
    if attrs.get("weights") in TIER_PROOF_WEIGHTS or attrs.get("tier_proof") is True:
        return True, (f"{where}, {this}: its {attrs.get('weights', 'tier-proof')} weights cannot saturate ONNX "
                      f"Runtime's INT8 kernels on any tier, so none loses accuracy to overflow (x86 tiers give "
                      f"identical INT8 results; other architectures' kernels differ only in rounding)")  # fmt: skip
    if here.get("tier", "").split("-", 1)[-1] in EXACT_TIERS:
        return True, (f"{where}, {this}: its INT8 kernels accumulate 8-bit products exactly (the quantization "
                      f"arithmetic as calibrated)")  # fmt: skip
    return False, (f"{where}, {this}: its 8-bit weights can saturate ONNX Runtime's INT8 kernels on this tier, so "
                   f"the accuracy guard's figures do not hold here (recalibrate with this fakedet for a tier-proof "
                   f"artifact)")  # fmt: skip
