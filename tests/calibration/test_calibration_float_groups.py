"""Keeping layer groups in float (calibration/surgery.py keep_float) on a small residual
net, both INT8 flavours: all groups in float is the FP32 model; one group in float reads
its inputs as float values within half a quantization step of what the INT8 model feeds it
(dequantized here by hand from its QuantizeLinear outputs) and computes FP32's operator on
them; the greedy fallback ends at FP32 and keeps its best step.

The ORT-CPU flavour (uint8 activations) is the sharp case: ORT's quantizer folds ReLUs into
the zero-point-0 quantizer that follows, so a float reader of a ReLU's output must get the
ReLU back (a residual Add's skip input, the pool after the last block)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from fakedet.calibration.fallback import Budgets, fallback  # noqa: E402
from fakedet.calibration.ort_run import logits_of, session  # noqa: E402
from fakedet.calibration.qdq import quantize_qdq  # noqa: E402
from fakedet.calibration.ranges import compute_ranges, method_params  # noqa: E402
from fakedet.calibration.surgery import keep_float, layer_groups, quantized_groups, strip_qdq_on  # noqa: E402
from fakedet.manifest import OutputSpec  # noqa: E402

OUT = OutputSpec(name="logit")
FLAVOURS = ("int8", "uint8")  # TensorRT's symmetric int8; ORT-CPU's uint8 activations with 7-bit weights


def residual_net(path, seed: int = 0, width: int = 6):
    """stem conv+relu -> block (conv+relu, conv, + skip, relu) -> downsampling block (1x1
    stride-2 conv on the skip) -> global average pool -> flatten -> gemm: one logit."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def conv(name, x, cin, cout, k, stride=1):
        w = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        b = rng.normal(0, 0.2, cout).astype(np.float32)
        inits.extend([nh.from_array(w, f"{name}.w"), nh.from_array(b, f"{name}.b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.out"], name=name,
                                      kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4))
        return f"{name}.out"

    def relu(name, x):
        nodes.append(helper.make_node("Relu", [x], [f"{name}.out"], name=name))
        return f"{name}.out"

    def block(name, x, cin, cout, stride):
        skip = x if stride == 1 else conv(f"{name}.down", x, cin, cout, 1, stride)
        y = relu(f"{name}.relu1", conv(f"{name}.conv1", x, cin, cout, 3, stride))
        y = conv(f"{name}.conv2", y, cout, cout, 3)
        nodes.append(helper.make_node("Add", [y, skip], [f"{name}.add.out"], name=f"{name}.add"))
        return relu(f"{name}.relu2", f"{name}.add.out")

    x = relu("stem.relu", conv("stem", "x", 3, width, 3))
    x = block("b1", x, width, width, 1)
    x = block("b2", x, width, 2 * width, 2)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool.out"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool.out"], ["flat.out"], name="flat"))
    inits += [nh.from_array(rng.normal(0, 0.5, (1, 2 * width)).astype(np.float32), "fc.w"),
              nh.from_array(np.zeros(1, np.float32), "fc.b")]  # fmt: skip
    nodes.append(helper.make_node("Gemm", ["flat.out", "fc.w", "fc.b"], ["logit"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1])], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return model


def _images(seed: int, n: int):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """FP32 net, calibration batches and both QDQ flavours. The ranges are min-max ones with
    25% headroom: INT8's own activations stray past FP32's extremes, and a float reader must
    differ from the INT8 value by rounding alone, not by saturation."""
    tmp = tmp_path_factory.mktemp("float-groups")
    fp32 = residual_net(tmp / "net.onnx")
    calib = [_images(1, 8), _images(2, 8)]
    amax = compute_ranges(tmp / "net.onnx", calib, "minmax", method_params("minmax"), progress=False)
    amax = {t: 1.25 * a for t, a in amax.items()}
    qdq = {a: quantize_qdq(tmp / "net.onnx", amax, True, tmp / f"q-{a}.onnx", activations=a) for a in FLAVOURS}
    return fp32, calib, qdq


def _run(model, x, names=None, exact=True, types=None):
    """`names` of `model` (its first output if None) on `x`; intermediate tensors become
    outputs (float unless `types` says otherwise)."""
    import copy

    m = copy.deepcopy(model)
    have = {o.name for o in m.graph.output}
    for t in names or []:
        if t not in have:
            elem = (types or {}).get(t, TensorProto.FLOAT)
            m.graph.output.append(helper.make_tensor_value_info(t, elem, None))
    sess = session(m, exact=exact)
    want = names or [m.graph.output[0].name]
    return dict(zip(want, sess.run(want, {"x": x})))


