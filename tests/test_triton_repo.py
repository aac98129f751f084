"""Triton model repository layout and config.pbtxt fields, checked structurally."""

import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fakedet.cli import main  # noqa: E402
from fakedet.export import trt_rules as R  # noqa: E402
from fakedet.export.pipeline import ExportOptions, export_package  # noqa: E402
from fakedet.export.source import ExportSource  # noqa: E402
from fakedet.export.triton import write_triton_repo  # noqa: E402
from fakedet.manifest import InputSpec, Manifest, Preprocess  # noqa: E402
from fakedet.package import ModelPackage, PackageWriter  # noqa: E402


def parse_pbtxt(text):
    """A small protobuf text-format reader: {field: [values]} with nested messages as dicts."""
    tokens = re.findall(r'"[^"]*"|[{}\[\]:,]|[^\s{}\[\]:,]+', text)
    pos = 0

    def value(tok):
        if tok.startswith('"'):
            return tok[1:-1]
        try:
            return int(tok)
        except ValueError:
            return tok

    def message(end):
        nonlocal pos
        out = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            items = []
            if tokens[pos] == "[":
                pos += 1
                while tokens[pos] != "]":
                    if tokens[pos] == ",":
                        pos += 1
                        continue
                    if tokens[pos] == "{":
                        pos += 1
                        items.append(message("}"))
                    else:
                        items.append(value(tokens[pos]))
                    pos += 1
                pos += 1
            elif tokens[pos] == "{":
                pos += 1
                items.append(message("}"))
                pos += 1
            else:
                items.append(value(tokens[pos]))
                pos += 1
            out.setdefault(key, []).extend(items)
        return out

    return message(None)


