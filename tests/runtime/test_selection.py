"""Backend selection: auto order, ONNX Runtime provider fallbacks, refusals that say
what the package has and what would make it runnable."""

import pytest
from fakedet.runtime.backends.registry import backend_class
from fakedet.runtime.selection import choose, make_backend
from fakedet.runtime.tensorrt_support import TrtEnvironment
from package_helpers import add_artifacts, plan_attrs

from fakedet.errors import BackendUnavailable
from fakedet.package import ModelPackage

NO_TRT = TrtEnvironment(why_absent=["TensorRT is not installed here"])
CPU = {"CPUExecutionProvider"}
CUDA = {"CUDAExecutionProvider", "CPUExecutionProvider"}
TRT_EP = {"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}
# these packages' INT8 has 8-bit weights and no CPU record: INT8 goes first only on a CPU whose
# kernels are exact for it (VNNI); tests/runtime/test_int8_cpu_tiers.py covers the other tiers
VNNI = {"vendor": "test", "model": "VNNI CPU", "arch": "x86_64", "features": ["avx512_vnni"], "tier": "x86_64-avx512-vnni"}


@pytest.fixture
def pkg_int8(tiny_package, tmp_path):
    pkg_dir, _ = tiny_package
    add_artifacts(pkg_dir, int8=True, tmp=tmp_path)
    return ModelPackage.open(pkg_dir)


def test_auto_order_follows_providers(pkg_int8):
    c = choose(pkg_int8, "auto", trt_env=NO_TRT, providers=TRT_EP)
    assert (c.backend, c.precision) == ("ort-trt", "int8")
    assert "tensorrt: TensorRT is not installed" in c.considered[0] or "no TensorRT plan" in c.considered[0]
    c = choose(pkg_int8, "auto", trt_env=NO_TRT, providers=CUDA)
    assert (c.backend, c.precision) == ("ort-cuda", "fp32")  # CUDA EP: fp16 then fp32; INT8 QDQ is a CPU/TRT win
    assert any("no TensorrtExecutionProvider" in line for line in c.considered)
    c = choose(pkg_int8, "auto", trt_env=NO_TRT, providers=CPU, cpu=VNNI)
    assert (c.backend, c.precision) == ("ort-cpu", "int8")
    assert any("no CUDAExecutionProvider" in line for line in c.considered)


def test_cpu_falls_back_to_fp32_without_int8(tiny_package):
    pkg = ModelPackage.open(tiny_package[0])
    c = choose(pkg, "auto", trt_env=NO_TRT, providers=CPU)
    assert (c.backend, c.precision) == ("ort-cpu", "fp32")


def test_cpu_prefers_fp32_when_calibration_measured_int8_slower(pkg_int8):
    from fakedet.package import PackageWriter

    for speedup, first in ((0.6, "fp32"), (2.5, "int8")):
        m = pkg_int8.manifest.copy()
        art = m.artifact("onnx-int8-qdq")
        art.attrs.update(cpu_speedup=speedup, cpu_speedup_measured_on="test cpu")
        with PackageWriter(pkg_int8.root, m, base=pkg_int8):
            pass
        pkg = ModelPackage.open(pkg_int8.root)
        c = choose(pkg, "auto", trt_env=NO_TRT, providers=CPU, cpu=VNNI)
        assert c.precision == first
        assert any("0.60x FP32" in line for line in c.considered) == (first == "fp32")
        assert choose(pkg, "ort-cpu", "int8", trt_env=NO_TRT, providers=CPU).precision == "int8"  # asked: honoured


def test_explicit_gpu_provider_missing_is_refused_with_fix(pkg_int8):
    with pytest.raises(BackendUnavailable) as e:
        choose(pkg_int8, "ort-trt", trt_env=NO_TRT, providers=CPU)
    msg = str(e.value)
    assert "no TensorrtExecutionProvider" in msg and "onnxruntime-gpu" in msg
    # the package already has what ort-trt runs: no advice to export or calibrate it again
    assert "fakedet export" not in msg and "fakedet calibrate" not in msg


def test_gpu_provider_present_but_no_artifact_suggests_the_package_fix(tiny_package):
    pkg = ModelPackage.open(tiny_package[0])  # fp32 only
    with pytest.raises(BackendUnavailable) as e:
        choose(pkg, "ort-trt", "int8", trt_env=NO_TRT, providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
    assert "fakedet calibrate" in str(e.value)


def test_missing_artifact_lists_what_package_has_and_how_to_fix(tiny_package):
    pkg = ModelPackage.open(tiny_package[0])
    with pytest.raises(BackendUnavailable) as e:
        choose(pkg, "tensorrt", trt_env=NO_TRT, providers=CPU)
    msg = str(e.value)
    assert "(onnx-fp32)" in msg and f"fakedet build {pkg.source} --precision fp16" in msg
    with pytest.raises(BackendUnavailable) as e:
        choose(pkg, "ort-cpu", "int8", trt_env=NO_TRT, providers=CPU)
    msg = str(e.value)
    assert "no int8 ONNX" in msg and "(onnx-fp32)" in msg and "fakedet calibrate" in msg


def test_plan_for_other_gpu_refused_and_explicit_tensorrt_says_why(tiny_package, tmp_path):
    pkg_dir, _ = tiny_package
    add_artifacts(pkg_dir, plans=[plan_attrs()], tmp=tmp_path)
    pkg = ModelPackage.open(pkg_dir)
    rtx = TrtEnvironment("10.3.0", "8.6", "RTX 3090")
    with pytest.raises(BackendUnavailable) as e:
        choose(pkg, "tensorrt", trt_env=rtx, providers=CPU)
    msg = str(e.value)
    assert "compute capability 8.7" in msg and "RTX 3090" in msg and "fakedet build" in msg
    assert "model.fp16.0.engine (trt-plan, fp16)" in msg
    c = choose(pkg, "auto", trt_env=rtx, providers=CPU)
    assert c.backend == "ort-cpu"  # ONNX used instead


def test_unknown_names_refused(tiny_package):
    pkg = ModelPackage.open(tiny_package[0])
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        choose(pkg, "openvino", providers=CPU, trt_env=NO_TRT)
    with pytest.raises(BackendUnavailable, match="unknown precision"):
        choose(pkg, "auto", "bf16", providers=CPU, trt_env=NO_TRT)
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        backend_class("jax")


def test_ort_trt_backend_gets_cache_in_package_folder(pkg_int8):
    c = choose(pkg_int8, "ort-trt", "int8", trt_env=NO_TRT, providers=TRT_EP)
    b = make_backend(c, pkg_int8)  # constructing is free: nothing loads until open()
    assert b.options["cache_dir"] == str(pkg_int8.root / ".cache" / "ort-trt")
    assert b.options["int8"] is True and b.options["fp16"] is False


def test_runtime_import_stays_torch_free():
    import subprocess
    import sys

    code = ("import sys, fakedet.runtime, fakedet.runtime.selection, fakedet.runtime.bench, "
            "fakedet.runtime.bench.cli, fakedet.runtime.cuda_api, fakedet.runtime.backends.tensorrt_backend; "
            "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules and 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_int8_flavour_follows_the_route(pkg_int8, tmp_path):
    """A package with both QDQ flavours: ort-cpu runs target=ort-cpu and reads its cpu_speedup;
    ort-trt (and TensorRT builds) take target=tensorrt; a QDQ without a target counts as tensorrt."""
    from fakedet.runtime.selection import onnx_for

    from fakedet.package import PackageWriter

    src = pkg_int8.root / "model.int8.onnx"
    m = pkg_int8.manifest.copy()
    m.artifact("onnx-int8-qdq").attrs.update(target="tensorrt", activations="int8", cpu_speedup=0.5)
    with PackageWriter(pkg_int8.root, m, base=pkg_int8) as w:
        w.add_file(src, "model.int8-cpu.onnx", "onnx-int8-qdq", target="ort-cpu", activations="uint8",
                   cpu_speedup=3.1, cpu_speedup_measured_on="test cpu, 2 threads")  # fmt: skip
    pkg = ModelPackage.open(pkg_int8.root)
    assert onnx_for(pkg, "int8", target="ort-cpu").file == "model.int8-cpu.onnx"
    assert onnx_for(pkg, "int8", target="tensorrt").file == "model.int8.onnx"
    assert onnx_for(pkg, "int8", target="ort-trt").file == "model.int8.onnx"
    c = choose(pkg, "auto", trt_env=NO_TRT, providers=CPU, cpu=VNNI)  # 3.1x on the CPU flavour: int8 first
    assert (c.backend, c.artifact.file) == ("ort-cpu", "model.int8-cpu.onnx")
    assert choose(pkg, "auto", trt_env=NO_TRT, providers=TRT_EP).artifact.file == "model.int8.onnx"

    # only the CPU flavour: the GPU route takes it anyway (else the other); no target = tensorrt
    m = pkg.manifest.copy()
    m.artifacts = [a for a in m.artifacts if a.file != "model.int8.onnx"]
    with PackageWriter(tmp_path / "cpu_only.fdet", m, base=pkg) as w:
        for a in m.artifacts:
            w.add_file(pkg.root / a.file, a.file, a.kind, **a.attrs)
    only = ModelPackage.open(tmp_path / "cpu_only.fdet")
    assert onnx_for(only, "int8", target="tensorrt").file == "model.int8-cpu.onnx"
    assert onnx_for(pkg_int8, "int8", target="ort-cpu").file == "model.int8.onnx"


def test_a_new_backend_is_one_record_that_choose_loops_over(pkg_int8, monkeypatch):
    """choose knows backends only through their registry records: a record added with a
    provider of its own, ranked between the CUDA EP and the CPU, is picked by `auto` where
    that provider exists (with its precisions and reason), skipped with the reason where not,
    and built with the ONNX Runtime backend's providers from the same record."""
    from fakedet.runtime.backends import onnxruntime_backend, registry

    rec = registry.Entry("ort-fake", registry.BUILTIN["ort-cpu"].target, {"provider_set": "ort-fake"},
                         speed_rank=2.5, providers=("FakeExecutionProvider", "CPUExecutionProvider"),
                         needs_provider="FakeExecutionProvider", precisions=("fp32",),
                         reason="ONNX Runtime has the FakeExecutionProvider")
    monkeypatch.setitem(registry.BUILTIN, "ort-fake", rec)
    monkeypatch.setitem(onnxruntime_backend.PROVIDERS, "ort-fake", list(rec.providers))
    c = choose(pkg_int8, "auto", trt_env=NO_TRT, providers=CPU | {"FakeExecutionProvider"}, cpu=VNNI)
    assert (c.backend, c.precision) == ("ort-fake", "fp32") and c.reason.startswith(rec.reason)
    c = choose(pkg_int8, "auto", trt_env=NO_TRT, providers=CPU, cpu=VNNI)
    assert c.backend == "ort-cpu" and any(line.startswith("ort-fake: ONNX Runtime here has no FakeExecutionProvider")
                                          for line in c.considered)
    with pytest.raises(BackendUnavailable, match="ort-fake: ONNX Runtime here has no FakeExecutionProvider"):
        choose(pkg_int8, "ort-fake", trt_env=NO_TRT, providers=CPU)
    assert onnxruntime_backend.provider_options("ort-fake", {}) == ["FakeExecutionProvider", "CPUExecutionProvider"]
