"""`fakedet bench` on a caption-aware package (issue 15): token ids of a synthetic caption
of a stated length beside every image, on ONNX Runtime and on PyTorch eager from the
checkpoint; the native TensorRT paths refused; the length in the report."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("ftfy")

from caption_helpers import caption_package, micro_clip  # noqa: E402,F401  (fixtures)
from conftest import save_image  # noqa: E402

from fakedet.cli import main  # noqa: E402
from fakedet.errors import FakedetError  # noqa: E402
from fakedet.package import ModelPackage  # noqa: E402
from fakedet.runtime.bench import BenchSettings, format_table, run_bench, to_csv, validate_report  # noqa: E402
from fakedet.runtime.bench.inputs import DEFAULT_CAPTION_TOKENS, BenchInputs, synthetic_caption  # noqa: E402

FAST = dict(warmup_s=0.0, duration_s=0.02, repeats=2, threads=1)


@pytest.fixture(scope="module")
def caption_input(caption_package):  # noqa: F811
    from fakedet.runtime.captions import CaptionInput

    with ModelPackage.open(caption_package[0]) as pkg:
        yield CaptionInput.of(pkg)


def eot_position(row: np.ndarray, eot_id: int) -> int:
    return int(np.flatnonzero(row == eot_id)[0])


@pytest.mark.parametrize("n", [1, 7, 20, 75])
def test_the_synthetic_caption_has_exactly_the_stated_number_of_tokens(caption_input, n):
    tok = caption_input.tokenizer
    text = synthetic_caption(tok, n)
    assert len(tok.token_ids([text])[0]) == n
    row = caption_input.tokens([text])[0]
    assert row[0] == tok.sot_id and eot_position(row, tok.eot_id) == n + 1  # start, n tokens, end, padding
    assert not row[n + 2:].any()


def test_bench_feeds_captions_on_ort_and_torch_and_states_the_length(caption_package):  # noqa: F811
    pkg_path, ckpt = caption_package
    settings = BenchSettings(backends=["ort-cpu", "torch", "tensorrt"], precisions=["fp32"], batches=[1, 3],
                             checkpoint=str(ckpt), trtexec="auto", **FAST)
    with ModelPackage.open(pkg_path) as pkg:
        report = run_bench(pkg, settings)
    validate_report(report)
    assert report["settings"]["caption_tokens"] == DEFAULT_CAPTION_TOKENS  # the default, resolved and stated
    assert {(r["backend"], r["batch"]) for r in report["results"]} == {(b, n) for b in ("ort-cpu", "torch")
                                                                        for n in (1, 3)}
    assert any(f"synthetic caption of {DEFAULT_CAPTION_TOKENS} tokens" in n for n in report["notes"])
    (trt,) = [s for s in report["skipped"] if s["backend"] == "tensorrt"]
    assert "one-input" in trt["reason"]
    assert any(n.startswith("--trtexec: not run: a caption-aware package") for n in report["notes"])
    assert "trtexec" not in report
    assert f"caption of {DEFAULT_CAPTION_TOKENS} tokens" in format_table(report)
    assert to_csv(report).splitlines()[1].endswith(f",{DEFAULT_CAPTION_TOKENS}")
    # A report of the same schema version written before captions existed still reads.
    old = copy.deepcopy(report)
    del old["settings"]["caption_tokens"]
    validate_report(old)


def test_what_bench_feeds_scores_as_the_detector_scores_that_caption(caption_package):  # noqa: F811
    from fakedet.runtime import Detector

    with ModelPackage.open(caption_package[0]) as pkg:
        inputs = BenchInputs(pkg, BenchSettings(caption_tokens=12))
    feed = inputs.synthetic(4)
    assert set(feed) == {"image", "text"} and feed["text"].shape == (4, 77) and feed["text"].dtype == np.int32
    with Detector.open(caption_package[0], backend="ort-cpu", threads=1) as det:
        got = det.backend.infer(feed)
        want = det.predict_tensors(feed["image"], captions=[inputs.caption_feed.text] * 4)
    np.testing.assert_allclose(1 / (1 + np.exp(-got[:, 0])), want, atol=1e-6)


def test_cli_caption_tokens_with_images_and_its_limits(caption_package, tmp_path, capsys):  # noqa: F811
    pkg_path, _ = caption_package
    for i in range(3):
        save_image(tmp_path / "imgs" / f"{i}.png", size=(20, 20), seed=i)
    out = tmp_path / "b.json"
    rc = main(["bench", str(pkg_path), "--backend", "ort-cpu", "--precision", "fp32", "--batch", "2",
               "--images", str(tmp_path / "imgs"), "--caption-tokens", "40", "--warmup", "0", "--duration", "0.02",
               "--repeats", "2", "-q", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["settings"]["caption_tokens"] == 40
    (row,) = report["results"]
    assert row["split_ms"]["preprocess"] > 0  # decoding and tokenizing, every iteration
    capsys.readouterr()
    assert main(["bench", str(pkg_path), "--backend", "ort-cpu", "--precision", "fp32", "--caption-tokens", "76",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert "--caption-tokens 76" in err and "1 to 75 tokens" in err
    with ModelPackage.open(pkg_path) as pkg, pytest.raises(FakedetError, match="1 to 75"):
        BenchInputs(pkg, BenchSettings(caption_tokens=200))


def test_an_image_only_package_ignores_caption_tokens(tiny_package):
    with ModelPackage.open(tiny_package[0]) as pkg:
        report = run_bench(pkg, BenchSettings(backends=["ort-cpu"], precisions=["fp32"], batches=[1],
                                              caption_tokens=30, **FAST))
    validate_report(report)
    assert report["settings"]["caption_tokens"] is None and report["results"]
    assert any("image-only; no captions were fed" in n for n in report["notes"])
