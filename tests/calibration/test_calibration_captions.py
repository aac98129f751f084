"""`fakedet calibrate` on a caption-aware package (image + caption token ids in one graph):
captions read from the dataset CSV and fed wherever the graph runs, the text tower kept in
float or quantized (--text-tower), the artifacts runnable with captions, and a set without
captions refused by name."""

import csv
import json
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("tokenizers")
pytest.importorskip("ftfy")
from PIL import Image  # noqa: E402

from caption_helpers import caption_package, micro_clip, one_thread  # noqa: E402,F401
from fakedet.calibration.dataset import load_set  # noqa: E402
from fakedet.calibration.pipeline import Options, calibrate  # noqa: E402
from fakedet.calibration.text_tower import text_tower_nodes  # noqa: E402
from fakedet.cli import main  # noqa: E402
from fakedet.errors import DataError  # noqa: E402
from fakedet.onnx_graph import producers  # noqa: E402
from fakedet.package import ModelPackage  # noqa: E402
from fakedet.runtime.captions import CaptionInput  # noqa: E402

CAPTIONS = ("a photo of a dog on the beach", "café sign at night ☕", "two people &amp; a bicycle",
            "digital art of a castle, trending", "portrait, 8k, highly detailed", "")  # fmt: skip
# the exporter's name scopes (open_clip's text tower: token embedding, transformer, final norm,
# projection): a reference for the text tower independent of calibration's reachability walk
TEXT_SCOPES = ("/token_embedding/", "/transformer/", "/ln_final/")


