"""Export pipeline on small torch models: ONNX, dynamic axes, exporters, FP16, parity,
manifest, bad input. (The real architectures are in test_export_archs.py.)"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from torch import nn  # noqa: E402

from fakedet.cli import main  # noqa: E402
from fakedet.export.onnx_export import export_onnx  # noqa: E402
from fakedet.export.parity import ParityError  # noqa: E402
from fakedet.export.pipeline import ExportOptions, export_package  # noqa: E402
from fakedet.export.source import ExportSource, manifest_from_config  # noqa: E402
from fakedet.manifest import InputSpec, Preprocess  # noqa: E402
from fakedet.package import ModelPackage, read_onnx_manifest  # noqa: E402


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class TinyViT(nn.Module):
    """Patchify + LayerNorm + nn.MultiheadAttention(batch_first): in eval mode under no_grad
    PyTorch routes this through its fused fast path, like open_clip's ViTs."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 8, stride=8)
        self.ln = nn.LayerNorm(16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 1)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        h = self.ln(t)
        a, _ = self.attn(h, h, h, need_weights=False)
        return self.fc((t + a).mean(1))


class Drifting(TinyCNN):
    """Eager output changes on every call; a traced graph freezes it: parity must catch it."""

    calls = 0

    def forward(self, x):
        Drifting.calls += 1
        return super().forward(x) + float(Drifting.calls)


WHOLE = InputSpec(dynamic_axes=("batch", "height", "width"), preprocess=Preprocess(policy="whole-image", size=None))
CROP = InputSpec(preprocess=Preprocess(policy="center-crop", size=(32, 32)))


def _source(model, spec, threshold=0.5, **extra):
    torch.manual_seed(0)
    cfg = {"arch": "tiny", "model_kwargs": {}, "input": spec.to_dict(), "threshold": threshold,
           "metrics": {"auc": 0.9}, "data_digest": "abc123", **extra}
    return ExportSource(model.eval(), cfg, None)


@pytest.fixture(scope="module")
def tiny_pkg(tmp_path_factory):
    torch.manual_seed(0)
    dest = tmp_path_factory.mktemp("pkg") / "tiny.fdet"
    msgs = []
    res = export_package(_source(TinyCNN(), WHOLE), dest, ExportOptions(whole_image_size=(32, 32)), echo=msgs.append)
    return dest, res, msgs


def test_package_contents_and_manifest(tiny_pkg):
    dest, res, msgs = tiny_pkg
    pkg = ModelPackage.open(dest)
    pkg.verify()
    kinds = {a.kind: a.file for a in pkg.manifest.artifacts}
    assert kinds == {"onnx-fp32": "model.onnx", "onnx-fp16": "model.fp16.onnx", "parity-report": "parity/report.json"}
    m = pkg.manifest
    assert m.name == "tiny" and m.architecture == "tiny" and m.output.name == "logit" and m.output.kind == "logit"
    assert m.input.to_dict() == WHOLE.to_dict()
    prov = m.provenance
    assert prov["metrics"] == {"auc": 0.9} and prov["data_digest"] == "abc123"
    assert prov["training_config"]["arch"] == "tiny"
    assert set(prov["parity"]) == {"onnx-fp32", "onnx-fp16"} and prov["parity"]["onnx-fp32"]["passed"]
    report = json.loads((dest / "parity/report.json").read_text())
    assert report["onnx-fp32"]["max_abs_diff"] == prov["parity"]["onnx-fp32"]["max_abs_diff"]
    for kind in ("random", "real"):
        assert set(report["onnx-fp32"][kind]) == {"batch_1", "batch_3", "batch_8"}
    assert report["onnx-fp32"]["real_source"] == "synthetic"
    assert any("parity fp32: max |logit diff|" in x and "score agreement" in x for x in msgs)
    assert any("parity fp16" in x for x in msgs)


def test_onnx_metadata_carries_the_manifest(tiny_pkg):
    dest, res, _ = tiny_pkg
    for file, kind in (("model.onnx", "onnx-fp32"), ("model.fp16.onnx", "onnx-fp16")):
        embedded = json.loads(read_onnx_manifest(dest / file))
        assert embedded["name"] == "tiny" and embedded["provenance"]["onnx_kind"] == kind
        assert embedded["provenance"]["parity"]["onnx-fp32"]["passed"] is True
        assert embedded["input"] == WHOLE.to_dict()
    # a bare ONNX file opens as a package
    bare = ModelPackage.open(dest / "model.onnx")
    assert bare.manifest.artifacts[0].kind == "onnx-fp32"


