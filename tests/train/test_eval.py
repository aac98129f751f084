"""`fakedet eval` on a package (tiny ONNX made here) and on a checkpoint, checked against
independent computations (sklearn metrics, scores recomputed with PIL + numpy/torchvision)."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sklearn import metrics as skm

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")

from fakedet.cli import main  # noqa: E402
from fakedet.manifest import InputSpec, Manifest, OutputSpec, Preprocess, Threshold  # noqa: E402
from fakedet.package import PackageWriter  # noqa: E402

W_LOGIT, B_LOGIT = 4.0, -0.3


class MeanBrightness(torch.nn.Module):
    """logit = W * mean(x) + B over the normalized image: any size, one logit."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3)).unsqueeze(1) * W_LOGIT + B_LOGIT


def expected_score(img: Image.Image) -> float:
    x = (np.asarray(img, dtype=np.float64) / 255 - 0.5) / 0.5
    return 1 / (1 + np.exp(-(W_LOGIT * x.mean() + B_LOGIT)))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    d = tmp_path_factory.mktemp("pkg")
    onnx_path = d / "m.onnx"
    torch.onnx.export(MeanBrightness(), torch.zeros(1, 3, 16, 16), str(onnx_path), input_names=["image"],
                      output_names=["logit"], dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}}, dynamo=False)
    spec = InputSpec(mean=(0.5,) * 3, std=(0.5,) * 3, dynamic_axes=("batch", "height", "width"),
                     preprocess=Preprocess(policy="whole-image", size=None))
    manifest = Manifest(name="mean-brightness", architecture="test", input=spec, output=OutputSpec(name="logit"),
                        threshold=Threshold(value=0.5))
    dest = d / "mb.fdet"
    with PackageWriter(dest, manifest) as w:
        w.add_file(onnx_path, "model.onnx", "onnx-fp32")
    return dest


