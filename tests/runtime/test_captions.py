"""Caption-aware detectors end to end (issue 15): schema 2 manifests, the two-input export and
its parity, the runtime's captions (Detector, predict CLI), the backends' named inputs, and
eval's shuffled-caption control on a set whose captions leak the label."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caption_helpers import caption_checkpoint, caption_package, export_caption_package, micro_clip, one_thread  # noqa: F401
from fakedet.errors import BackendError, FakedetError, ManifestError, PackageError
from fakedet.manifest import Manifest, TextInputSpec
from fakedet.package import ModelPackage
from fakedet.runtime import Detector

DATA = Path(__file__).parents[1] / "data"
SCHEMA1_SCORE = 0.5282784542393163  # tests/data/schema1.fdet on the image below, computed by fakedet before schema 2


def _image(seed: int = 0, size=(20, 22)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _reference_scores(ckpt: Path, images, captions) -> np.ndarray:
    """P(fake) from PyTorch: the checkpoint's model on the runtime's preprocessing and open_clip's tokens."""
    import torch

    from fakedet.runtime.preprocess import preprocess_image
    from fakedet.train.checkpoint import load_checkpoint
    from fakedet.train.models.clip import CaptionAwareGraph

    model, cfg = load_checkpoint(ckpt)
    from fakedet.manifest import InputSpec

    spec = InputSpec.from_dict(cfg["input"])
    x = np.stack([preprocess_image(Image.fromarray(a), spec) for a in images])
    ids = model.token_ids(captions)
    with torch.no_grad():
        logits = CaptionAwareGraph(model.eval())(torch.from_numpy(x), torch.from_numpy(ids)).numpy().ravel()
    return 1 / (1 + np.exp(-logits.astype(np.float64)))


# ---- schema ------------------------------------------------------------------------------
def test_a_schema1_package_written_before_schema2_opens_and_scores_unchanged():
    pkg = ModelPackage.open(DATA / "schema1.fdet")
    assert pkg.manifest.schema_version == 1 and not pkg.manifest.takes_captions
    img = (np.arange(40 * 48 * 3).reshape(40, 48, 3) * 7 % 256).astype(np.uint8)
    for source in (DATA / "schema1.fdet", DATA / "schema1.fdet" / "model.onnx"):  # the package, and its bare ONNX
        with Detector.open(source) as det:
            assert not det.takes_captions
            assert det.predict([img])[0].score == pytest.approx(SCHEMA1_SCORE, abs=1e-6)
            assert det.predict([img], captions=["ignored by an image-only model"])[0].score == pytest.approx(SCHEMA1_SCORE, abs=1e-6)


def test_text_input_validation_and_schema_rules():
    d = json.loads((DATA / "schema1.fdet" / "manifest.json").read_text())
    assert Manifest.from_dict(d).to_dict()["schema_version"] == 1  # read as written
    spec = TextInputSpec().to_dict()
    with pytest.raises(ManifestError, match="text_input needs schema_version 2"):
        Manifest.from_dict({**d, "text_input": spec})
    for bad, match in (({"context_length": 1}, "context_length"), ({"dtype": "float32"}, "dtype"),
                       ({"empty_caption": "maybe"}, "empty_caption"), ({"tokenizer_kind": "sentencepiece"}, "tokenizer_kind"),
                       ({"tokens": 3}, "unknown field")):
        with pytest.raises(ManifestError, match=match):
            Manifest.from_dict({**d, "schema_version": 2, "text_input": {**spec, **bad}})
    m = Manifest.from_dict({**d, "schema_version": 2, "text_input": spec})
    assert m.takes_captions and Manifest.from_json(m.to_json()).text_input == m.text_input
    with pytest.raises(ManifestError, match="tokenizer 'tokenizer.json' is not an artifact"):
        m.tokenizer_artifact()


