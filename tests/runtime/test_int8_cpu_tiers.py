"""INT8 on every CPU tier: the CPU record, the runtime's verdict on an INT8 CPU artifact
validated on another tier, and the weight forms whose kernels equal the exact quantization
arithmetic wherever they run (the emulated AVX2 check is marked slow: `make test-avx2`)."""

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakedet.runtime.cpu_tier import (
    EXACT_TIERS,
    cpu_record,
    int8_cpu_verdict,
    kernel_vs_exact,
    parse_cpuinfo,
    record_from_cpuinfo,
    tier_of,
)
from fakedet.runtime.selection import choose, explain
from fakedet.runtime.tensorrt_support import TrtEnvironment

from fakedet.package import ModelPackage, PackageWriter

ROOT = Path(__file__).resolve().parents[2]
NO_TRT = TrtEnvironment(why_absent=["TensorRT is not installed here"])
CPU_EP = {"CPUExecutionProvider"}

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma bmi2 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
"""
SAPPHIRE = ("vendor_id : GenuineIntel\nmodel name : Intel(R) Xeon(R) Platinum 8480+\n"
            "flags : avx2 avx512f avx512bw avx512_vnni avx_vnni amx_bf16 amx_int8 amx_tile\n")  # fmt: skip
ORIN = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd42
"""


def test_cpu_record_reads_the_tier_from_cpuinfo():
    zen3 = record_from_cpuinfo(parse_cpuinfo(ZEN3), "x86_64")
    assert zen3 == {"vendor": "AuthenticAMD", "model": "AMD EPYC 7B13 64-Core Processor", "arch": "x86_64",
                    "features": ["avx2"], "tier": "x86_64-avx2"}  # fmt: skip
    spr = record_from_cpuinfo(parse_cpuinfo(SAPPHIRE), "x86_64")
    assert spr["tier"] == "x86_64-amx" and "avx512_vnni" in spr["features"] and "amx_int8" in spr["features"]
    orin = record_from_cpuinfo(parse_cpuinfo(ORIN), "aarch64")
    assert (orin["vendor"], orin["model"], orin["tier"]) == ("ARM", "Cortex-A78AE", "arm64-dotprod")
    assert orin["features"] == ["asimd", "asimddp"]
    # x86 flags never leak into an ARM record (qemu-user shows the host's cpuinfo)
    assert record_from_cpuinfo(parse_cpuinfo(ZEN3), "aarch64")["tier"] == "arm64-neon"
    assert tier_of("x86_64", ["avx2", "avx512f", "avx512bw"]) == "x86_64-avx512"
    assert tier_of("x86_64", []) == "x86_64-sse"
    here = cpu_record()
    assert here["tier"] == tier_of(here["arch"], here["features"]) and here["model"]


def _with_cpu_attrs(pkg_dir: Path, **attrs) -> ModelPackage:
    base = ModelPackage.open(pkg_dir)
    m = base.manifest.copy()
    art = m.artifact("onnx-int8-qdq")
    for k in ("weights", "validated_cpu", "tier_proof"):
        art.attrs.pop(k, None)
    art.attrs.update(target="ort-cpu", activations="uint8", **attrs)
    with PackageWriter(pkg_dir, m, base=base):
        pass
    return ModelPackage.open(pkg_dir)


