"""The evidence map at export: exact for the nodown ResNets (the pooled logit is the
linear head on the map's mean), a second ONNX output, declared in the manifest."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import onnxruntime as ort  # noqa: E402

from fakedet.cli import main  # noqa: E402
from fakedet.errors import ManifestError  # noqa: E402
from fakedet.manifest import Manifest  # noqa: E402
from fakedet.package import ModelPackage  # noqa: E402
from fakedet.train.models import create_model  # noqa: E402
from fakedet.train.models.evidence import EvidenceGraph, supports_evidence  # noqa: E402


def _spread(model):
    torch.manual_seed(0)
    with torch.no_grad():  # a fresh head is ~0: give the map some spread
        model.fc[-1].weight.normal_(0, 2.0 / model.fc[-1].in_features ** 0.5)
        model.fc[-1].bias.fill_(0.3)
    return model.eval()


@pytest.mark.parametrize("arch,side", [("resnet-tiny-nodown", 48), ("resnet50-nodown", 32)])
def test_pooled_logit_is_the_head_on_the_mean_of_the_map(arch, side):
    model = _spread(create_model(arch, pretrained="none"))
    x = torch.randn(2, 3, side, side + 8)
    with torch.no_grad():
        logit, evidence = EvidenceGraph(model).eval()(x)
        reference = model(x)
    assert evidence.shape[:2] == (2, 1) and evidence.shape[2] * evidence.shape[3] > 1
    torch.testing.assert_close(logit, reference, atol=1e-5, rtol=0)  # the graph's logit is the model's own
    # independent reference: the head applied to the mean of the map, i.e. mean over regions
    # (float32: a 2048-term dot product per region, then a mean, summed in another order than the
    # pooled path; 1.2e-5 was seen once under load, so the bound is 5e-5, still far below any real error)
    np.testing.assert_allclose(evidence.mean(dim=(2, 3)).numpy(), reference.numpy(), atol=5e-5)
    assert float(evidence.std()) > 1e-3  # a map, not a constant


def test_models_without_an_exact_map_are_refused():
    from torch import nn

    head = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    model = create_model("resnet-tiny-nodown", pretrained="none")
    model.fc = head
    assert not supports_evidence(model)
    with pytest.raises(ValueError, match="no exact evidence map"):
        EvidenceGraph(model)


@pytest.fixture
def tiny_package(evidence_packages):
    return evidence_packages[0]


@pytest.mark.parametrize("file", ["model.onnx", "model.fp16.onnx"])
def test_exported_graph_has_the_evidence_output(tiny_package, file):
    sess = ort.InferenceSession(str(tiny_package / file), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["logit", "evidence"]
    x = np.random.default_rng(0).normal(size=(3, 3, 40, 56)).astype(np.float32)
    logit, evidence = sess.run(None, {"image": x})
    assert evidence.shape == (3, 1, 5, 7)  # three stride-2 stages
    tol = 1e-5 if file == "model.onnx" else 5e-2
    np.testing.assert_allclose(evidence.mean(axis=(1, 2, 3)), logit[:, 0], atol=tol)


def test_manifest_declares_it_and_older_schemas_still_read(tiny_package):
    m = ModelPackage.open(tiny_package).manifest
    assert m.schema_version == 3 and m.evidence is not None and m.evidence.name == "evidence"
    check = m.evidence.details["check"]["onnx-fp32"]
    assert check["max_abs_mean_minus_logit"] <= 1e-4
    d = json.loads((tiny_package / "manifest.json").read_text())
    old = {k: v for k, v in d.items() if k != "evidence"}
    for version in (1, 2):
        assert Manifest.from_dict({**old, "schema_version": version, "artifacts": []}).evidence is None
    with pytest.raises(ManifestError, match="evidence needs schema_version 3"):
        Manifest.from_dict({**d, "schema_version": 2})
    with pytest.raises(ManifestError, match="partial_logit"):
        Manifest.from_dict({**d, "evidence": {**d["evidence"], "partial_logit": "high"}})


def test_no_evidence_flag_exports_one_output(evidence_packages):
    pkg = evidence_packages[1]
    sess = ort.InferenceSession(str(pkg / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["logit"]
    assert ModelPackage.open(pkg).manifest.evidence is None
