"""Graph normalisation of foreign ONNX models (calibration/normalise.py) in `fakedet package`
and `fakedet calibrate --input-spec`: a tiny torch net exported the ordinary way (TorchScript
exporter, BatchNorm folded, equal biases deduplicated into Identity nodes) gets its
Identity-fed biases folded, stays within the parity tolerance, and then quantizes every Conv."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from click.testing import CliRunner  # noqa: E402

from fakedet.calibration.cpu_speed import verdict  # noqa: E402
from fakedet.calibration.normalise import census, normalise  # noqa: E402
from fakedet.cli import cli  # noqa: E402
from fakedet.package import ModelPackage  # noqa: E402
from test_calibration_pipeline import write_images  # noqa: E402

SIZE = 16


class TiedNet(torch.nn.Module):
    """Conv+BN blocks with equal channel counts: freshly initialised BatchNorms fold into equal
    (zero) biases, which the exporter stores once and hands to the other Convs via Identity."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8))
        self.blocks = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8))
            for _ in range(3))  # fmt: skip
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        for block in self.blocks:
            y = torch.relu(block(y) + y)
        return self.head(y.mean((2, 3)))


def export_tied(path: Path) -> Path:
    torch.onnx.export(TiedNet().eval(), torch.randn(1, 3, SIZE, SIZE), str(path), opset_version=17,
                      input_names=["input"], output_names=["logit"],
                      dynamic_axes={"input": {0: "batch"}, "logit": {0: "batch"}}, dynamo=False)  # fmt: skip
    return path


def write_spec(path: Path) -> Path:
    path.write_text(json.dumps({"input": {"name": "input", "mean": [0.5] * 3, "std": [0.25] * 3,
                                          "preprocess": {"policy": "resize", "size": [SIZE, SIZE]}},
                                "output": {"name": "logit", "kind": "logit"}, "threshold": 0.5}))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    t = tmp_path_factory.mktemp("normalise")
    return export_tied(t / "tied.onnx"), write_spec(t / "spec.json")


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def executed_ops(path: Path, tmp: Path) -> Counter:
    """Op counts of the graph ONNX Runtime's CPU provider really runs (its optimized model)."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp / f"{path.stem}.executed.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


def test_the_export_has_identity_fed_biases(exported):
    """The premise: the ordinary export really carries the artefact this module removes."""
    c = census(onnx.load(str(exported[0])))
    assert c["identity_fed_initializers"] >= 3 and c["biases_not_initializers"] >= 3 and c["conv"] == 4


def test_package_folds_identity_fed_biases_and_records_parity(exported, tmp_path):
    model, spec = exported
    res = CliRunner().invoke(cli, ["package", str(model), "--input-spec", str(spec), "-o", str(tmp_path / "t.fdet")])
    assert res.exit_code == 0, res.output
    assert "graph normalisation (ort)" in res.output
    with ModelPackage.open(tmp_path / "t.fdet") as pkg:
        rec = pkg.manifest.provenance["graph_normalisation"]
        packaged = pkg.path_of(pkg.manifest.artifact("onnx-fp32"))
        g = onnx.load(str(packaged)).graph
        inits = {i.name for i in g.initializer}
        assert not [n for n in g.node if n.op_type == "Identity"]
        assert all(n.input[2] in inits for n in g.node if n.op_type == "Conv")
        assert rec["applied"] and rec["after"]["identity_fed_initializers"] == 0
        assert {o.domain for o in onnx.load(str(packaged)).opset_import} == {""}  # none of ORT's own domains
        assert rec["before"]["identity_fed_initializers"] == census(onnx.load(str(model)))["identity_fed_initializers"]
        # parity, computed independently of the module on other inputs
        x = np.random.default_rng(7).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
        assert np.max(np.abs(ort_logits(model, x) - ort_logits(packaged, x))) < 1e-4
        assert 0 <= rec["max_abs_logit_diff"] < 1e-4
        assert not pkg.manifest.artifacts_of("onnx-source")


def test_keep_original_and_no_normalisation(exported, tmp_path):
    model, spec = exported
    res = CliRunner().invoke(cli, ["package", str(model), "--input-spec", str(spec), "-o", str(tmp_path / "n.fdet"),
                                   "--normalise", "none", "--keep-original"])  # fmt: skip
    assert res.exit_code == 0, res.output
    with ModelPackage.open(tmp_path / "n.fdet") as pkg:
        pkg.verify()
        (src,) = pkg.manifest.artifacts_of("onnx-source")
        assert (pkg.root / src.file).read_bytes() == model.read_bytes()
        g = onnx.load(str(pkg.path_of(pkg.manifest.artifact("onnx-fp32")))).graph
        assert sum(n.op_type == "Identity" for n in g.node) >= 3
        assert pkg.manifest.provenance["graph_normalisation"] == {"method": "none", "applied": False,
                                                                  "before": census(onnx.load(str(model)))}  # fmt: skip


def test_a_parity_miss_keeps_the_original(exported, monkeypatch):
    """A normaliser that changes the answer is refused and the record says why."""
    import fakedet.calibration.normalise as nm

    def corrupt(src, dst):
        m = onnx.load(str(src))
        b = next(i for i in m.graph.initializer if i.name.endswith("head.bias"))
        b.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(b) + 1.0, b.name))
        onnx.save(m, str(dst))

    monkeypatch.setattr(nm, "_ort_pre_process", corrupt)
    original = onnx.load(str(exported[0]))
    x = np.zeros((2, 3, SIZE, SIZE), np.float32)
    out, rec = normalise(original, x, "ort")
    assert out is original and not rec["applied"]
    assert rec["max_abs_logit_diff"] == pytest.approx(1.0, abs=1e-5) and "differ" in rec["why_not"]


@pytest.mark.parametrize("method, all_quantized", [("ort", True), ("onnxslim", True), ("none", False)])
def test_calibrate_input_spec_quantizes_every_conv(exported, tmp_path, method, all_quantized):
    """After normalisation ONNX Runtime runs every Conv of the CPU INT8 artifact as QLinearConv;
    without it (the old behaviour) the Identity-fed ones stay float."""
    model, spec = exported
    write_images(tmp_path / "calib", 6, 6, seed=1)
    res = CliRunner().invoke(cli, ["calibrate", str(model), "--input-spec", str(spec), "--data", str(tmp_path / "calib"),
                                   "--samples", "12", "--normalise", method, "-o", str(tmp_path / "c.fdet"), "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "INT8 is " in res.output and "x FP32 on this CPU: the runtime will run " in res.output
    with ModelPackage.open(tmp_path / "c.fdet") as pkg:
        cpu = next(a for a in pkg.manifest.artifacts_of("onnx-int8-qdq") if a.attrs["target"] == "ort-cpu")
        ops = executed_ops(pkg.path_of(cpu), tmp_path)
    assert ops["QLinearConv"] + ops["Conv"] + ops["FusedConv"] == 4
    assert (ops["QLinearConv"] == 4) is all_quantized, ops


def test_verdict_names_what_the_runtime_picks():
    assert verdict(0.54) == "INT8 is 0.54x FP32 on this CPU: the runtime will run FP32"
    assert verdict(3.06) == "INT8 is 3.06x FP32 on this CPU: the runtime will run INT8"