# ---- export --------------------------------------------------------------------------------
def test_export_writes_two_inputs_a_hashed_tokenizer_and_caption_parity(caption_package):
    import onnx

    pkg_dir, _ = caption_package
    pkg = ModelPackage.open(pkg_dir)
    m = pkg.manifest
    assert m.schema_version == 2 and m.text_input.context_length == 77 and m.text_input.empty_caption == "refuse"
    tok = m.tokenizer_artifact()
    assert tok.kind == "tokenizer" and len(tok.sha256) == 64
    proto = onnx.load(str(pkg_dir / "model.onnx"), load_external_data=False)
    inputs = {i.name: i.type.tensor_type for i in proto.graph.input}
    assert list(inputs) == ["image", "text"]
    assert inputs["text"].elem_type == onnx.TensorProto.INT32
    assert [d.dim_param or d.dim_value for d in inputs["text"].shape.dim] == ["batch", 77]
    report = json.loads((pkg_dir / "parity" / "report.json").read_text())["onnx-fp32"]
    assert report["passed"] and report["batches"] == [1, 3, 8]
    lengths = report["caption_tokens"]
    assert min(lengths) == 2 and max(lengths) == 77 and len(set(lengths)) >= 5  # empty ... cut at the context length
    assert m.provenance["tokenizer_check"]["identical_to_open_clip"] is True
    assert m.provenance["parity"]["onnx-fp32"]["caption_tokens"] == lengths  # in the manifest, as for images


def test_tampered_tokenizer_is_refused(caption_package, tmp_path):
    pkg_dir, _ = caption_package
    copy = tmp_path / "copy.fdet"
    shutil.copytree(pkg_dir, copy)
    tok = copy / "tokenizer.json"
    tok.write_text(tok.read_text().replace('"a</w>"', '"b</w>"', 1))
    with pytest.raises(PackageError, match="tokenizer.json"):
        Detector.open(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["kind"] != "tokenizer"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="tokenizer 'tokenizer.json' is not an artifact"):
        ModelPackage.open(copy)


# ---- runtime -------------------------------------------------------------------------------
def test_predict_with_captions_matches_pytorch_and_refuses_a_missing_caption(caption_package):
    pkg_dir, ckpt = caption_package
    images = [_image(i) for i in range(5)]
    captions = ["a photo", "", None, "A red bus &amp; a bridge at dusk 🚌 " * 30, "Café crème"]
    with Detector.open(pkg_dir, backend="ort-cpu", precision="fp32", batch_size=2) as det:
        assert det.takes_captions
        preds = det.predict(images, captions=captions)
        for i in (1, 2):  # blank and missing captions: this package refuses them, item by item
            assert preds[i].score is None and "no caption" in preds[i].error
        ok = [0, 3, 4]
        ref = _reference_scores(ckpt, [images[i] for i in ok], [captions[i] for i in ok])
        np.testing.assert_allclose([preds[i].score for i in ok], ref, atol=1e-5)
        # the caption changes the score: the text tower is in the graph
        a, b = det.predict([images[0]] * 2, captions=["a photo", "an oil painting of ships"])
        assert abs(a.score - b.score) > 1e-4
        assert all(p.error for p in det.predict(images[:2]))  # no captions at all
        with pytest.raises(FakedetError, match="2 caption"):
            det.predict(images[:3], captions=["x", "y"])
        with pytest.raises(FakedetError, match="one caption per image"):
            det.predict(images[:1], captions="a string is not a list")
        bad = det.predict(images[:1], captions=[b"bytes"])[0]
        assert "caption must be text" in bad.error
        # a host tokenizes ahead (serve: in its decode workers) and passes the ids where the caption goes
        ids = det.captions.prepare(captions[3])
        assert ids.shape == (77,) and ids[-1] == 49407  # cut at the context length, ends with the end token
        mixed = det.predict_prepared([det.prepare(images[3]), det.prepare(images[0])], captions=[ids, "a photo"])
        assert [p.score for p in mixed] == pytest.approx([preds[3].score, preds[0].score], abs=1e-6)
        with pytest.raises(FakedetError, match="no caption"):
            det.captions.prepare("   ")
        assert det.warmup((1, 3)) > 0


def test_an_empty_caption_is_scored_when_the_package_says_so(caption_package, tmp_path):
    _, ckpt = caption_package
    pkg = export_caption_package(ckpt, tmp_path / "open.fdet", empty_caption="score")
    img = _image(3)
    with Detector.open(pkg) as det:
        assert det.manifest.text_input.empty_caption == "score"
        missing, empty, given = det.predict([img] * 3, captions=[None, "", "a photo"])
        assert missing.ok and empty.ok and missing.score == pytest.approx(empty.score, abs=1e-7)
        assert missing.score == pytest.approx(_reference_scores(ckpt, [img], [""])[0], abs=1e-5)
        assert given.ok


