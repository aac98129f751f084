"""Calibration of activations fakedet never trained: constant, near-constant, all-zero,
huge-range and non-finite tensors, for every method, against ranges computed here in numpy."""

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from fakedet.calibration.ranges import METHODS, compute_ranges, method_params  # noqa: E402

SIZE = 8


def _model(path: Path, seed: int = 0) -> dict:
    """Random-init conv -> relu -> pool -> logit, plus side tensors of every awkward kind
    (they feed the logit multiplied by zero, except the non-finite one, which dangles)."""
    from onnx import TensorProto as T, helper as h, numpy_helper as nh

    rng = np.random.default_rng(seed)
    w = {"wc": rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "bc": rng.normal(0, 0.1, 4).astype(np.float32),
         "wf": rng.normal(0, 1, (1, 4)).astype(np.float32), "bf": np.array([0.1], np.float32)}  # fmt: skip
    consts = {"zero_f": 0.0, "one_f": 1.0, "c25": 2.5, "tiny": 1e-7, "e40": 40.0}
    inits = [nh.from_array(v, k) for k, v in w.items()]
    inits += [nh.from_array(np.array(v, np.float32), k) for k, v in consts.items()]
    nodes = [
        h.make_node("Conv", ["x", "wc", "bc"], ["feat"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["feat"], ["feat_r"]),
        h.make_node("GlobalAveragePool", ["feat_r"], ["g"]),
        h.make_node("Flatten", ["g"], ["f"]),
        h.make_node("Gemm", ["f", "wf", "bf"], ["l0"], transB=1),
        h.make_node("Mul", ["x", "zero_f"], ["zero"]),  # all zero
        h.make_node("Add", ["zero", "c25"], ["const"]),  # constant 2.5
        h.make_node("Mul", ["x", "tiny"], ["xt"]),
        h.make_node("Add", ["xt", "one_f"], ["near"]),  # 1 + 1e-7 x: one or two float32 values
        h.make_node("Mul", ["x", "e40"], ["x40"]),
        h.make_node("Exp", ["x40"], ["huge"]),  # 1 .. 2e17 (5e34 for normalized pixels)
        h.make_node("Log", ["zero"], ["nonfinite"]),  # -inf
        h.make_node("Add", ["const", "near"], ["s1"]),
        h.make_node("Add", ["s1", "huge"], ["s2"]),
        h.make_node("ReduceMean", ["s2"], ["s3"], keepdims=0, axes=[1, 2, 3]),
        h.make_node("Mul", ["s3", "zero_f"], ["s4"]),
        h.make_node("Unsqueeze", ["s4", "ax1"], ["s5"]),
        h.make_node("Add", ["l0", "s5"], ["logit"]),
    ]
    inits.append(nh.from_array(np.array([1], np.int64), "ax1"))
    g = h.make_graph(nodes, "awkward", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, SIZE, SIZE])],
                     [h.make_tensor_value_info("logit", T.FLOAT, ["N", 1])], inits)  # fmt: skip
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return w


def _reference_amax(batches) -> dict:
    """max |x| of each awkward tensor, computed in float32 numpy as the graph does."""
    x = np.concatenate(batches).astype(np.float32)
    one, tiny = np.float32(1.0), np.float32(1e-7)
    with np.errstate(over="ignore"):
        huge = np.exp(x * np.float32(40.0))
    return {"x": float(np.abs(x).max()), "const": 2.5, "near": float(np.abs(x * tiny + one).max()),
            "huge": float(np.abs(huge).max())}  # fmt: skip


def _batches(n=3, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1, (4, 3, SIZE, SIZE)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_copes_with_awkward_activations(tmp_path, method):
    _model(tmp_path / "m.onnx")
    batches = _batches()
    notes = {}
    params = method_params(method, num_bins=512)  # ORT's entropy search is quadratic in the bins
    amax = compute_ranges(tmp_path / "m.onnx", batches, method, params, progress=False, notes=notes)
    ref = _reference_amax(batches)
    # no range exists for these: kept in float, named with the reason
    assert set(notes["kept_float"]) >= {"zero", "nonfinite"}
    assert "all zero" in notes["kept_float"]["zero"] and "non-finite" in notes["kept_float"]["nonfinite"]
    assert not {"zero", "nonfinite"} & set(amax)
    for name, r in ref.items():
        assert name in amax and np.isfinite(amax[name]) and 0 < amax[name] <= r * (1 + 1e-6), (name, amax.get(name), r)
    if method == "minmax":
        for name, r in ref.items():
            assert amax[name] == pytest.approx(r, rel=1e-6), name
    if method in ("percentile", "mse"):  # numpy cannot bin |1 + 1e-7 x| finely: min-max range instead
        assert amax["near"] == pytest.approx(ref["near"], rel=1e-6)
        assert "near" in notes["minmax_fallback"]
    if method == "percentile":  # an ordinary tensor against numpy's percentile of |x|
        assert amax["x"] == pytest.approx(np.percentile(np.abs(np.concatenate(batches)), 99.999), abs=ref["x"] / 500)


def test_range_growing_a_millionfold_falls_back_instead_of_a_billion_bins(tmp_path):
    _model(tmp_path / "m.onnx")
    small = [b * np.float32(1e-6) for b in _batches(1)]
    notes = {}
    amax = compute_ranges(tmp_path / "m.onnx", small + _batches(1, seed=2), "percentile", method_params("percentile"),
                          progress=False, notes=notes)  # fmt: skip
    assert "x" in notes["minmax_fallback"]
    assert amax["x"] == pytest.approx(float(np.abs(_batches(1, seed=2)[0]).max()), rel=1e-6)


def test_calibrate_command_keeps_uncalibratable_tensors_in_float(tmp_path):
    from conftest import save_image
    from fakedet.calibration.pipeline import Options, calibrate
    from fakedet.package import ModelPackage
    from fakedet.runtime import Detector

    _model(tmp_path / "m.onnx")
    spec = {"name": "awkward", "input": {"name": "x", "mean": [0.5] * 3, "std": [0.25] * 3,
                                         "preprocess": {"policy": "resize", "size": [SIZE, SIZE]}},
            "output": {"name": "logit", "kind": "logit"}}  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    imgs = [save_image(tmp_path / "photos" / f"{i}.png", size=(12, 10), seed=i) for i in range(6)]
    res = calibrate(tmp_path / "m.onnx", Options(data=tmp_path / "photos", method="percentile", cpu_bench_seconds=0,
                                                  progress=False), input_spec=tmp_path / "spec.json",
                    out=tmp_path / "awkward.fdet")  # fmt: skip
    kept = res.report["range_notes"]["kept_float"]
    assert {"zero", "nonfinite"} <= set(kept)
    rep = json.loads((tmp_path / "awkward.fdet" / "calibration.json").read_text())
    assert rep["range_notes"]["kept_float"] == kept
    with ModelPackage.open(tmp_path / "awkward.fdet") as pkg:
        q = onnx.load(str(pkg.root / "model.int8.onnx"))
        cache = (pkg.root / "calibration.cache").read_text()
    quantized = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    assert not {"zero", "nonfinite"} & quantized and "x" in quantized
    assert "zero:" not in cache and "nonfinite:" not in cache
    with Detector.open(tmp_path / "awkward.fdet", backend="ort-cpu", precision="int8") as det:
        preds = det.predict(imgs)
    assert all(p.ok and np.isfinite(p.score) for p in preds)
