"""The GPU benchmark's target arithmetic and report, from hand-made `fakedet bench`
reports (no GPU, no TensorRT: only the pure helpers of benchmarks/bench_gpu.py)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

from fakedet.runtime.bench import validate_report

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bg():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def spread(v: float) -> dict:
    return {"median": v, "iqr": 0.0, "min": v, "max": v, "repeats": [v, v, v]}


def row(backend: str, precision: str, batch: int, img_s: float, device: str) -> dict:
    ms = 1000.0 * batch / img_s
    return {"backend": backend, "precision": precision, "batch": batch, "artifact": "x", "device": device,
            "reason": "test", "iterations": 30, "throughput_img_s": spread(img_s),
            "latency_ms": {"p50": ms, "p90": ms, "p99": ms, "max": ms, "mean": ms, "count": 30},
            "latency_p50_ms_repeats": spread(ms),
            "split_ms": {"preprocess": None, "h2d": 0.1, "compute": ms - 0.2, "d2h": 0.1, "end_to_end": ms},
            "notes": []}


def trtexec_entry(precision: str, batch: int, fakedet: float, trtexec: float | None, error=None) -> dict:
    return {"precision": precision, "batch": batch, "plan": f"plans/trt-10.3.0_sm90_{precision}.plan",
            "command": ["trtexec", "--loadEngine=p"], "trtexec_img_s": trtexec, "fakedet_img_s": fakedet,
            "ratio": None if not trtexec else fakedet / trtexec, "gpu_compute_ms": None, "error": error}


TORCH_CUDA = "torch eager (cuda, fp32)"
TRT = "tensorrt 10.3.0 via cuda-python (1 context(s), batch <= 32)"


def make_report() -> dict:
    """tensorrt fp16 at 0.97x and 0.90x trtexec; 3x and 6x torch fp32; tensorrt fp32 batch 1
    failed, fp32 batch 8 ran but its trtexec failed."""
    return {
        "schema": "fakedet.bench", "schema_version": 1, "created": "2026-11-23T00:00:00+0000",
        "package": {"name": "resnet50-gpu", "source": "/w/resnet50-gpu.fdet"},
        "machine": {"hostname": "h", "platform": "linux", "cpu_count": 16, "python": "3.12"},
        "settings": {"backends": ["tensorrt", "ort-trt", "ort-cuda", "torch"], "precisions": ["fp32", "fp16"],
                     "batches": [1, 8], "warmup_s": 2.0, "duration_s": 3.0, "repeats": 3, "threads": None,
                     "e2e_dir": None, "checkpoint": None, "cuda_graph": False, "trtexec": "auto"},
        "results": [
            row("tensorrt", "fp16", 1, 300.0, TRT),
            row("tensorrt", "fp16", 8, 3000.0, TRT),
            row("tensorrt", "fp32", 8, 1200.0, TRT),
            row("torch", "fp32", 1, 100.0, TORCH_CUDA),
            row("torch", "fp32", 8, 500.0, TORCH_CUDA),
        ],
        "skipped": [{"backend": "tensorrt", "precision": "fp32", "batch": 1, "reason": "RuntimeError: boom at batch 1"},
                    {"backend": "ort-trt", "precision": "fp16", "batch": None,
                     "reason": "ort-trt: ONNX Runtime here has no TensorrtExecutionProvider"}],
        "notes": [],
        "trtexec": [trtexec_entry("fp16", 1, 300.0, 300.0 / 0.97), trtexec_entry("fp16", 8, 3000.0, 3000.0 / 0.90),
                    trtexec_entry("fp32", 8, 1200.0, None, error="trtexec exited with code 1")],
    }


def pick(rows, target, precision, batch, variant="tensorrt"):
    found = [t for t in rows if t["target"] == target and t["precision"] == precision and t["batch"] == batch
             and t["variant"] == variant]
    assert len(found) == 1, found
    return found[0]


def test_fixture_is_a_valid_bench_report():
    validate_report(make_report())


def test_trtexec_ratios_and_status(bg):
    rows = bg.targets(make_report())
    near = pick(rows, "trtexec", "fp16", 1)
    assert near["value"] == pytest.approx(0.97) and near["status"] == "met"
    far = pick(rows, "trtexec", "fp16", 8)
    assert far["value"] == pytest.approx(0.90) and far["status"] == "not met"
    failed_row = pick(rows, "trtexec", "fp32", 1)  # no fakedet row: the bench's reason
    assert failed_row["status"] == "not measured" and failed_row["reason"] == "RuntimeError: boom at batch 1"
    failed_trtexec = pick(rows, "trtexec", "fp32", 8)  # a row, but trtexec failed on it
    assert failed_trtexec["status"] == "not measured" and failed_trtexec["reason"] == "trtexec exited with code 1"


def test_parity_threshold_boundary(bg):
    report = make_report()
    report["trtexec"][0]["trtexec_img_s"] = 300.0 / 0.95
    assert pick(bg.targets(report), "trtexec", "fp16", 1)["status"] == "met"
    report["trtexec"][0]["trtexec_img_s"] = 300.0 / 0.949
    assert pick(bg.targets(report), "trtexec", "fp16", 1)["status"] == "not met"


def test_fp16_vs_torch_ratios_and_status(bg):
    rows = bg.targets(make_report())
    b1, b8 = pick(rows, "fp16-vs-torch", "fp16", 1), pick(rows, "fp16-vs-torch", "fp16", 8)
    assert b1["value"] == pytest.approx(300.0 / 100.0) and b1["status"] == "not met"
    assert b8["value"] == pytest.approx(3000.0 / 500.0) and b8["status"] == "met"


def test_missing_torch_row_says_why(bg):
    report = make_report()
    report["results"] = [r for r in report["results"] if r["backend"] != "torch"]
    why = "torch 2.9.1+cpu: torch.cuda.is_available() is False (built for CUDA none (CPU-only build))"
    report["skipped"].append({"backend": "torch", "precision": "fp32", "batch": None, "reason": why})
    validate_report(report)
    rows = [t for t in bg.targets(report) if t["target"] == "fp16-vs-torch"]
    assert [t["status"] for t in rows] == ["not measured", "not measured"]
    md = bg.render_markdown("box", report, {"notes": []}, [], bg.targets(report), "bench_gpu.py")
    assert f"not measured: torch fp32: {why}" in md
    assert "6.00x" not in md  # the ratio the torch row would have given is gone


def test_torch_row_on_the_cpu_does_not_count(bg):
    report = make_report()
    for r in report["results"]:
        if r["backend"] == "torch":
            r["device"] = "torch eager (cpu, fp32)"
    b8 = pick(bg.targets(report), "fp16-vs-torch", "fp16", 8)
    assert b8["status"] == "not measured" and "not on the GPU" in b8["reason"]
    assert [bg.is_gpu_row(r) for r in report["results"]] == [True, True, True, False, False]


def test_precision_that_never_ran_gets_one_line(bg):
    report = make_report()
    report["settings"]["precisions"].append("int8")
    report["skipped"].append({"backend": "tensorrt", "precision": "int8", "batch": None,
                              "reason": "fakedet build: TensorRT is not installed here"})
    int8 = pick(bg.targets(report), "trtexec", "int8", None)
    assert int8["status"] == "not measured" and int8["reason"] == "fakedet build: TensorRT is not installed here"


def test_cuda_graph_pass_is_a_second_variant(bg):
    report = make_report()
    report["results"].append(row(bg.GRAPH, "fp16", 8, 3100.0, TRT + ", CUDA graphs"))
    report["cuda_graph_pass"] = {"settings": {}, "trtexec": [trtexec_entry("fp16", 8, 3100.0, 3100.0 / 0.99)]}
    rows = bg.targets(report)
    assert pick(rows, "trtexec", "fp16", 8, bg.GRAPH)["value"] == pytest.approx(0.99)
    assert pick(rows, "fp16-vs-torch", "fp16", 8, bg.GRAPH)["value"] == pytest.approx(3100.0 / 500.0)
    no_row = pick(rows, "fp16-vs-torch", "fp16", 1, bg.GRAPH)
    assert no_row["status"] == "not measured" and no_row["reason"].startswith(f"{bg.GRAPH} fp16: no row")
    without = copy.deepcopy(report)
    del without["cuda_graph_pass"]
    without["results"] = [r for r in without["results"] if r["backend"] != bg.GRAPH]
    assert all(t["variant"] == "tensorrt" for t in bg.targets(without))


def test_markdown_targets_table(bg):
    report = make_report()
    builds = [{"precision": "fp16", "status": "built", "plan": "plans/trt-10.3.0_sm90_fp16.plan", "seconds": 61.0,
               "reason": None},
              {"precision": "int8", "status": "failed", "plan": None, "seconds": 1.0, "reason": "no | pipes here"}]
    md = bg.render_markdown("h100", report, {"gpu": "NVIDIA H100", "tensorrt": "10.3.0", "notes": []}, builds,
                            bg.targets(report), "bench_gpu.py --machine h100")
    lines = md.splitlines()

    def line_with(*parts):
        found = [ln for ln in lines if all(p in ln for p in parts)]
        assert len(found) == 1, (parts, found)
        return found[0]

    assert line_with("| tensorrt | fp16 | 1 |", "trtexec").endswith("| 0.970 | met |")
    assert line_with("| tensorrt | fp16 | 8 |", "trtexec").endswith("| 0.900 | **not met** |")
    assert line_with("| tensorrt | fp16 | 1 |", "PyTorch").endswith("| 3.00x | **not met** |")
    assert line_with("| tensorrt | fp16 | 8 |", "PyTorch").endswith("| 6.00x | met |")
    assert "no \\| pipes here" in md  # a reason cannot break the table
    assert "# fakedet GPU benchmark: h100" in md and "NVIDIA H100" in md


def test_nothing_measured_line_names_each_backend(bg):
    report = make_report()
    report["results"], report["trtexec"] = [], []
    line = bg.nothing_measured_line(report)
    assert "\n" not in line
    assert "tensorrt: RuntimeError: boom" in line and "ort-trt: ort-trt: ONNX Runtime here has no" in line
