"""`fakedet bench` on the CPU: PyTorch eager (from a checkpoint) vs ORT FP32 vs ORT INT8
for one tiny package, through the real CLI."""

import json

import pytest

torch = pytest.importorskip("torch")

from fakedet.cli import main  # noqa: E402
from fakedet.manifest import InputSpec, Manifest, Preprocess  # noqa: E402
from fakedet.package import PackageWriter  # noqa: E402
from package_helpers import add_artifacts  # noqa: E402

ARCH = "bench-tiny-cnn"


def _spec(**_):
    return InputSpec(name="image", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                     preprocess=Preprocess(policy="center-crop", size=(16, 16))).validate()


def _register():
    from fakedet.train.models import list_models, register_model

    if ARCH in list_models():
        return

    @register_model(name=ARCH, input_spec=_spec)
    def bench_tiny_cnn(pretrained: str = "none", width: int = 4):
        """Tiny conv net for the bench tests."""
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(), torch.nn.Linear(width, 1),
        )


@pytest.fixture(scope="module")
def package_with_checkpoint(tmp_path_factory):
    from fakedet.train.checkpoint import save_checkpoint
    from fakedet.train.models import create_model

    _register()
    tmp = tmp_path_factory.mktemp("benchcli")
    torch.manual_seed(0)
    model = create_model(ARCH, width=4).eval()
    ckpt = save_checkpoint(tmp / "ckpt", model, {"arch": ARCH, "model_kwargs": {"width": 4}})
    onnx_path = tmp / "m.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 16, 16),), str(onnx_path), input_names=["image"],
                      output_names=["logit"], dynamic_axes={"image": {0: "batch"}, "logit": {0: "batch"}},
                      opset_version=17, dynamo=False)
    manifest = Manifest(name="tiny-cnn", architecture=ARCH, input=_spec(), provenance={"checkpoint": "ckpt"})
    pkg_dir = tmp / "tiny.fdet"
    with PackageWriter(pkg_dir, manifest) as w:
        w.add_file(onnx_path, "model.onnx", "onnx-fp32")
    add_artifacts(pkg_dir, int8=True, tmp=tmp)
    return pkg_dir, ckpt, tmp


def test_bench_cli_torch_vs_ort_fp32_vs_int8(package_with_checkpoint, tmp_path, capsys):
    pkg_dir, _, _ = package_with_checkpoint
    out_json, out_csv, out_png = tmp_path / "b.json", tmp_path / "b.csv", tmp_path / "b.png"
    rc = main(["bench", str(pkg_dir), "--backend", "torch,ort-cpu", "--precision", "fp32,int8", "--batch", "1,4",
               "--warmup", "0", "--duration", "0.02", "--repeats", "2", "--threads", "1", "-q",
               "--json", str(out_json), "--csv", str(out_csv), "--plot", str(out_png)])
    assert rc == 0
    table = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    rows = {(r["backend"], r["precision"], r["batch"]) for r in report["results"]}
    assert rows == {(b, p, n) for b, p in [("torch", "fp32"), ("ort-cpu", "fp32"), ("ort-cpu", "int8")]
                    for n in (1, 4)}
    torch_row = next(r for r in report["results"] if r["backend"] == "torch")
    assert torch_row["artifact"] == "ckpt" and torch_row["split_ms"]["h2d"] is None
    (skip,) = report["skipped"]
    assert skip["backend"] == "torch" and skip["precision"] == "int8" and "fp32" in skip["reason"]
    assert "torch" in table and "ort-cpu" in table and "int8" in table
    assert out_csv.read_text().count("\n") == 1 + 6 and out_png.stat().st_size > 0


def test_torch_backend_matches_onnx(package_with_checkpoint):
    import numpy as np

    from fakedet.package import ModelPackage
    from fakedet.runtime.selection import choose, make_backend

    pkg_dir, _, _ = package_with_checkpoint
    pkg = ModelPackage.open(pkg_dir)
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with make_backend(choose(pkg, "torch", "fp32"), pkg, device="cpu") as tb, \
            make_backend(choose(pkg, "ort-cpu", "fp32"), pkg) as ob:
        np.testing.assert_allclose(tb.infer(x), ob.infer(x), rtol=1e-4, atol=1e-5)


def test_bench_without_checkpoint_lists_reason(tmp_path, capsys):
    from conftest import build_tiny_onnx, write_spec

    build_tiny_onnx(tmp_path / "t.onnx")
    spec = write_spec(tmp_path / "spec.json")
    assert main(["package", str(tmp_path / "t.onnx"), "--input-spec", str(spec), "-o", str(tmp_path / "t.fdet")]) == 0
    rc = main(["bench", str(tmp_path / "t.fdet"), "--backend", "torch,ort-cpu", "--precision", "fp32",
               "--batch", "2", "--warmup", "0", "--duration", "0.01", "--repeats", "1", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "skipped torch fp32" in out and "--checkpoint" in out


def test_bench_nothing_runnable_exits_2_with_reasons(tiny_package, capsys):
    pkg_dir, _ = tiny_package
    rc = main(["bench", str(pkg_dir), "--backend", "tensorrt", "--precision", "fp16", "--batch", "1", "-q"])
    assert rc == 2
    out = capsys.readouterr()
    assert "skipped tensorrt fp16" in out.out and "fakedet build" in out.out
    assert "no combination could run" in out.err
    assert main(["bench", str(pkg_dir), "--precision", "fp64"]) == 2


def test_detector_runs_the_checkpoint_on_the_torch_backend(package_with_checkpoint):
    """backend="torch" is chosen like the others: the manifest's checkpoint, PyTorch eager."""
    import numpy as np

    from fakedet.runtime import Detector

    pkg_dir, _, _ = package_with_checkpoint
    imgs = [np.random.default_rng(i).integers(0, 256, (20, 20, 3), dtype=np.uint8) for i in range(5)]
    with Detector.open(pkg_dir, backend="torch", device="cpu", batch_size=2) as eager, \
            Detector.open(pkg_dir, backend="ort-cpu", precision="fp32") as ort:
        assert eager.choice.artifact.file == "ckpt" and eager.choice.precision == "fp32"
        assert "torch" in eager.describe() and "checkpoint" in eager.describe()
        for a, b in zip(eager.predict(imgs), ort.predict(imgs)):
            assert a.ok and a.logit == pytest.approx(b.logit, abs=1e-4)
