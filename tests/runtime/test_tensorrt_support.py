"""Plan compatibility rules and the TensorRT backend's pure shape/profile/buffer arithmetic.
No TensorRT needed: these are the rules, checked against NVIDIA's documented behaviour."""


import numpy as np
import pytest

from fakedet.package import ModelPackage
from fakedet.runtime import tensorrt_support as ts
from fakedet.runtime.backends import tensorrt_shapes as shapes
from fakedet.runtime import tensorrt_version as tv
from fakedet.runtime.tensorrt_support import TrtEnvironment
from package_helpers import add_artifacts, plan_attrs

ORIN = TrtEnvironment(trt_version="10.3.0.30", compute_capability="8.7", device_name="Orin", integrated=True,
                      dla_cores=2)
A100 = TrtEnvironment(trt_version="10.3.0.26", compute_capability="8.0", device_name="A100")
H100_NEWER = TrtEnvironment(trt_version="10.16.0", compute_capability="9.0", device_name="H100")


@pytest.mark.parametrize("text,expected", [("10.3.0.26", (10, 3, 0)), ("8.6", (8, 6, 0)), ("11.4.1", (11, 4, 1))])
def test_parse_version(text, expected):
    assert tv.parse_version(text) == expected


def test_exact_version_required_without_version_compatibility():
    assert tv.version_rule("10.3.0", "10.3.0.26", False)[0]
    ok, why = tv.version_rule("10.3.0", "10.4.0", False)
    assert not ok and "exact" in why and "10.3.0" in why and "10.4.0" in why
    assert not tv.version_rule("10.3.0", "10.3.1", False)[0]
    assert not tv.version_rule("8.6.1", "8.5.2", False)[0]


@pytest.mark.parametrize("built,here,ok", [
    ("10.3.0", "10.16.0", True),    # newer runtime, same major
    ("10.3.0", "10.2.0", False),    # never older
    ("8.6.1", "8.6.2", True),
    ("8.5.2", "8.6.1", False),      # version compatibility starts at 8.6
    ("8.6.1", "10.3.0", True),      # 8 -> 10 supported
    ("10.16.0", "11.4.0", True),    # 10 -> 11 supported
    ("8.6.1", "11.4.0", False),     # 8 -> 11 not
    ("11.4.0", "10.16.0", False),
])
def test_version_compatible_rule(built, here, ok):
    assert tv.version_rule(built, here, True)[0] is ok


def test_hardware_rules():
    assert ts.hardware_rule("8.7", "8.7")[0]
    ok, why = ts.hardware_rule("8.7", "8.6", "none", plan_device="Orin", runtime_device="RTX 3090")
    assert not ok and "8.7" in why and "8.6" in why and "RTX 3090" in why
    assert ts.hardware_rule("8.6", "9.0", "ampere+")[0]
    assert ts.hardware_rule("8.0", "8.9", "ampere+")[0]
    assert not ts.hardware_rule("8.0", "7.5", "ampere+")[0]  # Turing is not ampere+
    ok, why = ts.hardware_rule("8.6", "8.7", "ampere+", integrated=True)
    assert not ok and "integrated" in why  # not supported on JetPack


def test_dla_rule():
    assert ts.dla_rule(None, 0)[0]
    assert ts.dla_rule(1, 2)[0]
    assert not ts.dla_rule(0, 0)[0]
    assert "DLA core 1" in ts.dla_rule(1, 1)[1]


def test_plan_runs_here_combines_rules():
    assert ts.plan_runs_here(plan_attrs(), ORIN)[0]
    ok, why = ts.plan_runs_here(plan_attrs(), A100)  # other GPU
    assert not ok and "compute capability 8.7" in why
    ok, why = ts.plan_runs_here(plan_attrs(compute_capability="8.0", hardware_compatibility="ampere+",
                                           version_compatible=True), H100_NEWER)
    assert ok, why
    ok, why = ts.plan_runs_here(plan_attrs(dla_core=0), TrtEnvironment("10.3.0", "8.7", "Orin Nano", True, 0))
    assert not ok and "DLA" in why
    ok, why = ts.plan_runs_here(plan_attrs(), TrtEnvironment(why_absent=["TensorRT is not installed here"]))
    assert not ok and "not installed" in why


def test_foreign_plans_refused_and_onnx_used(tiny_package, tmp_path):
    pkg_dir, _ = tiny_package
    add_artifacts(pkg_dir, plans=[plan_attrs(), plan_attrs(trt_version="8.6.1", precision="int8")], tmp=tmp_path)
    pkg = ModelPackage.open(pkg_dir)
    from fakedet.runtime.selection import choose

    c = choose(pkg, "auto", trt_env=A100, providers={"CPUExecutionProvider"})
    assert c.backend == "ort-cpu" and c.artifact.kind == "onnx-fp32"
    joined = " ".join(c.considered)
    assert "model.fp16.0.engine' refused" in joined and "compute capability 8.7" in joined
    assert "model.int8.1.engine' refused" in joined and "8.6.1" in joined
    # On the Orin it was built for, the fp16 plan runs (the int8 one is for TensorRT 8.6).
    c = choose(pkg, "auto", trt_env=ORIN, providers={"CPUExecutionProvider"})
    assert c.backend == "tensorrt" and c.artifact.file == "model.fp16.0.engine" and "runs here" in c.reason


