"""The CPU's instruction tier, as far as ONNX Runtime's INT8 kernels care, and a check that an
INT8 QDQ model's kernels agree with the exact quantization arithmetic on this CPU.

ONNX Runtime picks its 8-bit GEMM kernels by instruction set: AMX or VNNI (AVX512-VNNI,
AVX-VNNI) multiply-accumulate u8 x s8 straight into int32; plain AVX2/AVX-512 use
vpmaddubsw, whose int16 pair sums saturate with full 8-bit weights; ARM uses NEON (dot
product / i8mm when present). So an INT8 artifact's accuracy can depend on the tier that
runs it; fakedet records the tier the accuracy guard validated on and compares it here.

Read without extra dependencies: /proc/cpuinfo on Linux, sysctl on macOS, platform otherwise."""

from __future__ import annotations

import platform
import subprocess

import numpy as np

# feature flags (as /proc/cpuinfo spells them) that change which INT8 kernels run
KERNEL_FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
ARM_MACHINES = ("aarch64", "arm64", "armv8l")


def _proc_cpuinfo() -> dict[str, str]:
    """The first processor's `key: value` lines (features from 'flags' or 'Features')."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if out:
                        break
                    continue
                key, _, value = line.partition(":")
                out.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    return out


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
    arch = platform.machine().lower() or "unknown"
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    info = _proc_cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    vendor = info.get("vendor_id") or info.get("cpu implementer", "")
    model = info.get("model name") or info.get("cpu model") or ""
    if not info and platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string")
        vendor = "Apple" if arch == "aarch64" else _sysctl("machdep.cpu.vendor")
        if arch == "aarch64":
            flags = {"asimddp"} | ({"i8mm"} if _sysctl("hw.optional.arm.FEAT_I8MM") == "1" else set())
        else:
            flags = {f.lower().replace(".", "_") for f in (_sysctl("machdep.cpu.features") + " " + _sysctl("machdep.cpu.leaf7_features")).split()}
    if vendor.startswith("0x"):  # ARM implementer code
        vendor = {"0x41": "ARM", "0x4e": "NVIDIA", "0x61": "Apple", "0x51": "Qualcomm", "0x48": "HiSilicon"}.get(vendor, vendor)
    features = sorted(flags & set(KERNEL_FEATURES))
    return {"vendor": vendor or "unknown", "model": model or platform.processor() or "unknown",
            "arch": arch, "features": features, "tier": tier_of(arch, features)}  # fmt: skip


def describe(rec: dict | None) -> str:
    if not rec:
        return "an unrecorded CPU"
    feats = ", ".join(rec.get("features") or []) or "no INT8-relevant extensions"
    return f"{rec.get('vendor', '?')} {rec.get('model', '?')} (tier {rec.get('tier', '?')}: {feats})"


def kernel_vs_exact(model_path: str, x: np.ndarray, threads: int | None = None) -> float:
    """Largest |output| difference between ONNX Runtime's fused INT8 kernels (all graph
    optimizations) and the exact quantization arithmetic (optimizations off: every
    QuantizeLinear/DequantizeLinear evaluated as written, the ops between them in float)."""
    import onnxruntime as ort

    outs = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = level
        if threads is not None:
            so.intra_op_num_threads = threads
        s = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
        outs.append(np.asarray(s.run(None, {s.get_inputs()[0].name: x})[0], np.float64))
    return float(np.abs(outs[0] - outs[1]).max())