def write_set(root, n_per_class: int, seed: int, caption_column: bool = True, blank_first: bool = False):
    """n_per_class real + fake 16 px images and a CSV path,label[,caption] beside them."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, level in ((0, 0.35), (1, 0.6)):
        for i in range(n_per_class):
            arr = np.clip(rng.normal(level, 0.15, (16, 16, 3)), 0, 1)
            name = f"{label}_{i}.png"
            Image.fromarray((arr * 255).astype(np.uint8)).save(root / name)
            cap = CAPTIONS[(i + 3 * label) % (len(CAPTIONS) - 1)] + f" #{i}"
            rows.append({"path": name, "label": label, "caption": "" if blank_first and not rows else cap})
    path = root / "set.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["path", "label"] + (["caption"] if caption_column else []), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("capdata")
    return write_set(root / "calib", 6, seed=1), write_set(root / "heldout", 8, seed=2)


def _opts(calib, heldout, **kw):
    # a random-weight micro CLIP on 16 held-out images: the budgets here are not what is tested
    return Options(data=calib, eval_data=heldout, samples=12, progress=False, cpu_bench_seconds=0.2,
                   sensitivity_budget=2.0, max_auc_drop=0.5, max_score_shift=0.5, **kw)  # fmt: skip


def _auc(labels, scores) -> float:
    """Mann-Whitney AUC with ties counted half (the reference for the guard's figure)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


def _scoped_text_nodes(model) -> set[str]:
    return {n.name for n in model.graph.node if n.name.startswith(TEXT_SCOPES)
            and n.op_type not in ("QuantizeLinear", "DequantizeLinear")}  # fmt: skip


def _readers_of_dq(model) -> set[str]:
    """Nodes that read a DequantizeLinear's output."""
    prod = producers(model.graph)
    return {n.name for n in model.graph.node
            if any(prod.get(t) is not None and prod[t].op_type == "DequantizeLinear" for t in n.input)}  # fmt: skip


def _text_features(model_path_or_proto, feeds) -> np.ndarray:
    """The text tower's output (the head's concat input that does not come from the image)."""
    import onnxruntime as ort

    m = onnx.load(model_path_or_proto) if isinstance(model_path_or_proto, str) else model_path_or_proto
    m = onnx.ModelProto.FromString(m.SerializeToString())
    concat = next(n for n in m.graph.node if n.op_type == "Concat" and n.name == "/Concat_2")
    prod = producers(m.graph)
    t = concat.input[1]
    while prod[t].op_type in ("DequantizeLinear", "QuantizeLinear"):
        t = prod[t].input[0]
    m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run([t], feeds)[0]


def _feeds(pkg_path, n=4):
    pkg = ModelPackage.open(pkg_path)
    tok = CaptionInput.of(pkg).tokens([c or "x" for c in CAPTIONS[:n]])
    x = np.random.default_rng(0).normal(0, 1, (n, 3, 16, 16)).astype(np.float32)
    return {"image": x, "text": tok}


def test_text_tower_is_what_the_exporter_scoped_as_text(caption_package):
    pkg, _ = caption_package
    m = onnx.load(str(pkg / "model.onnx"))
    from fakedet.onnx_graph import name_nodes

    name_nodes(m)
    tower = set(text_tower_nodes(m, "text"))
    scoped = {n.name for n in m.graph.node if n.name.startswith(TEXT_SCOPES)}
    assert scoped and scoped <= tower
    assert not any(n.startswith(("/visual/", "/head/")) for n in tower)
    # the head's concat reads both towers: it and everything after it are not the text tower
    assert "/Concat_2" not in tower and "/token_embedding/Gather" in tower
    with pytest.raises(ValueError, match="no input 'caption'"):
        text_tower_nodes(m, "caption")


def test_fp32_text_tower_calibrates_and_runs_with_captions(caption_package, data, tmp_path):
    pkg, _ = caption_package
    calib, heldout = data
    out = tmp_path / "cal.fdet"
    code = main(["calibrate", str(pkg), "--data", str(calib), "--eval-data", str(heldout), "--samples", "12",
                 "--sensitivity", "--sensitivity-budget", "2", "--max-auc-drop", "0.5", "--max-score-shift", "0.5", "-o", str(out), "-q"])  # fmt: skip
    assert code == 0
    res = ModelPackage.open(out)
    rep = json.loads((out / "calibration.json").read_text())
    assert rep["calibration_data"]["captions"].startswith("12 of 12 samples captioned")
    assert "captions" in rep["eval_data"]
    tt = rep["text_tower"]
    assert tt["precision"] == "fp32" and tt["quantized_nodes"] == 0 and tt["float_nodes"] == tt["nodes"] > 50
    # the per-layer search ran on images with captions, and offers no float text-tower group to keep in float
    search, ranked = rep["guard"]["sensitivity_search"], rep["guard"]["sensitivity"]
    assert ranked and search["groups_already_float"] > 0 and search["groups"] == len(ranked)
    assert not [r["name"] for r in ranked if r["name"].startswith(TEXT_SCOPES)]
    feeds = _feeds(out)
    f32 = _text_features(str(out / "model.onnx"), feeds)
    for art in res.manifest.artifacts_of("onnx-int8-qdq"):
        assert art.attrs["text_tower"]["precision"] == "fp32" and art.attrs["text_tower"]["quantized_nodes"] == 0
        m = onnx.load(str(out / art.file))
        text_nodes = _scoped_text_nodes(m)
        assert not text_nodes & _readers_of_dq(m), art.file  # no Q/DQ before any text-tower node
        # ... nor after one, except the head's own input Q/DQ (the text features it concatenates)
        prod = producers(m.graph)
        qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and prod.get(n.input[0]) is not None
              and prod[n.input[0]].name in text_nodes]  # fmt: skip
        assert not qs, [q.name for q in qs]
        assert _readers_of_dq(m) & {"/visual/conv1/Conv", "/head/head.0/Gemm"}, art.file  # the rest is INT8
        # the text features the head reads are FP32's, bit for bit
        np.testing.assert_array_equal(_text_features(m, feeds), f32)
    # the TensorRT cache leaves the float text tower out, but keeps the text features the INT8 head reads
    tower_outputs = {t for n in onnx.load(str(out / "model.onnx")).graph.node if n.name.startswith(TEXT_SCOPES)
                     for t in n.output} & set(rep["ranges"])  # fmt: skip
    omitted = set(rep["trt_cache"]["omitted_float_tensors"])
    assert tower_outputs and tower_outputs <= omitted and "/Cast_2_output_0" not in omitted
    assert rep["trt_cache"]["tensors"] == len(rep["ranges"]) - len(omitted)

    from fakedet.runtime.detector import Detector

    images = [heldout.parent / f"{c}_{i}.png" for c in (0, 1) for i in range(2)]
    caps = ["a dog", "café ☕", "art, 8k", "a castle"]
    with Detector.open(out, precision="int8") as det, Detector.open(out, precision="fp32") as ref:
        assert det.choice.artifact.file == "model.int8-cpu.onnx"
        p8 = det.predict(images, captions=caps)
        p32 = ref.predict(images, captions=caps)
        assert all(p.ok for p in p8 + p32)
        assert max(abs(a.score - b.score) for a, b in zip(p8, p32)) < 0.2
        assert not det.predict(images[:1])[0].ok  # a caption-aware package still refuses a missing caption
        # the guard judged image+caption scores: its FP32 AUC is the held-out set's, each image with its caption
        rows = list(csv.DictReader(open(heldout, encoding="utf-8")))
        scores = np.array([p.score for p in ref.predict([heldout.parent / r["path"] for r in rows],
                                                        captions=[r["caption"] for r in rows])])  # fmt: skip
        labels = np.array([int(r["label"]) for r in rows])
        assert rep["guard"]["final"]["fp32"]["auc"] == pytest.approx(_auc(labels, scores), abs=1e-9)
    from fakedet.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    with OnnxRuntimeBackend(out / "model.int8.onnx", "ort-cpu") as be:  # the TensorRT flavour, two inputs
        assert np.isfinite(be.infer(feeds)).all()