def test_backends_take_named_inputs_checked_and_padded(caption_package):
    from fakedet.runtime.backends.registry import create

    pkg_dir, _ = caption_package
    be = create("ort-cpu", pkg_dir / "model.onnx").open()
    try:
        names = [s.name for s in be.input_specs]
        assert names == ["image", "text"] and be.input_spec.name == "image"
        x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
        ids = np.zeros((3, 77), np.int64)  # converted to the model's int32
        ids[:, 0], ids[:, 1] = 49406, 49407
        out = be.infer({"image": x, "text": ids})
        assert out.shape == (3, 1)
        with pytest.raises(BackendError, match="pass a dict"):
            be.infer(x)
        with pytest.raises(BackendError, match="inputs are image, text"):
            be.infer({"image": x})
        with pytest.raises(BackendError, match="different numbers of rows"):
            be.infer({"image": x, "text": ids[:2]})
        with pytest.raises(BackendError, match="needs 77 on axis 1"):
            be.infer({"image": x, "text": ids[:, :10]})
        # split into runs the engine takes, rows kept together: the same logits as one run
        be._batch_ranges = lambda _shape: [(2, 2)]
        np.testing.assert_allclose(be.infer({"image": x, "text": ids}), out, atol=1e-6)
    finally:
        be.close()


def test_selection_keeps_caption_packages_off_the_native_tensorrt_backend(caption_package):
    from fakedet.errors import BackendUnavailable
    from fakedet.runtime.selection import choose

    pkg = ModelPackage.open(caption_package[0])
    c = choose(pkg, "auto", providers={"CPUExecutionProvider"})
    assert c.backend == "ort-cpu" and any("one-input models" in line for line in c.considered)
    with pytest.raises(BackendUnavailable, match="caption-aware package runs on ort-trt"):
        choose(pkg, "tensorrt")


def test_the_torch_backend_runs_the_checkpoint_with_captions(caption_package):
    from fakedet.train.eval import CheckpointScorer, PackageScorer
    from fakedet.runtime.preprocess import preprocess_image

    pkg_dir, ckpt = caption_package
    ck, pk = CheckpointScorer(ckpt, "cpu"), PackageScorer(pkg_dir)
    try:
        assert ck.takes_captions and pk.takes_captions
        x = np.stack([preprocess_image(Image.fromarray(_image(i)), pk.input_spec) for i in range(3)])
        caps = ["a photo", "two cats", "a bridge"]
        np.testing.assert_allclose(ck.score(x, caps), pk.score(x, caps), atol=1e-5)
    finally:
        ck.close()
        pk.close()


