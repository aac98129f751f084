"""The bench report: schema, CSV, plot, skipped combinations, --e2e."""

import copy
import csv
import io
import json

import pytest

from fakedet.package import ModelPackage
from fakedet.runtime.bench import (
    REPORT_SCHEMA_VERSION, STAGES, BenchSettings, format_table, run_bench, to_csv, validate_report, write_json,
)
from package_helpers import add_artifacts

FAST = dict(warmup_s=0.0, duration_s=0.02, repeats=2, threads=1)


@pytest.fixture(scope="module")
def report_and_pkg(tmp_path_factory):
    from conftest import build_tiny_onnx, write_spec
    from fakedet.cli import main

    tmp = tmp_path_factory.mktemp("bench")
    build_tiny_onnx(tmp / "tiny.onnx")
    spec = write_spec(tmp / "spec.json")
    pkg_dir = tmp / "tiny.fdet"
    assert main(["package", str(tmp / "tiny.onnx"), "--input-spec", str(spec), "-o", str(pkg_dir)]) == 0
    add_artifacts(pkg_dir, int8=True, tmp=tmp)
    settings = BenchSettings(backends=["ort-cpu", "ort-cuda", "nope"], precisions=["fp32", "fp16", "int8"],
                             batches=[1, 4], **FAST)
    with ModelPackage.open(pkg_dir) as pkg:
        report = run_bench(pkg, settings)
    return report, pkg_dir, tmp


def test_rows_and_skips(report_and_pkg):
    report, _, _ = report_and_pkg
    got = {(r["backend"], r["precision"], r["batch"]) for r in report["results"]}
    assert got == {("ort-cpu", p, b) for p in ("fp32", "int8") for b in (1, 4)}
    reasons = {(s["backend"], s["precision"]): s["reason"] for s in report["skipped"]}
    assert "no fp16 ONNX" in reasons[("ort-cpu", "fp16")] and "fakedet" in reasons[("ort-cpu", "fp16")]
    assert "CUDAExecutionProvider" in reasons[("ort-cuda", "fp32")]
    assert "unknown backend" in reasons[("nope", "fp32")]
    for r in report["results"]:
        sp = r["split_ms"]
        assert sp["h2d"] is None and sp["d2h"] is None and sp["preprocess"] is None  # CPU: not separable
        assert sp["compute"] > 0 and sp["end_to_end"] >= sp["compute"]
        assert r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
        t = r["throughput_img_s"]
        assert t["min"] <= t["median"] <= t["max"] and len(t["repeats"]) == 2
        assert any("not separable" in n for n in r["notes"])


def test_json_schema(report_and_pkg, tmp_path):
    report, _, _ = report_and_pkg
    assert report["schema"] == "fakedet.bench" and report["schema_version"] == REPORT_SCHEMA_VERSION
    out = tmp_path / "b.json"
    write_json(report, out)
    loaded = json.loads(out.read_text())
    validate_report(loaded)  # round-trips through JSON and still validates
    assert set(loaded["results"][0]["split_ms"]) == set(STAGES)
    broken = copy.deepcopy(loaded)
    del broken["results"][0]["latency_ms"]["p99"]
    with pytest.raises(ValueError, match=r"results\[0\]\.latency_ms: missing 'p99'"):
        validate_report(broken)
    broken = copy.deepcopy(loaded)
    broken["results"][0]["split_ms"]["h2d"] = "n/a"  # a fake number is not allowed: null or a number
    with pytest.raises(ValueError, match="h2d"):
        validate_report(broken)
    broken = copy.deepcopy(loaded)
    broken["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version"):
        validate_report(broken)


def test_csv_and_table(report_and_pkg):
    report, _, _ = report_and_pkg
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(rows) == len(report["results"])
    first = report["results"][0]
    assert float(rows[0]["p99_ms"]) == pytest.approx(first["latency_ms"]["p99"], rel=1e-3, abs=1e-3)
    assert rows[0]["h2d_ms"] == "" and rows[0]["compute_ms"] != ""
    table = format_table(report)
    assert "img/s" in table and "skipped ort-cuda fp32" in table and "ort-cpu" in table


def test_plot_written(report_and_pkg, tmp_path):
    from fakedet.runtime.bench.plot import write_plot

    report, _, _ = report_and_pkg
    out = write_plot(report, tmp_path / "plot.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    from PIL import Image

    with Image.open(out) as im:
        assert im.width > 600 and im.height > 300


def test_e2e_decodes_real_images_and_skips_bad_ones(report_and_pkg, tmp_path):
    from conftest import save_image

    _, pkg_dir, _ = report_and_pkg
    for i in range(3):
        save_image(tmp_path / "imgs" / f"{i}.png", size=(24, 20), seed=i)
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"not an image")
    settings = BenchSettings(backends=["ort-cpu"], precisions=["fp32"], batches=[2],
                             e2e_dir=str(tmp_path / "imgs"), **FAST)
    with ModelPackage.open(pkg_dir) as pkg:
        report = run_bench(pkg, settings)
    validate_report(report)
    (row,) = report["results"]
    assert row["split_ms"]["preprocess"] > 0
    assert row["split_ms"]["end_to_end"] >= row["split_ms"]["preprocess"]
    assert any("failed to decode" in n for n in report["notes"])