class Tiny(nn.Module):
    """conv 3x3 -> relu -> mean pool -> linear: a detector-shaped net that exports in a second."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, 1)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    torch.manual_seed(0)
    spec = InputSpec(preprocess=Preprocess(policy="center-crop", size=(24, 32)))
    cfg = {"arch": "tiny", "model_kwargs": {}, "input": spec.to_dict(), "threshold": 0.4}
    dest = tmp_path_factory.mktemp("t") / "det.fdet"
    export_package(ExportSource(Tiny().eval(), cfg, None), dest, ExportOptions(precision="fp32"), echo=lambda m: None)
    return dest


def test_onnxruntime_model_layout_and_config(package, tmp_path):
    repo = tmp_path / "repo"
    (written,) = write_triton_repo(package, repo, "det", max_batch=8, kind="gpu", count=2)
    assert written == repo / "det"
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == ["det/1/model.onnx", "det/config.pbtxt", "det/fakedet.manifest.json"]
    cfg = parse_pbtxt((repo / "det/config.pbtxt").read_text())
    assert cfg["name"] == ["det"] and cfg["platform"] == ["onnxruntime_onnx"] and cfg["max_batch_size"] == [8]
    (inp,), (out,) = cfg["input"], cfg["output"]
    assert inp == {"name": ["image"], "data_type": ["TYPE_FP32"], "format": ["FORMAT_NCHW"], "dims": [3, 24, 32]}
    assert out == {"name": ["logit"], "data_type": ["TYPE_FP32"], "dims": [1]}
    (db,) = cfg["dynamic_batching"]
    assert db["preferred_batch_size"] == [4, 8] and db["max_queue_delay_microseconds"] == [100]
    assert cfg["instance_group"] == [{"count": [2], "kind": ["KIND_GPU"]}]
    # the tensor names in the config are the ONNX model's
    import onnx

    m = onnx.load(str(repo / "det/1/model.onnx"))
    assert [i.name for i in m.graph.input] == ["image"] and [o.name for o in m.graph.output] == ["logit"]
    # the preprocessing contract beside the model
    contract = Manifest.from_json((repo / "det/fakedet.manifest.json").read_text())
    assert contract.input.preprocess.policy == "center-crop" and contract.threshold.value == 0.4


def test_tensorrt_model_from_plans_and_whole_image_dims(tmp_path):
    torch.manual_seed(0)
    spec = InputSpec(dynamic_axes=("batch", "height", "width"), preprocess=Preprocess(policy="whole-image", size=None))
    cfg = {"arch": "tiny", "model_kwargs": {}, "input": spec.to_dict(), "threshold": 0.5}
    pkg_path = tmp_path / "w.fdet"
    export_package(ExportSource(Tiny().eval(), cfg, None), pkg_path, ExportOptions(precision="fp32", whole_image_size=(32, 32)),
                   echo=lambda m: None)
    pkg = ModelPackage.open(pkg_path)
    # Plan entries as `fakedet build` records them (the bytes are placeholders: Triton is not run here)
    with PackageWriter(pkg_path, pkg.manifest, base=pkg) as w:
        for ver, cc, maxb in (("10.3.0", "8.7", 16), ("10.16.0", "9.0", 32), ("8.6.1", "9.0", 8)):
            prof = R.profile_shapes(pkg.manifest.input, (1, 4, maxb), (64, 256, 512))
            name = R.plan_filename(ver, cc, "fp16")
            w.staged_path(name).write_bytes(np.random.default_rng(maxb).bytes(64))
            w.add_file(None, name, "trt-plan", **R.plan_attrs(ver, cc, "gpu", "fp16", prof, None, False, "none",
                                                              "model.onnx", None))
    repo = tmp_path / "repo"
    assert main(["export", str(pkg_path), "-o", str(repo), "--format", "triton", "--instance", "cpu:1"]) == 0
    onnx_cfg = parse_pbtxt((repo / "w/config.pbtxt").read_text())
    assert onnx_cfg["input"][0]["dims"] == [3, -1, -1] and onnx_cfg["instance_group"][0]["kind"] == ["KIND_CPU"]
    trt_cfg = parse_pbtxt((repo / "w_trt/config.pbtxt").read_text())
    assert trt_cfg["platform"] == ["tensorrt_plan"] and trt_cfg["name"] == ["w_trt"]
    # one plan per GPU, newest TensorRT for sm90; max batch within every profile
    assert {d["key"][0]: d["value"][0] for d in trt_cfg["cc_model_filenames"]} == {
        "8.7": "trt-10.3.0_sm87_fp16.plan", "9.0": "trt-10.16.0_sm90_fp16.plan"}
    assert trt_cfg["max_batch_size"] == [16]
    assert trt_cfg["default_model_filename"] == ["trt-10.3.0_sm87_fp16.plan"]
    plans = sorted(p.name for p in (repo / "w_trt/1").iterdir())
    assert plans == ["trt-10.16.0_sm90_fp16.plan", "trt-10.3.0_sm87_fp16.plan"]
    assert (repo / "w_trt/1/trt-10.3.0_sm87_fp16.plan").read_bytes() == (pkg_path / "plans/trt-10.3.0_sm87_fp16.plan").read_bytes()
    assert json.loads((repo / "w_trt/fakedet.manifest.json").read_text())["name"] == "w"


def test_rewrite_replaces_model_dir_and_keeps_other_models(package, tmp_path):
    repo = tmp_path / "repo"
    (repo / "other/1").mkdir(parents=True)
    (repo / "other/config.pbtxt").write_text('name: "other"\n')
    write_triton_repo(package, repo, "det", max_batch=4)
    (repo / "det/stale.txt").write_text("old")
    write_triton_repo(package, repo, "det", max_batch=2)
    assert not (repo / "det/stale.txt").exists()
    assert parse_pbtxt((repo / "det/config.pbtxt").read_text())["max_batch_size"] == [2]
    assert (repo / "other/config.pbtxt").exists()
    assert [p.name for p in repo.iterdir() if p.name.startswith(".")] == []
