"""Exact tiled inference (the large-image memory finding of the hostile-client review): the
reach of a graph read from the ONNX bytes, the tile plan, and a tiled score equal to the
whole-image one on a real exported resnet-tiny-nodown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakedet.runtime.onnx_wire import read_graph
from fakedet.runtime.tiling import Reach, analyse, spans

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _model(tmp_path, nodes, inits=(), name="g.onnx"):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, None, None])],
                          [helper.make_tensor_value_info("evidence", TensorProto.FLOAT, None)], list(inits))
    path = tmp_path / name
    onnx.save(helper.make_model(g), str(path))
    return path


def _weight(name, cout, cin, k):
    return helper.make_tensor(name, TensorProto.FLOAT, [cout, cin, k, k], np.zeros(cout * cin * k * k).tolist())


def test_the_reach_of_resnet_tiny_nodown_is_the_hand_computed_one(evidence_packages):
    # stem 3x3/1: 1; block 1 (two 3x3/1): 3; block 2 (3x3/2, 3x3/1 at stride 2): 3+1, 4+2 = 6;
    # block 3 at stride 4: 6+2, 8+4 = 12; block 4 at stride 8: 12+4, 16+8 = 24; the 1x1 head: 24.
    # The 1x1/2 skip convolutions reach less (3, 6, 12) and the Add keeps the larger.
    pkg = evidence_packages[0]
    for onnx_file in sorted(pkg.glob("*.onnx")):  # the FP32 and the FP16 (Casts on the way) graphs
        a = analyse(read_graph(onnx_file), "image", "evidence")
        assert a.why_not is None, onnx_file.name
        assert a.reach == Reach((8, 8), (24, 24), (24, 24))
        assert a.reach.halo(0) == a.reach.halo(1) == 24
        assert "ReduceMean" in analyse(read_graph(onnx_file), "image", "logit").why_not


def test_asymmetric_pads_dilation_and_pooling_are_counted_per_side_and_axis(tmp_path):
    nodes = [
        # 3x3, dilation 2 on height, pads top 0 / bottom 4, left 1 / right 1: before (0, 1), after (4, 1)
        helper.make_node("Conv", ["image", "w1"], ["a"], kernel_shape=[3, 3], dilations=[2, 1], pads=[0, 1, 4, 1]),
        helper.make_node("Relu", ["a"], ["b"]),
        # 2x2 max-pool, stride 2, no pads: reads [2i, 2i+1]: after += 1 (stride 1 so far)
        helper.make_node("MaxPool", ["b"], ["c"], kernel_shape=[2, 2], strides=[2, 2]),
        # 3x3 stride 2 pads 1 at stride 2: before/after += 2
        helper.make_node("Conv", ["c", "w2"], ["evidence"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    path = _model(tmp_path, nodes, [_weight("w1", 4, 3, 3), _weight("w2", 1, 4, 3)])
    a = analyse(read_graph(path), "image", "evidence")
    assert a.reach == Reach((4, 4), (0 + 2, 1 + 2), (4 + 1 + 2, 1 + 1 + 2))
    assert a.reach.halo(0) == 8 and a.reach.halo(1) == 4


def test_a_kernel_read_from_the_weights_and_a_valid_conv(tmp_path):
    nodes = [helper.make_node("Conv", ["image", "w"], ["evidence"], auto_pad="VALID", strides=[3, 3])]
    a = analyse(read_graph(_model(tmp_path, nodes, [_weight("w", 1, 3, 5)])), "image", "evidence")
    assert a.reach == Reach((3, 3), (0, 0), (4, 4))


@pytest.mark.parametrize("axis", [1, -3])  # -3: a negative attribute read from the protobuf's varint
def test_a_channel_concat_joins_branches_like_an_add(tmp_path, axis):
    nodes = [helper.make_node("Conv", ["image", "w"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["image", "w5"], ["b"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
             helper.make_node("Concat", ["a", "b"], ["evidence"], axis=axis)]
    path = _model(tmp_path, nodes, [_weight("w", 1, 3, 3), _weight("w5", 1, 3, 5)])
    assert analyse(read_graph(path), "image", "evidence").reach == Reach((1, 1), (2, 2), (2, 2))
    spatial = [nodes[0], nodes[1], helper.make_node("Concat", ["a", "b"], ["evidence"], axis=3)]
    path = _model(tmp_path, spatial, [_weight("w", 1, 3, 3), _weight("w5", 1, 3, 5)], "spatial.onnx")
    assert "Concat" in analyse(read_graph(path), "image", "evidence").why_not


@pytest.mark.parametrize("op, extra", [
    ("GlobalAveragePool", {}),
    ("Resize", {"mode": "nearest"}),
    ("Transpose", {"perm": [0, 1, 3, 2]}),
])
def test_an_op_that_is_not_a_window_makes_the_graph_not_tileable(tmp_path, op, extra):
    inputs = ["a", "", "scales"] if op == "Resize" else ["a"]
    inits = [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])] if op == "Resize" else []
    nodes = [helper.make_node("Conv", ["image", "w"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node(op, inputs, ["b"], **extra),
             helper.make_node("Relu", ["b"], ["evidence"])]
    a = analyse(read_graph(_model(tmp_path, nodes, [_weight("w", 2, 3, 3)] + inits)), "image", "evidence")
    assert a.reach is None and op in a.why_not


def test_same_auto_pad_and_branches_of_different_strides_are_refused(tmp_path):
    same = [helper.make_node("Conv", ["image", "w"], ["evidence"], kernel_shape=[3, 3], auto_pad="SAME_UPPER")]
    assert "auto_pad" in analyse(read_graph(_model(tmp_path, same, [_weight("w", 1, 3, 3)])), "image", "evidence").why_not
    mixed = [helper.make_node("Conv", ["image", "w"], ["a"], kernel_shape=[1, 1], strides=[2, 2]),
             helper.make_node("Conv", ["image", "w"], ["b"], kernel_shape=[1, 1]),
             helper.make_node("Add", ["a", "b"], ["evidence"])]
    why = analyse(read_graph(_model(tmp_path, mixed, [_weight("w", 1, 3, 1)], "m.onnx")), "image", "evidence").why_not
    assert "different strides" in why


@pytest.mark.parametrize("length, core, halo", [(389, 72, 24), (517, 72, 24), (64, 72, 24), (73, 8, 0), (1000, 1000, 24)])
def test_cores_cut_the_axis_once_and_tiles_start_on_the_stride(length, core, halo):
    ss = spans(length, core, halo, 8)
    assert ss[0].core_start == 0 and ss[-1].last and ss[-1].end == length
    for a, b in zip(ss, ss[1:]):
        assert b.core_start == a.core_start + core and not a.last
        assert a.end == min(length, b.core_start + halo)  # the halo past the core
    for s in ss:
        assert s.start % 8 == 0 and s.core_start % 8 == 0 and s.start == max(0, s.core_start - halo)


# ---- on a real exported model ------------------------------------------------
def _whole(det, pixels):
    from fakedet.runtime.preprocess import normalize

    x = normalize(pixels, det.manifest.input)[None]
    logit, maps = det.backend.infer_outputs(x, ("evidence",))
    return float(np.ravel(logit)[0]), maps[0].reshape(maps[0].shape[-2:])


@pytest.fixture(scope="module")
def odd_image(tmp_path_factory):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (389, 517, 3), dtype=np.uint8)
    pixels[100:250, 200:400] //= 3  # some structure, so that regions differ
    path = tmp_path_factory.mktemp("odd") / "odd.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def test_tiles_give_the_whole_image_logit_and_map(evidence_packages, odd_image):
    from fakedet.runtime import Detector
    from fakedet.runtime.tiled_scoring import TiledImage
    from fakedet.runtime.tiling import tile_count

    path, pixels = odd_image
    with Detector.open(evidence_packages[0], backend="ort-cpu", precision="fp32", threads=1) as det:
        logit, whole_map = _whole(det, pixels)
        assert det.tiling_note == "tiled"
        det.tiler.set_tile_side(112)  # cores of 64 px: 7 x 9 tiles, the last ones short and off the stride grid
        assert tile_count(389, 517, det.tiler.core, det.tiler.reach) == 7 * 9
        prepared = det.prepare(str(path))
        assert isinstance(prepared, TiledImage) and prepared.pixels.dtype == np.uint8
        for pred in (det.predict([str(path)], explain=True)[0], det.predict_prepared([prepared], explain=True)[0]):
            assert pred.ok, pred.error
            assert pred.logit == pytest.approx(logit, abs=1e-4)
            assert pred.evidence.logits.shape == whole_map.shape == (49, 65)
            assert np.abs(pred.evidence.logits - whole_map).max() < 1e-4
            assert pred.evidence.size == (517, 389)
        assert not np.allclose(whole_map, whole_map.mean(), atol=1e-3)  # the map has structure to get wrong


def test_a_halo_short_of_the_reach_is_not_exact(evidence_packages, odd_image):
    """The check above can fail: tiles padded by less than the receptive field differ."""
    from fakedet.runtime import Detector
    from fakedet.runtime.tiled_scoring import Tiler

    _, pixels = odd_image
    with Detector.open(evidence_packages[0], backend="ort-cpu", precision="fp32", threads=1) as det:
        _, whole_map = _whole(det, pixels)
        good = det.tiler
        short = Tiler(Reach((8, 8), (8, 8), (8, 8)), good.normalize, good.run, 112)
        assert np.abs(short.evidence(pixels) - whole_map).max() > 1e-3


PEAK = """
import json, sys
from pathlib import Path
import numpy as np
from fakedet.runtime import Detector
from fakedet.runtime.memory_budget import resident_bytes
pkg, img, side = sys.argv[1], sys.argv[2], int(sys.argv[3])
def kib(key):
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
with Detector.open(pkg, backend="ort-cpu", precision="fp32", threads=1) as det:
    det.predict([np.zeros((64, 64, 3), np.uint8)])
    if side:
        det.tiler.set_tile_side(side)
    else:
        det._tiler = (None, "scored whole, for the comparison")
    before = resident_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here
    p = det.predict([img])[0]
    print(json.dumps({"ok": p.ok, "logit": p.logit, "growth": kib("VmHWM") * 1024 - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_tiles_hold_a_fraction_of_the_whole_image_s_peak_memory(evidence_packages, tmp_path):
    import json
    import subprocess
    import sys

    img = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)).save(img)
    runs = {}
    for side in (256, 0):  # 256-px tiles; 0: the whole image at once (what the runtime did before)
        out = subprocess.run([sys.executable, "-c", PEAK, str(evidence_packages[0]), str(img), str(side)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        runs[side] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs[256]["ok"] and runs[256]["logit"] == pytest.approx(runs[0]["logit"], abs=1e-4)
    assert runs[256]["growth"] < 0.35 * runs[0]["growth"], runs


def test_a_package_without_the_map_is_scored_whole(evidence_packages, odd_image):
    from fakedet.runtime import Detector

    path, _ = odd_image
    with Detector.open(evidence_packages[1], backend="ort-cpu", threads=1) as det:
        assert det.tiler is None and "no exported evidence map" in det.tiling_note
        t = det.prepare(str(path))
        assert isinstance(t, np.ndarray) and t.dtype == np.float32
        assert det.predict([str(path)])[0].ok


def test_a_tileable_model_s_pixel_limit_is_the_uint8_image_s(evidence_packages, monkeypatch):
    from fakedet.runtime import Detector, memory_budget
    from fakedet.runtime.memory_budget import pixel_budget, resident_bytes

    monkeypatch.setattr(memory_budget, "model_bytes_per_pixel", lambda det: 190.0)  # the demo's, measured
    with Detector.open(evidence_packages[0], backend="ort-cpu", precision="fp32", threads=1) as det:
        budget = (resident_bytes() or 0) + 2 * 2**30  # 2 GB over what this test process already holds
        whole = pixel_budget(det, budget, "--max-memory")
        tiled = pixel_budget(det, budget, "--max-memory", det.tiler)
        assert tiled.max_pixels > 5 * whole.max_pixels  # ~13 bytes a pixel instead of ~210
        assert "tile" in tiled.why and "--max-memory" in tiled.why
        roomy = det.tiler.tile_side
        pixel_budget(det, (resident_bytes() or 0) + 64 * 2**20, "--max-memory", det.tiler)
        assert det.tiler.tile_side < roomy  # the tile follows the budget