def test_dynamic_batch_height_width_and_fp32_io(tiny_pkg):
    dest, _, _ = tiny_pkg
    model = onnx.load(str(dest / "model.onnx"))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    torch.manual_seed(0)
    ref = TinyCNN().eval()
    for file in ("model.onnx", "model.fp16.onnx"):
        sess = ort.InferenceSession(str(dest / file), providers=["CPUExecutionProvider"],
                                    disabled_optimizers=["NchwcTransformer"])
        assert sess.get_inputs()[0].type == "tensor(float)" and sess.get_outputs()[0].type == "tensor(float)"
        for shape in [(1, 3, 40, 24), (3, 3, 17, 33), (8, 3, 32, 32)]:
            x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
            got = sess.run(None, {"image": x})[0]
            with torch.no_grad():
                want = ref(torch.from_numpy(x)).numpy()
            assert got.shape == (shape[0], 1)
            np.testing.assert_allclose(got, want, atol=1e-4 if file == "model.onnx" else 2e-2)


def test_fp16_file_is_mixed_precision(tiny_pkg):
    dest, _, _ = tiny_pkg
    model = onnx.load(str(dest / "model.fp16.onnx"))
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types.values()
    # ReduceMean (the pooling) is on the block list: it reads a float32 tensor through a Cast
    reduce = [n for n in model.graph.node if n.op_type == "ReduceMean"]
    producers = {o: n for n in model.graph.node for o in n.output}
    assert reduce and all(producers[n.input[0]].op_type == "Cast" for n in reduce)


def test_mha_fast_path_fails_raw_and_is_handled(tmp_path):
    torch.manual_seed(0)
    model = TinyViT().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), pytest.raises(Exception, match="_native_multi_head_attention"), \
            pytest.warns(DeprecationWarning):  # the legacy exporter announces itself
        torch.onnx.export(model, (x,), str(tmp_path / "raw.onnx"), dynamo=False)
    spec = InputSpec(preprocess=Preprocess(policy="resize", size=(32, 32)))
    res = export_package(_source(model, spec), tmp_path / "vit.fdet", ExportOptions(precision="fp32"), echo=lambda m: None)
    assert res.manifest.provenance["export"]["exporter"] == "legacy"
    assert res.parity["onnx-fp32"]["max_abs_diff"] <= 1e-4
    assert torch.backends.mha.get_fastpath_enabled()  # switched back on after the export