# ---- predict CLI ---------------------------------------------------------------------------
def _fakedet(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fakedet", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_predict_cli_reads_caption_and_captions_csv(caption_package, tmp_path):
    pkg_dir, ckpt = caption_package
    for i in range(3):
        Image.fromarray(_image(i)).save(tmp_path / f"{i}.png")
    r = _fakedet("predict", pkg_dir, tmp_path / "0.png", "--caption", "a photo", "--json", "-q")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["score"]
    assert got == pytest.approx(_reference_scores(ckpt, [_image(0)], ["a photo"])[0], abs=1e-5)

    with open(tmp_path / "caps.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "caption"], ["0.png", "a photo"], ["1.png", "a render"]])
    r = _fakedet("predict", pkg_dir, tmp_path, "--captions", tmp_path / "caps.csv", "--json", "-q")
    rows = {Path(json.loads(line)["path"]).name: json.loads(line) for line in r.stdout.splitlines()}
    assert r.returncode == 1  # 2.png has no caption: that image fails, the others are scored
    assert rows["0.png"]["score"] == pytest.approx(got, abs=1e-6) and rows["1.png"]["error"] is None
    assert "no caption" in rows["2.png"]["error"]

    r = _fakedet("predict", pkg_dir, tmp_path / "0.png", tmp_path / "1.png", "--caption", "x")
    assert r.returncode == 2 and "--caption is the caption of one image" in r.stderr
    (tmp_path / "bad.csv").write_text("file,text\n0.png,x\n")
    r = _fakedet("predict", pkg_dir, tmp_path / "0.png", "--captions", tmp_path / "bad.csv")
    assert r.returncode == 2 and "bad.csv" in r.stderr and "'path' and 'caption'" in r.stderr


# ---- the leak: eval's shuffled-caption control ----------------------------------------------
LEAK_CAPTIONS = {0: ("a photo taken with a phone", "a snapshot from a phone camera"),
                 1: ("an image rendered by a diffusion model", "a digital render from a generator")}


def _leaky_set(root: Path, n: int, seed: int) -> Path:
    """Reals and fakes drawn from the SAME image distribution (grey with a little noise, so the image
    features hardly vary); only the captions tell them apart."""
    rng = np.random.default_rng(seed)
    rows = [["path", "label", "caption"]]
    for label in (0, 1):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(120, 136, (20, 20, 3), dtype=np.uint8)).save(root / str(label) / f"{i}.png")
            rows.append([f"{label}/{i}.png", label, LEAK_CAPTIONS[label][i % 2]])
    with open(root / "set.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root / "set.csv"


def test_shuffled_caption_control_shows_a_label_leak(tmp_path, micro_clip):
    from fakedet.export.pipeline import ExportOptions, export_package
    from fakedet.export.source import load_source
    from fakedet.train.config import make_config
    from fakedet.train.eval import evaluate, open_scorer
    from fakedet.train.trainer import Trainer

    train_csv = _leaky_set(tmp_path / "train", 24, seed=0)
    test_csv = _leaky_set(tmp_path / "test", 20, seed=1)
    cfg = make_config(arch="clip-mlp", data=str(train_csv), out=str(tmp_path / "run"), epochs=20, batch=8, lr=1e-2,
                      seed=0, val_fraction=0.25, paired=False, progress=False, loss="bce",
                      model_kwargs={"clip_model": micro_clip, "use_text": True, "hidden": 8, "dropout": 0.0})
    Trainer(cfg).run()
    export_package(load_source(tmp_path / "run" / "best"), tmp_path / "leak.fdet", ExportOptions(precision="fp32"),
                   echo=lambda _m: None)
    for model in (tmp_path / "run" / "best", tmp_path / "leak.fdet"):  # PyTorch and the package agree on the leak
        scorer = open_scorer(model, device="cpu")
        try:
            report = evaluate(scorer, test_csv, tmp_path / f"eval-{model.name}", progress=False, caption_shuffles=8)
        finally:
            scorer.close()
        c = report["captions"]
        assert c["image_and_caption"]["auc"] >= 0.95  # the captions give the label away ...
        assert abs(c["shuffled_captions"]["auc"] - 0.5) <= 0.15  # ... and the images alone carry nothing
        assert len(c["shuffled_captions"]["auc_per_shuffle"]) == 8
        assert c["auc_from_captions"] == pytest.approx(c["image_and_caption"]["auc"] - c["shuffled_captions"]["auc"])
        assert "shuffled_captions" in report["roc"]
        assert (tmp_path / f"eval-{model.name}" / "roc.png").stat().st_size > 1000


def test_triton_repository_declares_the_text_input_and_ships_the_tokenizer(caption_package, tmp_path):
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is not installed")
    from google.protobuf import text_format

    from fakedet.export.triton import write_triton_repo

    pkg_dir, _ = caption_package
    (model_dir,) = write_triton_repo(pkg_dir, tmp_path / "repo", name="cap")
    cfg = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    ins = {i.name: (i.data_type, list(i.dims)) for i in cfg.input}
    assert ins["text"] == (mc.TYPE_INT32, [77]) and ins["image"] == (mc.TYPE_FP32, [3, 16, 16])
    assert (model_dir / "tokenizer.json").read_bytes() == (pkg_dir / "tokenizer.json").read_bytes()
    with pytest.raises(FakedetError, match="--image-endpoint serves image-only models"):
        write_triton_repo(pkg_dir, tmp_path / "repo2", image_endpoint=True)


def test_an_image_only_detector_holds_the_null_caption_input(tiny_package):
    """An image-only package's Detector holds IMAGE_ONLY, CaptionInput's null twin: captions
    are set aside (any number, any type), none is refused, the backend gets the images
    themselves; scores equal those without captions on every path."""
    from fakedet.runtime.captions import IMAGE_ONLY

    path, _ = tiny_package
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(3)]
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    assert IMAGE_ONLY.align(["a", 7], 3) == [None] * 3 and IMAGE_ONLY.problem(b"\xff") is None
    assert IMAGE_ONLY.feed("input", x, [None, None]) is x and IMAGE_ONLY.prepare("anything") is None
    with Detector.open(path) as det:
        assert det.captions is IMAGE_ONLY and not det.takes_captions
        want = [p.score for p in det.predict(images)]
        assert [p.score for p in det.predict(images, captions=["x", None, "y"])] == want
        tensors = [det.prepare(im) for im in images]
        assert [p.score for p in det.predict_prepared(tensors, captions=[1, 2])] == pytest.approx(want, abs=1e-6)
        np.testing.assert_allclose(det.predict_tensors(x, captions=["z"]), det.predict_tensors(x), rtol=0, atol=0)