def test_runtime_says_when_an_int8_artifact_runs_on_a_tier_the_guard_did_not_validate(tiny_package, tmp_path, caplog):
    from package_helpers import add_artifacts

    pkg_dir, _ = tiny_package
    add_artifacts(pkg_dir, int8=True, tmp=tmp_path)
    avx2 = record_from_cpuinfo(parse_cpuinfo(ZEN3), "x86_64")
    vnni = record_from_cpuinfo(parse_cpuinfo(SAPPHIRE), "x86_64")

    # 8-bit weights validated on AMX, run on AVX2: FP32 first, and why; --precision int8 still honoured, loudly
    pkg = _with_cpu_attrs(pkg_dir, weights="int8", validated_cpu=vnni)
    c = choose(pkg, "auto", trt_env=NO_TRT, providers=CPU_EP, cpu=avx2)
    assert c.precision == "fp32"
    why = next(line for line in c.considered if "int8" in line)
    assert "Xeon(R) Platinum 8480+" in why and "x86_64-avx2" in why and "can saturate" in why
    with caplog.at_level("WARNING", logger="fakedet.runtime"):
        c = choose(pkg, "ort-cpu", "int8", trt_env=NO_TRT, providers=CPU_EP, cpu=avx2)
    assert c.precision == "int8" and "can saturate" in c.reason and "did not validate" in caplog.text
    # ... validated on the same tier: INT8 first
    assert choose(pkg, "auto", trt_env=NO_TRT, providers=CPU_EP, cpu=vnni).precision == "int8"
    # a package with no CPU record (calibrated before fakedet kept one): exact on VNNI/AMX only
    legacy = _with_cpu_attrs(pkg_dir)
    assert choose(legacy, "auto", trt_env=NO_TRT, providers=CPU_EP, cpu=vnni).precision == "int8"
    assert choose(legacy, "auto", trt_env=NO_TRT, providers=CPU_EP, cpu=avx2).precision == "fp32"
    orin = record_from_cpuinfo(parse_cpuinfo(ORIN), "aarch64")  # ARM dot-product kernels: exact
    assert choose(legacy, "auto", trt_env=NO_TRT, providers=CPU_EP, cpu=orin).precision == "int8"

    # 7-bit weights: tier-proof, INT8 on any tier, and the choice says why
    proof = _with_cpu_attrs(pkg_dir, weights="int8-7bit", tier_proof=True, validated_cpu=vnni)
    c = choose(proof, "auto", trt_env=NO_TRT, providers=CPU_EP, cpu=avx2)
    assert c.precision == "int8" and "cannot saturate" in c.reason and "8480+" in c.reason
    lines = explain(proof, providers=CPU_EP, trt_env=NO_TRT, cpu=avx2)
    assert any(line.startswith("this CPU: AuthenticAMD AMD EPYC 7B13") for line in lines)
    assert any("INT8 CPU artifact model.int8.onnx [int8-7bit weights]: accuracy guard holds here" in line for line in lines)
    lines = explain(_with_cpu_attrs(pkg_dir, weights="int8", validated_cpu=vnni), providers=CPU_EP, trt_env=NO_TRT,
                    cpu=avx2)  # fmt: skip
    assert any("NOT validated for this CPU" in line for line in lines)
    assert any(line.startswith("auto selects ort-cpu / fp32") for line in lines)


@pytest.mark.parametrize("weights", ["int8-7bit", "uint8"])
def test_tier_proof_weight_forms_run_the_exact_arithmetic_here(tmp_path, weights):
    """7-bit and uint8 weights cannot saturate ORT's u8 kernels: on whatever CPU this runs,
    the fused kernels give the exact quantization arithmetic (graph optimizations off)."""
    pytest.importorskip("onnx")
    from fakedet.calibration.qdq import quantize_qdq
    from fakedet.calibration.ranges import compute_ranges, method_params
    from test_calibration_units import _tiny_net

    _tiny_net(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    calib = [rng.uniform(0, 1, (4, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    amax = compute_ranges(tmp_path / "m.onnx", calib, "percentile", method_params("percentile"), progress=False)
    quantize_qdq(tmp_path / "m.onnx", amax, True, tmp_path / "q.onnx", activations="uint8", weights=weights)
    x = rng.uniform(0, 1, (32, 3, 16, 16)).astype(np.float32)
    assert kernel_vs_exact(str(tmp_path / "q.onnx"), x) < 1e-4
    if cpu_record()["tier"].split("-", 1)[-1] in EXACT_TIERS:  # VNNI/AMX: 8-bit weights are exact too
        quantize_qdq(tmp_path / "m.onnx", amax, True, tmp_path / "q8.onnx", activations="uint8", weights="int8")
        assert kernel_vs_exact(str(tmp_path / "q8.onnx"), x) < 1e-4


QEMU = shutil.which("qemu-x86_64-static")


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64" or QEMU is None,
                    reason="needs x86_64 and qemu-x86_64-static (apt-get install qemu-user-static)")  # fmt: skip
def test_on_an_emulated_avx2_cpu_8bit_weights_saturate_and_7bit_ones_do_not(tmp_path):
    """AMD Zen 3 (EPYC-Milan: AVX2, no AVX-512, no VNNI) emulated by qemu: ORT's u8 x s8 kernels
    drift from the exact arithmetic with 8-bit weights (vpmaddubsw saturates), not with the
    7-bit weights fakedet ships, nor with uint8 weights."""
    out = tmp_path / "tiers.json"
    subprocess.run([QEMU, "-cpu", "EPYC-Milan-v1", sys.executable, str(ROOT / "benchmarks" / "int8_cpu_tiers.py"),
                    "--json", str(out)], check=True, capture_output=True, timeout=900)  # fmt: skip
    rows = json.loads(out.read_text())
    assert rows["u8s8"]["kernels_vs_exact"] > 0.05  # the emulated CPU really runs the AVX2 kernels
    assert rows["s8s8"]["kernels_vs_exact"] > 0.05
    for form in ("u8s8-7bit", "u8u8"):
        assert rows[form]["kernels_vs_exact"] < 1e-4, form
        assert rows[form]["kernels_vs_fp32"] == pytest.approx(rows[form]["exact_vs_fp32"], abs=1e-4)