def test_int8_text_tower_is_quantized(caption_package, data, tmp_path):
    pkg, _ = caption_package
    calib, heldout = data
    res = calibrate(pkg, _opts(calib, heldout, text_tower="int8"), out=tmp_path / "cal8.fdet")
    tt = res.report["text_tower"]
    assert tt["precision"] == "int8" and tt["quantized_nodes"] > 5 and "int8" in tt["why"]
    m = onnx.load(str(tmp_path / "cal8.fdet" / "model.int8.onnx"))
    text_nodes = _scoped_text_nodes(m)
    assert {"/transformer/resblocks.0/mlp/c_fc/MatMul", "/transformer/resblocks.0/attn/MatMul"} <= _readers_of_dq(m)
    assert tt["quantized_nodes"] >= len(text_nodes & _readers_of_dq(m)) > 5
    feeds = _feeds(tmp_path / "cal8.fdet")
    f32 = _text_features(str(tmp_path / "cal8.fdet" / "model.onnx"), feeds)
    f8 = _text_features(m, feeds)
    # quantized, and close (the attention mask's -inf stays float: quantized, it would be NaN)
    assert not np.array_equal(f8, f32) and np.linalg.norm(f8 - f32) < 0.1 * np.linalg.norm(f32)
    assert "/transformer/resblocks.0/attn/Add_2" in res.report["quantization"]["float_nodes"]
    # the other choice is another calibration of the same ranges
    again = calibrate(tmp_path / "cal8.fdet", _opts(calib, heldout))
    assert not again.reused and again.report["ranges_reused"] and again.key != res.key
    assert again.report["text_tower"]["quantized_nodes"] == 0


def test_a_set_without_captions_is_refused_by_name(caption_package, data, tmp_path):
    pkg, _ = caption_package
    calib, heldout = data
    bare = write_set(tmp_path / "nocap", 3, seed=3, caption_column=False)
    with pytest.raises(DataError, match=r"nocap[/\\]set\.csv: the package reads each image with its caption.*"
                                         r"without a 'caption' column"):  # fmt: skip
        calibrate(pkg, _opts(bare, heldout), out=tmp_path / "x.fdet")
    with pytest.raises(DataError, match=r"nocap: .*calibration set is a folder of images"):
        calibrate(pkg, _opts(bare.parent, heldout), out=tmp_path / "x.fdet")
    with pytest.raises(DataError, match=r"nocap[/\\]set\.csv: .*evaluation set"):
        calibrate(pkg, _opts(calib, bare), out=tmp_path / "x.fdet")
    assert not (tmp_path / "x.fdet").exists()
    code = main(["calibrate", str(pkg), "--data", str(bare), "-o", str(tmp_path / "x.fdet"), "-q"])
    assert code == 2


def test_captions_in_the_set(caption_package, tmp_path):
    pkg, _ = caption_package
    p = ModelPackage.open(pkg)
    cap = CaptionInput.of(p)
    spec = p.manifest.input
    # a blank caption the package refuses: that row is skipped and counted, the rest are read
    blank = write_set(tmp_path / "blank", 3, seed=4, blank_first=True)
    s = load_set(blank, spec, None, 0, False, progress=False, captions=cap)
    assert len(s) == 5 and len(s.skipped) == 1 and "no caption" in s.skipped[0]
    b = next(s.batches(8))
    assert set(b) == {"image", "text"} and b["image"].shape == (5, 3, 16, 16) and b["text"].shape == (5, 77)
    want = cap.tokens([x.caption for x in s.samples])
    np.testing.assert_array_equal(b["text"], want)
    # captions are data: another caption, another digest
    other = tmp_path / "other"
    shutil.copytree(blank.parent, other)
    text = (other / "set.csv").read_text(encoding="utf-8").replace("#1", "#one")
    (other / "set.csv").write_text(text, encoding="utf-8")
    assert load_set(other / "set.csv", spec, None, 0, False, progress=False, captions=cap).digest != s.digest
    # a package that scores empty captions calibrates on an uncaptioned set, and says so
    cap.spec.empty_caption = "score"
    bare = write_set(tmp_path / "nocap", 2, seed=5, caption_column=False)
    s = load_set(bare.parent, spec, None, 0, False, progress=False, captions=cap)
    assert s.summary()["captions"].startswith("none (a folder of images): empty captions")
    np.testing.assert_array_equal(next(s.batches(8))["text"], cap.tokens([""] * len(s)))
    # an image-only set stays a plain array batch
    assert isinstance(next(load_set(bare.parent, spec, None, 0, False, progress=False).batches(8)), np.ndarray)