def test_auto_prefers_int8_plan_when_both_run(tiny_package, tmp_path):
    pkg_dir, _ = tiny_package
    add_artifacts(pkg_dir, plans=[plan_attrs(), plan_attrs(precision="int8", calibration="qdq")], tmp=tmp_path)
    pkg = ModelPackage.open(pkg_dir)
    plan, why = ts.matching_plan(pkg, "auto", env=ORIN)
    assert plan.attrs["precision"] == "int8"
    plan, why = ts.matching_plan(pkg, "fp16", env=ORIN)
    assert plan.attrs["precision"] == "fp16"
    plan, why = ts.matching_plan(pkg, "fp32", env=ORIN)
    assert plan is None and "no fp32 TensorRT plan" in why and "fp16" in why


def test_explain_lines(tiny_package, tmp_path):
    pkg_dir, _ = tiny_package
    add_artifacts(pkg_dir, plans=[plan_attrs()], tmp=tmp_path)
    pkg = ModelPackage.open(pkg_dir)
    from fakedet.runtime.selection import explain

    lines = explain(pkg, providers={"CPUExecutionProvider"}, trt_env=A100)
    text = "\n".join(lines)
    assert "TensorRT 10.3.0.26" in lines[0] and "A100" in lines[0]
    assert "refused" in text and "auto selects ort-cpu" in text and "not chosen: tensorrt" in text
    lines = explain(pkg, providers={"CPUExecutionProvider"}, trt_env=ORIN)
    assert any("runs here" in line for line in lines) and any("auto selects tensorrt" in line for line in lines)


# ---- profiles, batches, buffers -------------------------------------------
PROFILES = [((1, 3, 16, 16), (1, 3, 16, 16), (4, 3, 16, 16)),
            ((4, 3, 16, 16), (8, 3, 16, 16), (16, 3, 16, 16)),
            ((16, 3, 16, 16), (32, 3, 16, 16), (32, 3, 16, 16))]


def test_profile_for_batch_covers_and_prefers_nearest_opt():
    for b in range(1, 33):
        i = shapes.profile_for_batch(PROFILES, b)
        lo, _, hi = PROFILES[i]
        assert lo[0] <= b <= hi[0]
        # brute force: no covering profile has an opt strictly nearer to b
        covering = [j for j, p in enumerate(PROFILES) if p[0][0] <= b <= p[2][0]]
        assert abs(PROFILES[i][1][0] - b) == min(abs(PROFILES[j][1][0] - b) for j in covering)
    assert shapes.profile_for_batch(PROFILES, 33) is None
    assert shapes.profile_for_batch(PROFILES, 4) in (0, 1)


def test_buffer_sizes_and_shapes():
    assert shapes.buffer_nbytes((32, 3, 224, 224), 2) == 32 * 3 * 224 * 224 * 2
    assert shapes.buffer_nbytes((8, 1), np.dtype(np.float32).itemsize) == 32
    with pytest.raises(ValueError):
        shapes.buffer_nbytes((-1, 3, 224, 224), 4)
    assert shapes.max_shape_over_profiles([p[2] for p in PROFILES]) == (32, 3, 16, 16)
    assert shapes.concrete_shape((-1, 3, -1, -1), 5, (3, 20, 24)) == (5, 3, 20, 24)
    with pytest.raises(ValueError):
        shapes.concrete_shape((-1, 3, 16, 16), 2, (3, 32, 32))


@pytest.mark.gpu
def test_detected_environment_on_a_gpu_machine():
    env = ts.detect_environment()
    if not env.usable:
        pytest.skip(f"needs TensorRT and a CUDA GPU: {'; '.join(env.why_absent)}")
    tv.parse_version(env.trt_version)
    ts.parse_cc(env.compute_capability)


def test_io_api_generation():
    assert ts.io_api("10.3.0", True) == "tensor"
    assert ts.io_api("11.4.0", True) == "tensor"
    assert ts.io_api("8.6.1", True) == "tensor"
    assert ts.io_api("8.5.2", True) == "bindings"  # JetPack 5
    assert ts.io_api("8.5.2", True, forced="tensor") == "tensor"
    assert ts.io_api("8.4.1", False) == "bindings"
    with pytest.raises(ValueError):
        ts.io_api("10.3.0", True, forced="bindings")
    with pytest.raises(ValueError):
        ts.io_api("8.4.1", False, forced="tensor")


def test_profile_for_shape_checks_spatial_axes():
    whole = [((1, 3, 128, 128), (1, 3, 512, 512), (4, 3, 1024, 1024)),
             ((1, 3, 64, 64), (1, 3, 64, 64), (4, 3, 127, 127))]
    assert shapes.profile_for_batch(whole, 2, (3, 512, 700)) == 0
    assert shapes.profile_for_batch(whole, 2, (3, 100, 100)) == 1
    assert shapes.profile_for_batch(whole, 2, (3, 2000, 512)) is None
    assert shapes.profile_for_batch(whole, 5, (3, 512, 512)) is None
