"""Bounded per-layer sensitivity: the cheap signal finds the ruined layer, the exact stage
reproduces the one-by-one ranking, a zero budget says so, and the guard's budgets hold."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from fakedet.calibration.ort_run import logits_of  # noqa: E402
from fakedet.calibration.pipeline import Options, calibrate  # noqa: E402
from fakedet.calibration.qdq import quantize_qdq  # noqa: E402
from fakedet.calibration.ranges import compute_ranges, method_params  # noqa: E402
from fakedet.calibration.sensitivity import cheap_signal, rank_every_group, rank_layer_groups  # noqa: E402
from fakedet.calibration.surgery import layer_groups  # noqa: E402
from fakedet.onnx_graph import name_nodes  # noqa: E402
from fakedet.manifest import OutputSpec  # noqa: E402
from test_calibration_pipeline import outlier_net, setup  # noqa: E402,F401

OUT = OutputSpec(name="logit")


def _images(seed: int, n: int, red: bool):
    """Like the calibration tests' images: reals dark, fakes bright; `red`: one pure-red pixel."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for label, level in ((0, 0.3), (1, 0.55)):
        for i in range(n):
            a = np.clip(rng.normal(level, 0.12, (3, 16, 16)) + rng.normal(0, 0.1), 0, 0.97).astype(np.float32)
            if red and label == 1 and i == 0:
                a[:, 3, 3] = (1.0, 0.0, 0.0)
            x.append(a)
            y.append(label)
    return np.stack(x), np.array(y)


@pytest.fixture
def models(tmp_path):
    """The outlier net, min-max ranges (the red pixel ruins relu(convA)'s INT8 scale)."""
    outlier_net(tmp_path / "net.onnx")
    named = onnx.load(str(tmp_path / "net.onnx"))
    name_nodes(named)
    onnx.save(named, str(tmp_path / "named.onnx"))
    calib, _ = _images(1, 8, red=True)
    amax = compute_ranges(tmp_path / "named.onnx", [calib[i:i + 8] for i in range(0, 16, 8)], "minmax",
                          method_params("minmax"), progress=False)  # fmt: skip
    qdq = quantize_qdq(tmp_path / "named.onnx", amax, True, tmp_path / "q.onnx")
    x, labels = _images(2, 16, red=False)
    batches = [x[i:i + 8] for i in range(0, len(x), 8)]
    l32 = logits_of(tmp_path / "named.onnx", batches, OUT)
    return qdq, named, batches, l32, labels


def test_cheap_signal_points_at_the_ruined_layer(models):
    qdq, named, batches, _, _ = models
    sig = cheap_signal(qdq, named, layer_groups(named), batches)
    # relu(convA)'s INT8 scale is set by a ~1000 outlier, so every value of the ~1 signal
    # channels rounds to 0: convA's output (its Q/DQ) and convB's input (the same Q/DQ) lose
    # all they carry, a relative squared error of 1; keeping either in float cures it
    assert sig["convA"] == pytest.approx(1.0, abs=0.02) and sig["convB"] == pytest.approx(1.0, abs=0.02)
    # the pool and the head see well-scaled tensors
    assert sig["gap"] < 0.01 and sig["fc"] < 0.01


def test_ample_budget_reproduces_the_one_by_one_ranking(models):
    qdq, named, batches, l32, labels = models
    reference = rank_every_group(qdq, named, batches, l32, labels, OUT, progress=False)  # every group, exactly
    rows, info = rank_layer_groups(qdq, named, batches, l32, labels, OUT, progress=False, budget_s=None)
    assert [r["name"] for r in rows] == [r["name"] for r in reference]
    for got, ref in zip(rows, reference):
        assert got["logit_mse"] == pytest.approx(ref["logit_mse"], rel=1e-6, abs=1e-9)
    assert info["measured"] == info["groups"] == len(layer_groups(named)) and not info["budget_cut_short"]


def test_zero_budget_ranks_by_the_signal_and_says_so(models):
    qdq, named, batches, l32, labels = models
    rows, info = rank_layer_groups(qdq, named, batches, l32, labels, OUT, progress=False, budget_s=0)
    assert info["budget_cut_short"] and info["measured"] == 0 and info["ranked_by_signal_only"] == info["groups"]
    assert {r["name"] for r in rows[:2]} == {"convA", "convB"} and "logit_mse" not in rows[0]


def test_guard_budgets_hold_with_no_time_for_exact_measurements(setup):  # noqa: F811
    t = setup
    res = calibrate(t / "det.fdet", Options(data=t / "calib", method="minmax", samples=16, eval_data=t / "heldout",
                                            max_auc_drop=0.01, progress=False, sensitivity_budget=0))  # fmt: skip
    g = res.report["guard"]
    assert g["initial"]["auc_drop"] > 0.2
    assert g["passed"] and g["final"]["auc_drop"] <= 0.01  # every greedy step is still judged on all images
    assert g["sensitivity_search"]["budget_cut_short"] and g["sensitivity_search"]["measured"] == 0
    assert len(res.report["kept_float"]) == 1 and res.report["kept_float"][0] in ("convA", "convB")


def test_integer_shape_arithmetic_is_not_measured(tmp_path):
    """A Concat of int64 shape values (as in a ViT's reshapes) is a layer group with no Q/DQ:
    the signal gives it no error of its own instead of failing on its integer output."""
    from onnx import TensorProto as T, helper as h, numpy_helper as nh

    rng = np.random.default_rng(0)
    inits = [nh.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
             nh.from_array(rng.normal(size=(1, 4)).astype(np.float32), "wF"),
             nh.from_array(np.zeros(1, np.float32), "bF"),
             nh.from_array(np.array([0], np.int64), "zero"),
             nh.from_array(np.array([-1], np.int64), "minus1")]  # fmt: skip
    nodes = [
        h.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c"], ["r"], name="relu"),
        h.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        h.make_node("Shape", ["x"], ["s"], name="shape"),
        h.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0),
        h.make_node("Concat", ["n", "minus1"], ["shp"], name="concat_shape", axis=0),
        h.make_node("Reshape", ["g", "shp"], ["f"], name="flatten"),
        h.make_node("Gemm", ["f", "wF", "bF"], ["logit"], name="fc", transB=1),
    ]
    g = h.make_graph(nodes, "shapes", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 8, 8])],
                     [h.make_tensor_value_info("logit", T.FLOAT, ["N", 1])], inits)  # fmt: skip
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(tmp_path / "m.onnx"))
    x = np.random.default_rng(1).uniform(0, 1, (8, 3, 8, 8)).astype(np.float32)
    amax = compute_ranges(tmp_path / "m.onnx", [x], "minmax", method_params("minmax"), progress=False)
    qdq = quantize_qdq(tmp_path / "m.onnx", amax, True, tmp_path / "q.onnx")
    groups = layer_groups(m)
    assert "concat_shape" in {gr.name for gr in groups}
    sig = cheap_signal(qdq, m, groups, [x])
    assert sig["concat_shape"] == 0.0
    assert 0 < sig["conv"] < 0.05  # a well-scaled conv: small but real INT8 error
