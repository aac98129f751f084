"""Two INT8 artifacts from one calibration (TensorRT: symmetric int8; ONNX Runtime CPU:
uint8 activations), which one each consumer picks, and the score-shift budget."""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from fakedet.calibration.ort_run import session
from fakedet.calibration.pipeline import GuardFailed, Options, calibrate
from fakedet.export import tensorrt_rules
from fakedet.runtime.selection import choose, onnx_for
from fakedet.runtime.tensorrt_support import TrtEnvironment
from onnx import numpy_helper
from test_calibration_pipeline import outlier_net, setup  # noqa: F401  (setup is a pytest fixture)

from fakedet.cli import main
from fakedet.package import ModelPackage, PackageWriter

NO_TRT = TrtEnvironment(why_absent=["TensorRT is not installed here"])
TRT_EP = {"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}


def zero_points(path) -> dict[str, np.ndarray]:
    """{tensor quantized: its zero-point array} (read from the initializers)."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return {n.input[0]: inits[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear"}


def run(path, x: np.ndarray, exact: bool = False) -> np.ndarray:
    """ORT's CPU kernels on the model, or (`exact`) the exact quantization arithmetic."""
    s = session(path, exact=exact)
    return s.run(None, {s.get_inputs()[0].name: x})[0].ravel()


def weight_ints(path) -> list[np.ndarray]:
    """The 8-bit quantized weight initializers of a QDQ model (biases are int32)."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    dq = [inits[n.input[0]] for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    return [w for w in dq if w.dtype != np.int32]


def test_cpu_artifact_has_uint8_activations_tracks_fp32_and_is_picked_per_target(setup):
    t = setup
    calibrate(t / "det.fdet", Options(data=t / "calib", method="percentile", samples=16, eval_data=t / "heldout",
                                            max_auc_drop=0.02, max_score_shift=0.05, progress=False,
                                            cpu_bench_seconds=0.2))  # fmt: skip
    pkg = ModelPackage.open(t / "det.fdet")
    pkg.verify()
    qdq = {a.file: a for a in pkg.manifest.artifacts_of("onnx-int8-qdq")}
    assert set(qdq) == {"model.int8.onnx", "model.int8-cpu.onnx"}
    trt, cpu = qdq["model.int8.onnx"], qdq["model.int8-cpu.onnx"]
    assert (trt.attrs["target"], trt.attrs["activations"]) == ("tensorrt", "int8")
    assert (cpu.attrs["target"], cpu.attrs["activations"]) == ("ort-cpu", "uint8")
    for k in ("calibration_key", "model_sha256", "data_digest", "method", "samples", "per_channel", "seed", "kept_float"):
        assert k in cpu.attrs and k in trt.attrs
    assert cpu.attrs["cpu_speedup"] > 0 and "threads" in cpu.attrs["cpu_speedup_measured_on"]
    assert "cpu_speedup" not in trt.attrs

    zp_trt, zp_cpu = zero_points(pkg.root / trt.file), zero_points(pkg.root / cpu.file)
    assert zp_trt and all(z.dtype == np.int8 and not z.any() for z in zp_trt.values())
    assert zp_cpu and all(z.dtype == np.uint8 for z in zp_cpu.values())
    # every quantized tensor of this net after convA is non-negative (ReLU, pool, flatten of one): zero-point 0
    assert set(zp_cpu) <= {"x", "a", "ar", "b", "br", "g", "f"}
    assert all(int(z) == 0 for k, z in zp_cpu.items() if k != "x")
    # both flavours come from the same ranges: scale(uint8, [0, a]) = a/255, scale(int8, [-a, a]) = a/127
    rep = json.loads((pkg.root / "calibration.json").read_text())
    assert rep["artifacts"]["model.int8-cpu.onnx"]["activations"] == "uint8"
    assert "cpu_speed" in rep and rep["cpu_speed"]["speedup"] == pytest.approx(cpu.attrs["cpu_speedup"], abs=1e-3)

    # 7-bit weights: ORT's u8 x s8 kernels cannot saturate, so on every CPU tier they compute
    # the exact quantization arithmetic, and that tracks FP32 (held-out-like inputs)
    assert cpu.attrs["weights"] == "int8-7bit" and cpu.attrs["tier_proof"] is True
    assert all(w.dtype == np.int8 and np.abs(w.astype(int)).max() <= 64 for w in weight_ints(pkg.root / cpu.file))
    assert max(np.abs(w.astype(int)).max() for w in weight_ints(pkg.root / trt.file)) > 64  # TensorRT keeps 8 bits
    assert set(cpu.attrs["validated_cpu"]) >= {"vendor", "model", "arch", "features", "tier"}
    assert rep["validated_cpu"] == cpu.attrs["validated_cpu"] and cpu.attrs["kernels_vs_exact"] < 0.02
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(0.45, 0.15, (16, 3, 16, 16)), 0, 0.97).astype(np.float32)
    l32 = run(pkg.root / "model.onnx", x)
    l8, exact = run(pkg.root / cpu.file, x), run(pkg.root / cpu.file, x, exact=True)
    assert np.abs(l8 - exact).max() < 0.02  # fused requantization rounds once where the graph rounds twice
    assert np.corrcoef(l32, exact)[0, 1] > 0.97
    assert np.abs(exact - l32).max() < 0.05  # logits; |dP| is below a quarter of that
    assert np.abs(l8 - l32).max() < 0.07
    g = rep["artifacts"]["model.int8-cpu.onnx"]["guard"]
    assert g["final"]["shift"]["mean_abs_dp"] <= 0.05 and g["passed"]

    # selection: ort-cpu runs the CPU flavour, the GPU routes and TensorRT builds the other
    assert choose(pkg, "ort-cpu", "int8", trt_env=NO_TRT, providers={"CPUExecutionProvider"}).artifact.file == cpu.file
    assert choose(pkg, "auto", trt_env=NO_TRT, providers=TRT_EP).artifact.file == trt.file
    assert onnx_for(pkg, "int8", target="tensorrt").file == trt.file
    assert tensorrt_rules.source_artifact(pkg.manifest, "onnx-int8-qdq").file == trt.file
    m = pkg.manifest.copy()  # whatever the manifest order
    m.artifacts = list(reversed(m.artifacts))
    assert tensorrt_rules.source_artifact(m, "onnx-int8-qdq").file == trt.file


def test_old_package_without_target_serves_both_routes(setup):
    """An INT8 QDQ without a `target` attr (older calibrations) is the TensorRT flavour and still runs on the CPU."""
    t = setup
    calibrate(t / "det.fdet", Options(data=t / "calib", method="percentile", samples=16, progress=False, cpu_bench_seconds=0))
    pkg = ModelPackage.open(t / "det.fdet")
    m = pkg.manifest.copy()
    m.artifacts = [a for a in m.artifacts if a.file != "model.int8-cpu.onnx"]
    for a in m.artifacts:
        a.attrs.pop("target", None)
    with PackageWriter(t / "old.fdet", m, base=pkg) as w:
        for a in m.artifacts:
            w.add_file(pkg.root / a.file, a.file, a.kind, **a.attrs)
    old = ModelPackage.open(t / "old.fdet")
    assert choose(old, "ort-cpu", "int8", trt_env=NO_TRT, providers={"CPUExecutionProvider"}).artifact.file == "model.int8.onnx"
    assert tensorrt_rules.source_artifact(old.manifest, "onnx-int8-qdq").file == "model.int8.onnx"


def test_score_shift_budget_engages_fallback_then_warns_or_fails_with_strict(setup, caplog, capsys):
    t = setup
    # minmax keeps the outlier's range: the signal rounds away, AUC and scores move a lot.
    # A generous AUC budget isolates the score-shift budget; no float layer can make it 0.
    opts = dict(data=t / "calib", method="minmax", samples=16, eval_data=t / "heldout", max_auc_drop=1.0,  # noqa: C408
                max_score_shift=0.0, max_float_layers=1, progress=False, cpu_bench_seconds=0)  # fmt: skip
    with caplog.at_level("WARNING", logger="fakedet.calibration"):
        res = calibrate(t / "det.fdet", Options(**opts))
    for art in res.report["artifacts"].values():
        g = art["guard"]
        assert g["initial"]["shift"]["mean_abs_dp"] > 0.05
        assert g["sensitivity"] and g["steps"]  # the fallback engaged on the shift alone
        assert g["shift_passed"] is False and g["passed"] is True
        # the layer it tried did not cure the shift, so none is kept for it
        assert art["kept_float"] == []
    assert "max-score-shift" in caplog.text and "written anyway" in caplog.text
    assert ModelPackage.open(t / "det.fdet").manifest.artifact("onnx-int8-qdq") is not None

    # a budget the fallback can meet: it keeps the sensitive layer in float and passes
    res = calibrate(t / "det.fdet", Options(**{**opts, "max_score_shift": 0.05, "max_float_layers": 2}))
    for art in res.report["artifacts"].values():
        assert art["guard"]["shift_passed"] is True and art["kept_float"]
        assert art["guard"]["final"]["shift"]["mean_abs_dp"] <= 0.05

    # --strict: the same failure as a missed AUC budget, nothing written
    before = (t / "det.fdet" / "manifest.json").read_bytes() if (t / "det.fdet" / "manifest.json").exists() else None
    with pytest.raises(GuardFailed, match="max-score-shift"):
        calibrate(t / "det.fdet", Options(**opts, strict=True))
    if before is not None:
        assert (t / "det.fdet" / "manifest.json").read_bytes() == before
    args = ["calibrate", str(t / "det.fdet"), "--data", str(t / "calib"), "--method", "minmax", "--samples", "16",
            "--eval-data", str(t / "heldout"), "--max-auc-drop", "1", "--max-score-shift", "0", "--max-float-layers",
            "1", "--strict", "-q"]  # fmt: skip
    assert main(args) == 1
    assert main(args[:-2] + ["-q"]) == 0
    out = capsys.readouterr().out
    assert "model.int8-cpu.onnx (ort-cpu, uint8): AUC fp32" in out and "agreement" in out and "mean |dP|" in out
    assert "SCORE SHIFT OVER BUDGET" in out


def test_uint8_flavour_zero_points_from_the_same_ranges(tmp_path):
    """Signed tensors get zero-point 128 on [-a, a]; ReLU outputs (and pools/flattens of them)
    zero-point 0 on [0, a], so scale a/255; the int8 flavour stays symmetric with zero-point 0."""
    from fakedet.calibration.qdq import quantize_qdq

    outlier_net(tmp_path / "net.onnx")
    amax = {"x": 1.0, "a": 50.0, "ar": 2.0, "b": 3.0, "br": 3.0, "g": 1.5, "f": 1.5}
    quantize_qdq(tmp_path / "net.onnx", amax, True, tmp_path / "u8.onnx", activations="uint8")
    quantize_qdq(tmp_path / "net.onnx", amax, True, tmp_path / "s8.onnx", activations="int8")
    m = onnx.load(str(tmp_path / "u8.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    scale = {n.input[0]: float(inits[n.input[1]]) for n in m.graph.node if n.op_type == "QuantizeLinear"}
    zp = zero_points(tmp_path / "u8.onnx")
    assert int(zp["x"]) == 128 and scale["x"] == pytest.approx(2 * 1.0 / 255, rel=1e-5)
    for t, a in (("ar", 2.0), ("br", 3.0), ("g", 1.5), ("f", 1.5)):
        assert int(zp[t]) == 0 and scale[t] == pytest.approx(a / 255, rel=1e-5), t
    # with the zero-point at the type minimum the ReLUs fold into the quantizers
    assert "Relu" not in {n.op_type for n in m.graph.node}
    zp8 = zero_points(tmp_path / "s8.onnx")
    assert all(z.dtype == np.int8 and int(z) == 0 for z in zp8.values())
    x = np.random.default_rng(0).uniform(0, 0.9, (4, 3, 16, 16)).astype(np.float32)  # inside the ranges
    l32, l8 = run(tmp_path / "net.onnx", x), run(tmp_path / "u8.onnx", x, exact=True)
    assert np.abs(l8 - l32).max() < 0.03