def test_uint8_flavour_folds_relus_so_the_invariants_below_have_teeth(nets):
    fp32, _, qdq = nets
    assert "Relu" in {n.op_type for n in qdq["int8"].graph.node}
    assert "Relu" not in {n.op_type for n in qdq["uint8"].graph.node}
    assert len(quantized_groups(qdq["uint8"], layer_groups(fp32))) == len(layer_groups(fp32))


@pytest.mark.parametrize("act", FLAVOURS)
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "ort-kernels"])
def test_all_groups_in_float_is_the_fp32_model(nets, act, exact):
    fp32, calib, qdq = nets
    x = np.concatenate(calib)
    every = [n for g in layer_groups(fp32) for n in g.nodes]
    m = keep_float(qdq[act], fp32, every)
    assert not [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    want = _run(fp32, x, exact=exact)["logit"]
    got = _run(m, x, exact=exact)["logit"]
    assert np.abs(want).max() > 0.1  # a logit with something in it
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # and INT8 itself is not FP32 (so the comparison above can fail)
    assert np.abs(_run(qdq[act], x, exact=exact)["logit"] - want).max() > 1e-4


def _dequantized_inputs(qdq, head_name):
    """{input index: (QuantizeLinear output, scale, zero-point)} for the head's activation
    inputs in the QDQ graph (the ones read through Q -> DQ)."""
    g = qdq.graph
    prod = {t: n for n in g.node for t in n.output}
    inits = {i.name: nh.to_array(i) for i in g.initializer}
    head = next(n for n in g.node if n.name == head_name)
    out = {}
    for i, t in enumerate(head.input):
        dq = prod.get(t)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in inits:
            continue  # a float input, or a weight
        q = prod[dq.input[0]]
        assert q.op_type == "QuantizeLinear"
        out[i] = (q.output[0], inits[dq.input[1]], inits[dq.input[2]])
    return out


GROUPS = ["b1.add", "b2.add", "pool", "b2.down", "b2.conv1", "stem", "fc"]


@pytest.mark.parametrize("act", FLAVOURS)
@pytest.mark.parametrize("head", GROUPS)
def test_one_group_in_float_computes_fp32_on_the_dequantized_inputs(nets, act, head):
    fp32, calib, qdq = nets
    x = calib[0]
    grp = next(g for g in layer_groups(fp32) if g.name == head)
    fnode = {n.name: n for n in fp32.graph.node}
    fp32_inits = {i.name for i in fp32.graph.initializer}
    inputs = [t for t in fnode[head].input if t not in fp32_inits]
    last = fnode[grp.nodes[-1]].output[0]
    deq = _dequantized_inputs(qdq[act], head)
    assert deq, "the head reads some quantized input"

    # reference 1: the INT8 model's integer inputs of the head, dequantized by hand
    ints = _run(qdq[act], x, [q for q, _, _ in deq.values()],
                types={q: helper.np_dtype_to_tensor_dtype(zp.dtype) for q, _, zp in deq.values()})
    m = keep_float(qdq[act], fp32, grp.nodes)
    got = _run(m, x, [*inputs, last])
    for i, (qname, scale, zp) in deq.items():
        by_hand = (ints[qname].astype(np.float64) - zp.astype(np.float64)) * scale.astype(np.float64)
        seen = got[fnode[head].input[i]]
        # the float node reads its input unrounded: within half a step of the INT8 value
        # (nothing saturates, see the fixture), and never the pre-ReLU value the zero-point-0
        # quantizer of the uint8 flavour hides
        assert np.abs(seen - by_hand).max() <= float(scale) / 2 + 1e-5, (head, i)

    # reference 2: FP32's own nodes of the group, run alone on those inputs
    sub = _subgraph(fp32, grp.nodes, inputs)
    want = session(sub, exact=True).run([last], {t: got[t] for t in inputs})[0]
    np.testing.assert_allclose(got[last], want, rtol=1e-5, atol=1e-6)


def _subgraph(fp32, node_names, inputs):
    nodes = [n for n in fp32.graph.node if n.name in set(node_names)]
    used = {t for n in nodes for t in n.input}
    graph = helper.make_graph(
        nodes, "group", [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in inputs],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [i for i in fp32.graph.initializer if i.name in used])  # fmt: skip
    model = helper.make_model(graph, opset_imports=list(fp32.opset_import))
    model.ir_version = fp32.ir_version
    return model


@pytest.mark.parametrize("act", FLAVOURS)
def test_fallback_ends_at_fp32_and_keeps_its_best_step(nets, act):
    fp32, calib, qdq = nets
    x = np.concatenate([_images(3, 16), _images(4, 16)])
    batches = [x[i:i + 8] for i in range(0, len(x), 8)]
    l32 = logits_of(fp32, batches, OUT)
    labels = (l32 > np.median(l32)).astype(int)  # FP32 ranks them perfectly: AUC 1
    labels[:3] = 1 - labels[:3]  # ...almost, so a step can also beat INT8 by chance
    n = len(layer_groups(fp32))
    budgets = Budgets(max_auc_drop=-1.0, max_float_groups=n, sensitivity_seconds=None)
    _, result, l8 = fallback(qdq[act], fp32, batches, labels, l32, OUT, 0.5, budgets, progress=False,
                             exact=(act == "int8"))
    steps = result["steps"]
    assert len(steps) == n and not result["passed"]
    # every group in float: FP32 exactly
    assert steps[-1]["auc_drop"] == pytest.approx(0.0, abs=1e-12)
    assert steps[-1]["mean_abs_dp"] < 1e-5
    # no step is much worse than INT8 itself: float layers move toward FP32
    first = result["initial"]
    assert max(s["mean_abs_dp"] for s in steps) <= 2 * first["shift"]["mean_abs_dp"] + 1e-3
    # what it keeps is the best step seen, not the last one tried
    best = min([first["auc_drop"], *(s["auc_drop"] for s in steps)])
    assert result["final"]["auc_drop"] == pytest.approx(best)


def test_fallback_that_never_passes_keeps_the_best_step_not_the_last(nets):
    fp32, calib, qdq = nets
    x = np.concatenate([_images(3, 16), _images(4, 16)])
    batches = [x[i:i + 8] for i in range(0, len(x), 8)]
    l32 = logits_of(fp32, batches, OUT)
    l8 = logits_of(qdq["uint8"], batches, OUT)
    # labels INT8 ranks perfectly and FP32 does not: the top k by INT8 logit, for a k where
    # FP32's top k differ (INT8's rounding swaps a pair there)
    o8, o32 = np.argsort(-l8), np.argsort(-l32)
    k = next(k for k in range(1, l8.size) if set(o8[:k]) != set(o32[:k]))
    labels = np.zeros(l8.size, int)
    labels[o8[:k]] = 1
    budgets = Budgets(max_auc_drop=-1.0, max_float_groups=3, sensitivity_seconds=None)
    _, result, got = fallback(qdq["uint8"], fp32, batches, labels, l32, OUT, 0.5, budgets, progress=False)
    assert result["initial"]["int8"]["auc"] == 1.0 and result["initial"]["auc_drop"] > -1.0
    assert len(result["steps"]) == 3 and not result["passed"]
    assert result["steps"][-1]["auc_drop"] > result["initial"]["auc_drop"]  # the last step is not the best
    assert result["kept_float"] == [] and result["final"]["auc_drop"] == result["initial"]["auc_drop"]
    np.testing.assert_array_equal(got, l8)


@pytest.mark.parametrize("act", FLAVOURS)
def test_stripping_the_qdq_of_a_relu_output_keeps_the_relu(nets, act):
    """strip_qdq_on (tensors calibration found no range for): a ReLU output read in float is
    still a ReLU output when ORT's quantizer had folded that ReLU into the Q."""
    import copy

    fp32, calib, qdq = nets
    m = copy.deepcopy(qdq[act])
    strip_qdq_on(m, ["b1.relu2.out"], fp32)
    got = _run(m, calib[0], ["b1.add.out", "b1.relu2.out"])
    assert got["b1.add.out"].min() < 0  # the residual sum does go negative
    assert got["b1.relu2.out"].min() >= 0
    # int8 keeps its ReLU after the sum's own Q/DQ: equal up to that rounding (half a step)
    step = np.abs(got["b1.add.out"]).max() / 127
    np.testing.assert_allclose(got["b1.relu2.out"], np.maximum(got["b1.add.out"], 0), atol=step if act == "int8" else 0)


def test_budgets_are_named_and_the_options_map_each_one_to_its_field():
    """Two budgets of one type cannot be swapped by position: Budgets takes names only, and
    the CLI options land in the field of the same meaning."""
    from pathlib import Path

    from fakedet.calibration.pipeline import Options

    with pytest.raises(TypeError):
        Budgets(0.01, 4)  # positional: refused
    b = Options(data=Path("."), max_auc_drop=0.01, max_score_shift=0.02, max_float_layers=3,
                sensitivity_images=16, sensitivity_budget=7.0).budgets()
    assert (b.max_auc_drop, b.max_score_shift, b.max_float_groups, b.sensitivity_images,
            b.sensitivity_seconds) == (0.01, 0.02, 3, 16, 7.0)
    assert b.auc_ok({"auc_drop": 0.01}) and not b.auc_ok({"auc_drop": 0.011})
    assert b.shift_ok({"shift": {"mean_abs_dp": 0.02}}) and not b.shift_ok({"shift": {"mean_abs_dp": 0.03}})
