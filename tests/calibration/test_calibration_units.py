"""Calibration building blocks against independent reference computations."""

import struct
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from fakedet.calibration.ort_run import session  # noqa: E402
from fakedet.calibration.mse import mse_amax  # noqa: E402
from fakedet.calibration.qdq import quantize_qdq  # noqa: E402
from fakedet.calibration.ranges import compute_ranges, method_params  # noqa: E402
from fakedet.calibration.tensorrt_cache import format_cache, parse_cache  # noqa: E402
from fakedet.runtime.tensorrt_version import cache_tag_number  # noqa: E402
from fakedet.runtime.dataset_index import Sample  # noqa: E402
from fakedet.calibration.dataset import select_samples  # noqa: E402


def _independent_cache(amax: dict, version: int, algo: str) -> str:
    lines = [f"TRT-{version}-{algo}"]
    lines += [f"{k}: {struct.pack('>f', v / 127.0).hex()}" for k, v in amax.items()]
    return "\n".join(lines) + "\n"


def test_trt_cache_matches_an_independent_writer():
    rng = np.random.default_rng(3)
    amax = {f"t{i}": float(v) for i, v in enumerate(rng.uniform(1e-3, 50, 40))}
    amax["image"] = 2.64
    amax["onnx::Conv_497"] = 1e-7
    text = format_cache(amax, 100300, "entropy2")
    assert text == _independent_cache(amax, 100300, "EntropyCalibration2")
    lines = text.splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    assert len(lines) == 1 + len(amax)
    header, scales = parse_cache(text)
    for k, v in amax.items():  # dynamic range = scale * 127, float32-exact
        assert scales[k] == pytest.approx(v / 127.0, rel=1e-6)
    assert format_cache({"x": 1.0}, 8601, "minmax").startswith("TRT-8601-MinMaxCalibration\nx: ")


def test_trt_version_numbers():
    assert cache_tag_number("10.3") == 100300
    assert cache_tag_number("10.16.1") == 101601
    assert cache_tag_number("8.6.1") == 8601
    assert cache_tag_number("8.5.2.2") == 8502
    assert cache_tag_number("100300") == 100300
    with pytest.raises(ValueError):
        cache_tag_number("ten")


def test_mse_amax_matches_brute_force_on_the_data():
    rng = np.random.default_rng(0)
    x = np.abs(np.r_[rng.normal(0, 1, 20000), rng.normal(0, 1, 5) * 40]).astype(np.float32)
    hist, edges = np.histogram(x, bins=2048)
    got = mse_amax(hist, edges)

    def err(a):  # the actual quantization error on the raw values
        s = a / 127
        return np.mean((x - np.clip(np.round(x / s), -127, 127) * s) ** 2)

    cands = x.max() * np.arange(1, 257) / 256
    best = cands[int(np.argmin([err(a) for a in cands]))]
    assert err(got) <= err(best) * 1.02
    assert err(got) < err(float(x.max())) or got == pytest.approx(float(x.max()), rel=0.01)


