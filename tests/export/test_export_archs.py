"""Export + parity for the four detector architectures (random init, pretrained none),
through the CLI, with the dynamic batch run at 1, 3 and 8. Each architecture is
exported once per module and shared by its tests."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")
import onnxruntime as ort  # noqa: E402

from fakedet.cli import main  # noqa: E402
from fakedet.package import ModelPackage, read_onnx_manifest  # noqa: E402

ARCHS = {
    "resnet50-nodown": {},
    "resnet50": {},
    "clip-mlp": {"clip_model": "ViT-B-32"},
    "clip-linear": {"clip_model": "ViT-B-32"},
}
WHOLE_IMAGE_SIDE = 64  # resnet50-nodown takes whole images: keep them small


def _onnx_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"], disabled_optimizers=["NchwcTransformer"])
    return {b: sess.run(None, {"image": np.ascontiguousarray(x[:b])})[0] for b in (1, 3, 8)}


@pytest.fixture(scope="module", params=list(ARCHS))
def exported(request, tmp_path_factory):
    from fakedet.train.checkpoint import load_checkpoint, save_checkpoint
    from fakedet.train.models import create_model

    arch = request.param
    kwargs = ARCHS[arch]
    root = tmp_path_factory.mktemp(arch)
    torch.manual_seed(0)
    model = create_model(arch, pretrained="none", **kwargs)
    with torch.no_grad():  # a fresh head outputs ~0; give the logits some spread so agreement means something
        for p in model.parameters():
            if p.dim() == 1 and p.numel() == 1:
                p.add_(0.3)
    ck = save_checkpoint(root / "ck", model.eval(), {"arch": arch, "model_kwargs": kwargs, "threshold": 0.5,
                                                       "metrics": {"auc": 0.5}, "data_digest": "d" * 16})
    del model
    pkg = root / f"{arch}.fdet"
    rc = main(["export", str(ck), "-o", str(pkg), "--precision", "both", "--sample-size", str(WHOLE_IMAGE_SIDE)])
    assert rc == 0
    reloaded, _ = load_checkpoint(ck)
    return arch, ck, pkg, reloaded.eval()


def test_package_and_parity_report(exported):
    arch, ck, pkg_path, _ = exported
    pkg = ModelPackage.open(pkg_path)
    pkg.verify()
    m = pkg.manifest
    assert m.architecture == arch and m.provenance["checkpoint"] == str(ck.resolve())
    assert len(m.provenance["checkpoint_sha256"]) == 64 and m.provenance["data_digest"] == "d" * 16
    parity = m.provenance["parity"]
    assert parity["onnx-fp32"]["passed"] and parity["onnx-fp32"]["max_abs_diff"] <= 1e-4
    assert parity["onnx-fp16"]["passed"] and parity["onnx-fp16"]["max_abs_diff"] <= 5e-2
    report = json.loads((pkg_path / "parity/report.json").read_text())
    for kind in ("onnx-fp32", "onnx-fp16"):
        for inputs in ("random", "real"):
            assert sorted(report[kind][inputs]) == ["batch_1", "batch_3", "batch_8"]
    assert json.loads(read_onnx_manifest(pkg_path / "model.onnx"))["architecture"] == arch
    if arch.startswith("clip"):
        assert m.provenance["export"]["exporter"] == "legacy"  # MHA fast path handled, no fallback needed


def test_independent_parity_at_batch_1_3_8(exported):
    """Fresh inputs, the checkpoint reloaded by the training code, ONNX Runtime directly.
    (FP16 at 1, 3 and 8 is in the export's own report, checked above.)"""
    arch, _, pkg_path, model = exported
    pkg = ModelPackage.open(pkg_path)
    spec = pkg.manifest.input
    h, w = (WHOLE_IMAGE_SIDE + 8, WHOLE_IMAGE_SIDE - 8) if spec.preprocess.policy == "whole-image" else spec.preprocess.size
    x = np.random.default_rng(7).standard_normal((8, 3, h, w)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    fp32 = _onnx_run(pkg_path / "model.onnx", x)
    for b in (1, 3, 8):
        assert fp32[b].shape == (b, 1)
        assert np.abs(fp32[b] - ref[:b]).max() <= 1e-4, (arch, b)
    assert np.std(ref) > 0  # the inputs did reach the logit


def test_detector_scores_images_from_the_package(exported, tmp_path):
    arch, _, pkg_path, model = exported
    if arch != "resnet50-nodown":
        pytest.skip("one architecture is enough for the runtime round trip")
    from conftest import save_image

    from fakedet.runtime.detector import Detector
    from fakedet.runtime.preprocess import preprocess

    paths = [save_image(tmp_path / f"{i}.png", size=(48 + 8 * i, 40), seed=i) for i in range(3)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    with Detector.open(pkg_path, backend="ort-cpu", precision="fp32") as det:
        preds = det.predict(paths + [bad])
    assert [p.ok for p in preds] == [True, True, True, False]
    with torch.no_grad():
        want = [float(torch.sigmoid(model(torch.from_numpy(preprocess(p, det.manifest.input)[None])))[0, 0]) for p in paths]
    np.testing.assert_allclose([p.score for p in preds[:3]], want, atol=1e-5)
    assert all(p.is_fake == (p.score >= 0.5) for p in preds[:3])


def test_runtime_runs_the_fp16_artifact(exported, tmp_path):
    """The fp16 ONNX runs through the runtime on the CPU (ORT's NchwcTransformer, which
    crashes on fp16 ViTs, is disabled from the artifact's attrs) and tracks fp32."""
    from conftest import save_image

    from fakedet.runtime.detector import Detector

    _, _, pkg_path, _ = exported
    img = save_image(tmp_path / "a.png", size=(72, 56), seed=3)
    with Detector.open(pkg_path, backend="ort-cpu", precision="fp32") as det:
        (p32,) = det.predict([img])
    with Detector.open(pkg_path, backend="ort-cpu", precision="fp16") as det:
        assert det.choice.artifact.kind == "onnx-fp16"
        (p16,) = det.predict([img])
    assert p32.ok and p16.ok
    assert abs(p16.logit - p32.logit) < 5e-2