def test_dynamo_exporter(tmp_path):
    torch.manual_seed(0)
    model = TinyViT().eval()
    spec = InputSpec(preprocess=Preprocess(policy="resize", size=(32, 32)))
    proto, info = export_onnx(model, spec, tmp_path / "d.onnx", exporter="dynamo")
    assert info.exporter == "dynamo"
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        x = np.random.default_rng(b).standard_normal((b, 3, 32, 32)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(sess.run(None, {"image": x})[0], want, atol=1e-4)


def test_parity_failure_writes_nothing_and_keeps_the_old_package(tmp_path, tiny_pkg):
    import shutil

    dest = tmp_path / "d.fdet"
    shutil.copytree(tiny_pkg[0], dest)
    before = {p.name: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    with pytest.raises(ParityError, match="parity check failed for onnx-fp32"):
        export_package(_source(Drifting(), CROP), dest, ExportOptions(precision="fp32"), echo=lambda m: None)
    assert {p.name: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    with pytest.raises(ParityError):
        export_package(_source(Drifting(), CROP), tmp_path / "new.fdet", ExportOptions(precision="fp32"), echo=lambda m: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.fdet"]  # no staging left after a clean failure


def test_parity_on_real_images_dir(tmp_path):
    from conftest import save_image

    imgs = tmp_path / "imgs"
    for i in range(3):
        save_image(imgs / f"{i}.png", size=(40 + i, 36), seed=i)
    (imgs / "broken.jpg").write_bytes(b"not an image")
    res = export_package(_source(TinyCNN(), CROP, threshold=0.3), tmp_path / "r.fdet",
                         ExportOptions(precision="fp32", calib_images=imgs), echo=lambda m: None)
    rep = res.parity["onnx-fp32"]
    assert rep["real_source"] == str(imgs) and rep["n_real_images"] == 3 and rep["threshold"] == 0.3


def test_score_agreement_is_computed_at_the_threshold():
    from fakedet.export.parity import ParityInputs, compare

    ref = {k: {b: np.zeros((b, 1), np.float32) + 0.01 for b in (1, 3, 8)} for k in ("random", "real")}
    got = {k: {b: np.zeros((b, 1), np.float32) - 0.01 for b in (1, 3, 8)} for k in ("random", "real")}
    inp = ParityInputs({}, {}, "synthetic", 8)
    rep = compare(ref, got, 0.5, 1e-1, inp)  # sigmoid(+-0.01) straddles 0.5: every decision flips
    assert rep["passed"] and rep["score_agreement"] == 0.0 and rep["max_abs_diff"] == pytest.approx(0.02)
    rep = compare(ref, got, 0.9, 1e-3, inp)
    assert not rep["passed"] and rep["score_agreement"] == 1.0


def test_unshared_initializers_make_fp16_conversion_valid():
    """A bias shared by a LayerNormalization (kept fp32) and an Add (fp16), as exporters
    produce for a fresh model's all-zero biases."""
    from onnx import TensorProto, helper, numpy_helper

    from fakedet.export.fp16 import to_fp16

    zeros = numpy_helper.from_array(np.zeros(4, np.float32), "zeros")
    ones = numpy_helper.from_array(np.ones(4, np.float32), "ones")
    g = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "ones", "zeros"], ["n"], axis=-1),
         helper.make_node("Add", ["n", "zeros"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [zeros, ones])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    half = to_fp16(model)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    got = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, want, atol=5e-3)


def test_manifest_threshold_forms():
    spec = CROP.to_dict()
    assert manifest_from_config({"arch": "a", "input": spec, "threshold": 0.7}, "n").threshold.value == 0.7
    m = manifest_from_config({"arch": "a", "input": spec, "threshold": {"value": 0.2, "method": "youden"}}, "n")
    assert (m.threshold.value, m.threshold.method) == (0.2, "youden")


# ---- bad input through the CLI ----------------------------------------------
def _err(capsys):
    return capsys.readouterr().err.strip().splitlines()


def test_bad_checkpoints_exit_2_with_one_line(tmp_path, capsys):
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(b"\x80\x04junk")
    assert main(["export", str(pickled), "-o", str(tmp_path / "o.fdet")]) == 2
    (line,) = _err(capsys)
    assert "pickled" in line and "model.pt" in line

    nocfg = tmp_path / "ck"
    nocfg.mkdir()
    (nocfg / "model.safetensors").write_bytes(b"")
    assert main(["export", str(nocfg), "-o", str(tmp_path / "o.fdet")]) == 2
    (line,) = _err(capsys)
    assert "missing config.json" in line

    (nocfg / "config.json").write_text(json.dumps({"arch": "vgg-99", "model_kwargs": {}}))
    assert main(["export", str(nocfg), "-o", str(tmp_path / "o.fdet")]) == 2
    (line,) = _err(capsys)
    assert "unknown architecture 'vgg-99'" in line and "resnet50-nodown" in line

    (nocfg / "config.json").write_text("{not json")
    assert main(["export", str(nocfg), "-o", str(tmp_path / "o.fdet")]) == 2
    (line,) = _err(capsys)
    assert "not valid JSON" in line
    assert not (tmp_path / "o.fdet").exists()


def test_damaged_weights_exit_2(tmp_path, capsys):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "model.safetensors").write_bytes(b"\x00" * 16)
    (ck / "config.json").write_text(json.dumps({"arch": "resnet50", "model_kwargs": {}, "threshold": 0.5}))
    assert main(["export", str(ck), "-o", str(tmp_path / "o.fdet")]) == 2
    lines = _err(capsys)
    assert len(lines) == 1 and str(ck) in lines[0]


def test_fp16_keeps_types_consistent_around_the_models_own_casts():
    """Cast(float->float) (open_clip's `.to(x.dtype)`) feeding an FP16 Concat, and
    Cast(int64->float) feeding a blocked Softmax: the converter alone mistypes both."""
    from onnx import TensorProto, helper, numpy_helper

    from fakedet.export.fp16 import to_fp16

    cls = numpy_helper.from_array(np.full((1, 1, 4), 0.5, np.float32), "cls")
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Cast", ["cls"], ["cls32"], to=TensorProto.FLOAT),
         helper.make_node("Concat", ["cls32", "x"], ["seq"], axis=1),
         helper.make_node("MatMul", ["seq", "w"], ["h"]),
         helper.make_node("Cast", ["ids"], ["idsf"], to=TensorProto.FLOAT),
         helper.make_node("Softmax", ["idsf"], ["p"], axis=-1),
         helper.make_node("Mul", ["h", "p"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])], [cls, w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    half = to_fp16(model)
    assert not any(n.op_type == "Cast" and n.input[0] == "cls" for n in half.graph.node)  # the no-op cast is gone
    x = np.random.default_rng(0).standard_normal((1, 2, 4)).astype(np.float32)
    ids = np.random.default_rng(1).integers(0, 3, (1, 3, 4)).astype(np.int64)
    got = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "ids": ids})[0]
    seq = np.concatenate([np.full((1, 1, 4), 0.5, np.float32), x], axis=1)
    e = np.exp(ids - ids.max(-1, keepdims=True))
    want = seq * (e / e.sum(-1, keepdims=True))
    np.testing.assert_allclose(got, want, atol=5e-3)