def _img(rng, w, h, bright):
    base = 140 if bright else 115
    return Image.fromarray(np.clip(rng.normal(base, 40, (h, w, 3)), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """top-level reals; gen_a: fakes only; gen_b: its own reals and fakes (+ one broken file)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    sizes = [(24, 24), (24, 24), (20, 28), (17, 13)]
    for folder, fake, n in [("0_real", False, 6), ("gen_a/1_fake", True, 5), ("gen_b/0_real", False, 4),
                            ("gen_b/1_fake", True, 4)]:
        (root / folder).mkdir(parents=True)
        for i in range(n):
            _img(rng, *sizes[i % len(sizes)], fake).save(root / folder / f"{i}.png")
    (root / "gen_b/1_fake/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def _read_scores(out):
    with open(out / "scores.csv") as f:
        return list(csv.DictReader(f))


def test_eval_package_metrics_match_independent_computation(package, dataset, tmp_path):
    out = tmp_path / "ev"
    rc = main(["eval", str(package), "--data", str(dataset), "--out", str(out), "--quiet", "--batch", "3",
               "--target-fpr", "0.1"])
    assert rc == 1  # one unreadable image, reported
    rep = json.loads((out / "metrics.json").read_text())
    assert rep["model"]["kind"] == "package"
    assert rep["data"]["unreadable"]["count"] == 1
    assert rep["data"]["unreadable"]["first"][0]["path"].endswith("broken.png")

    rows = [r for r in _read_scores(out) if r["score"]]
    assert len(rows) == 19
    for r in rows:  # runtime scores == PIL + numpy recomputation (shapes were mixed in batches)
        with Image.open(r["path"]) as im:
            assert float(r["score"]) == pytest.approx(expected_score(im.convert("RGB")), abs=1e-5)
    y = np.array([int(r["label"]) for r in rows])
    s = np.array([float(r["score"]) for r in rows])
    o = rep["overall"]
    assert o["auc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert o["ap"] == pytest.approx(skm.average_precision_score(y, s))
    assert o["accuracy"] == pytest.approx(skm.accuracy_score(y, s >= 0.5))
    assert o["real_accuracy"] == pytest.approx(np.mean(s[y == 0] < 0.5))
    assert o["fake_accuracy"] == pytest.approx(np.mean(s[y == 1] >= 0.5))

    # gen_a has only fakes: measured against the top-level reals
    top_real = [(r, g) for r, g in zip(rows, s) if r["generator"] == "" and r["label"] == "0"]
    a = [(r, g) for r, g in zip(rows, s) if r["generator"] == "gen_a"]
    ya = [int(r["label"]) for r, _ in top_real + a]
    sa = [g for _, g in top_real + a]
    assert rep["generators"]["gen_a"]["auc"] == pytest.approx(skm.roc_auc_score(ya, sa))
    b = [(r, g) for r, g in zip(rows, s) if r["generator"] == "gen_b"]
    assert rep["generators"]["gen_b"]["auc"] == pytest.approx(
        skm.roc_auc_score([int(r["label"]) for r, _ in b], [g for _, g in b]))

    t = rep["threshold_for_target_fpr"]
    assert np.mean(s[y == 0] >= t["threshold"]) <= 0.1
    assert t["tpr"] == pytest.approx(np.mean(s[y == 1] >= t["threshold"]))

    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(rep["roc"]["overall"]["fpr"], fpr)
    np.testing.assert_allclose(rep["roc"]["overall"]["tpr"], tpr)
    with Image.open(out / "roc.png") as im:
        assert im.format == "PNG" and im.width > 100


def test_eval_robustness_rows_match_recomputed_perturbations(package, dataset, tmp_path):
    out = tmp_path / "ev"
    rc = main(["eval", str(package), "--data", str(dataset), "--out", str(out), "--quiet",
               "--sweep", "jpeg:40 webp:50 blur:2 downscale:0.5", "--threshold", "0.45"])
    assert rc == 1
    rep = json.loads((out / "metrics.json").read_text())
    assert [r["condition"] for r in rep["robustness"]] == ["jpeg:40", "webp:50", "blur:2", "downscale:0.5"]
    assert rep["threshold"]["value"] == 0.45
    rows = [r for r in _read_scores(out) if r["score"]]

    def perturbed(path, how):
        with Image.open(path) as im:
            im = im.convert("RGB")
        if how == "blur":
            return im.filter(ImageFilter.GaussianBlur(2))
        buf = io.BytesIO()
        im.save(buf, format=how, quality=40 if how == "JPEG" else 50)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    y = [int(r["label"]) for r in rows]
    for cond, how in [("jpeg:40", "JPEG"), ("webp:50", "WEBP"), ("blur:2", "blur")]:
        s = np.array([expected_score(perturbed(r["path"], how)) for r in rows])
        row = next(r for r in rep["robustness"] if r["condition"] == cond)
        assert row["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-6)
        assert row["accuracy"] == pytest.approx(np.mean((s >= 0.45) == np.array(y, bool)))
        assert row["unreadable"] == 1
        # each condition's per-image scores are written beside the clean ones (the demo's per-photo table)
        kept = {r["path"]: r["score"] for r in csv.DictReader(open(out / row["scores"], newline=""))}
        assert [float(kept[r["path"]]) for r in rows] == pytest.approx(list(s), abs=1e-6)
    with Image.open(out / "robustness.png") as im:
        assert im.format == "PNG"


def test_bad_inputs_stop_with_one_line(package, tmp_path, capsys):
    only_real = tmp_path / "d" / "0_real"
    only_real.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(only_real / "a.png")
    assert main(["eval", str(package), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o")]) == 2
    assert "only real" in capsys.readouterr().err
    assert main(["eval", str(package), "--data", str(tmp_path / "d"), "--sweep", "jpeg:500"]) == 2
    assert "quality" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _wait_for_checkpoint_module():
    try:
        from fakedet.train.checkpoint import save_checkpoint
        from fakedet.train.models import create_model
    except ImportError as e:  # the models/checkpoint stage is written by another engineer
        pytest.skip(f"checkpoint module not available yet: {e}")
    return create_model, save_checkpoint


def test_eval_checkpoint_and_its_onnx_export_agree(dataset, tmp_path):
    create_model, save_checkpoint = _wait_for_checkpoint_module()
    from torchvision.transforms import functional as TF

    torch.manual_seed(0)
    model = create_model("resnet50-nodown", pretrained="none").eval()
    ckpt = save_checkpoint(tmp_path / "ckpt", model, {"arch": "resnet50-nodown"})

    out = tmp_path / "ev_ckpt"
    assert main(["eval", str(ckpt), "--data", str(dataset), "--out", str(out), "--quiet", "--batch", "4"]) == 1
    rep = json.loads((out / "metrics.json").read_text())
    assert rep["model"]["kind"] == "checkpoint" and rep["model"]["arch"] == "resnet50-nodown"
    with Image.open(out / "roc.png") as im:
        assert im.format == "PNG"
    rows = [r for r in _read_scores(out) if r["score"]]
    y = np.array([int(r["label"]) for r in rows])
    s = np.array([float(r["score"]) for r in rows])
    assert rep["overall"]["auc"] == pytest.approx(skm.roc_auc_score(y, s))

    # independent path: torchvision ToTensor + Normalize, the model run directly
    with torch.no_grad():
        for r in rows[:4]:
            with Image.open(r["path"]) as im:
                x = TF.normalize(TF.to_tensor(im.convert("RGB")), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
            want = torch.sigmoid(model(x[None]))[0, 0].item()
            assert float(r["score"]) == pytest.approx(want, abs=1e-5)

    # the same model exported to ONNX and packaged: one tool, same answers
    onnx_path = tmp_path / "r50.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 24, 24), str(onnx_path), input_names=["image"],
                      output_names=["logit"], dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}}, dynamo=False)
    spec = InputSpec.from_dict(json.loads((ckpt / "config.json").read_text())["input"])
    pkg = tmp_path / "r50.fdet"
    with PackageWriter(pkg, Manifest(name="r50", architecture="resnet50-nodown", input=spec)) as w:
        w.add_file(onnx_path, "model.onnx", "onnx-fp32")
    out2 = tmp_path / "ev_pkg"
    assert main(["eval", str(pkg), "--data", str(dataset), "--out", str(out2), "--quiet", "--batch", "4"]) == 1
    s2 = np.array([float(r["score"]) for r in _read_scores(out2) if r["score"]])
    np.testing.assert_allclose(s2, s, atol=1e-4)


def test_eval_csv_list_gives_the_same_scores(package, dataset, tmp_path):
    files = sorted(p for p in dataset.rglob("*.png") if p.name != "broken.png")
    lines = ["path,label,generator"] + [
        f"{p},{'fake' if p.parent.name == '1_fake' else 'real'},{p.parent.parent.relative_to(dataset).as_posix().strip('.')}"
        for p in files]
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    out_csv, out_dir = tmp_path / "a", tmp_path / "b"
    assert main(["eval", str(package), "--data", str(csv_path), "--out", str(out_csv), "--quiet"]) == 0
    main(["eval", str(package), "--data", str(dataset), "--out", str(out_dir), "--quiet"])
    a = json.loads((out_csv / "metrics.json").read_text())
    b = json.loads((out_dir / "metrics.json").read_text())
    assert a["overall"] == {**b["overall"], "unreadable": 0}
    assert a["generators"].keys() == b["generators"].keys()