def save_two_conv_net(path: Path, inits: list, name: str, pad: int = 0) -> None:
    """x -> convA -> relu -> convB -> relu -> global pool -> Gemm -> logit, 16x16 input;
    `inits` supplies wA, bA, wB, bB, wF, bF."""
    from onnx import TensorProto as T, helper as h

    pads = {"pads": [pad] * 4} if pad else {}
    nodes = [
        h.make_node("Conv", ["x", "wA", "bA"], ["a"], name="convA", **pads),
        h.make_node("Relu", ["a"], ["ar"], name="reluA"),
        h.make_node("Conv", ["ar", "wB", "bB"], ["b"], name="convB", **pads),
        h.make_node("Relu", ["b"], ["br"], name="reluB"),
        h.make_node("GlobalAveragePool", ["br"], ["g"], name="gap"),
        h.make_node("Flatten", ["g"], ["f"], name="flat"),
        h.make_node("Gemm", ["f", "wF", "bF"], ["logit"], name="fc", transB=1),
    ]
    g = h.make_graph(nodes, name, [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 16, 16])],
                     [h.make_tensor_value_info("logit", T.FLOAT, ["N", 1])], inits)  # fmt: skip
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _tiny_net(path: Path, seed=0):
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(seed)

    def init(name, a):
        return nh.from_array(np.asarray(a, np.float32), name)

    inits = [
        init("wA", rng.normal(size=(8, 3, 3, 3)) * 0.4), init("bA", rng.normal(size=8) * 0.1),
        init("wB", rng.normal(size=(8, 8, 3, 3)) * 0.2), init("bB", rng.normal(size=8) * 0.1),
        init("wF", rng.normal(size=(1, 8))), init("bF", [0.1]),
    ]  # fmt: skip
    save_two_conv_net(path, inits, "tiny", pad=1)


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_qdq_model_runs_and_tracks_fp32(tmp_path, method):
    _tiny_net(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    calib = [rng.uniform(0, 1, (4, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    amax = compute_ranges(tmp_path / "m.onnx", calib, method, method_params(method), progress=False)
    assert {"x", "a", "ar", "b", "br", "g", "f", "logit"} <= set(amax)
    quantize_qdq(tmp_path / "m.onnx", amax, True, tmp_path / "q.onnx")
    q = onnx.load(str(tmp_path / "q.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    qs = [n for n in q.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in q.graph.node if n.op_type == "DequantizeLinear"]
    assert qs and dqs
    for n in qs + dqs:  # symmetric: every zero point is 0, activations and weights int8
        zp = inits[n.input[2]]
        assert not np.any(zp) and zp.dtype in (np.int8, np.int32)
    wscale = inits[[n for n in dqs if n.input[0] == "wA_quantized"][0].input[1]]
    assert wscale.shape == (8,)  # per-channel weights
    # activation scale = amax / 127 for the input tensor
    xs = inits[[n for n in qs if n.input[0] == "x"][0].input[1]]
    assert float(xs) == pytest.approx(amax["x"] / 127, rel=1e-6)
    # the logit itself is never quantized
    assert not any(n.output[0] == "logit" for n in dqs)

    # the exact quantization arithmetic (what TensorRT runs; ORT's CPU kernels for this
    # symmetric int8 form saturate on x86 without VNNI, so they are not the reference)
    s32 = session(tmp_path / "m.onnx")
    s8 = session(tmp_path / "q.onnx", exact=True)
    x = rng.uniform(0, 1, (32, 3, 16, 16)).astype(np.float32)
    l32 = s32.run(None, {"x": x})[0].ravel()
    l8 = s8.run(None, {"x": x})[0].ravel()
    assert np.corrcoef(l32, l8)[0, 1] > 0.98
    assert np.abs(l8 - l32).mean() < 0.1 * (np.abs(l32).mean() + l32.std())


def test_selection_is_stratified_and_deterministic():
    samples = []
    for gen, n_real, n_fake in (("sd14", 30, 10), ("sdxl", 0, 50), ("", 4, 0)):
        samples += [Sample(Path(f"/d/{gen}/0_real/{i}.png"), 0, gen) for i in range(n_real)]
        samples += [Sample(Path(f"/d/{gen}/1_fake/{i}.png"), 1, gen) for i in range(n_fake)]
    a = select_samples(samples, 40, seed=7)
    assert a == select_samples(list(reversed(samples)), 40, seed=7)
    assert a != select_samples(samples, 40, seed=8)
    labels = [s.label for s in a]
    assert labels.count(0) == 20 and labels.count(1) == 20
    fake_gens = [s.generator for s in a if s.label == 1]
    assert fake_gens.count("sd14") == 10 and fake_gens.count("sdxl") == 10  # generators taken in turn
    real_gens = [s.generator for s in a if s.label == 0]
    assert real_gens.count("") == 4  # the small stratum is not starved
    # one class short: the other fills the quota
    few = [s for s in samples if s.label == 0][:5] + [s for s in samples if s.label == 1]
    b = select_samples(few, 30, seed=0)
    assert len(b) == 30 and sum(s.label == 0 for s in b) == 5
