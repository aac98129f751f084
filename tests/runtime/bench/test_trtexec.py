"""trtexec's performance summary, read and compared with fakedet's TensorRT rows.

The parsing and the comparison are pure; the summaries below follow trtexec's output
format (TensorRT 10: timestamps, p90/p95/p99; TensorRT 8.x: bare `[I]`, p99 only).
A real trtexec run on a real plan is in the gpu-marked test at the end."""

from __future__ import annotations

import shutil

import pytest
from test_build_gpu import whole_image_package  # noqa: F401  (the gpu test's tiny whole-image package)

from fakedet.runtime.bench import trtexec_command as tx
from fakedet.runtime.bench import BenchSettings, format_table, validate_report
from fakedet.runtime.bench.trtexec import compare

TRT10 = """\
[11/23/2026-10:00:01] [I] Average on 10 runs - GPU latency: 2.5 ms - Host latency: 3.0 ms (enqueue 0.2 ms)
[11/23/2026-10:00:01] [I]
[11/23/2026-10:00:01] [I] === Performance summary ===
[11/23/2026-10:00:01] [I] Throughput: 402.5 qps
[11/23/2026-10:00:01] [I] Latency: min = 2.75 ms, max = 3.5 ms, mean = 2.9 ms, median = 2.875 ms, percentile(90%) = 3.0 ms, percentile(95%) = 3.125 ms, percentile(99%) = 3.25 ms
[11/23/2026-10:00:01] [I] Enqueue Time: min = 0.125 ms, max = 0.5 ms, mean = 0.2 ms, median = 0.1875 ms, percentile(90%) = 0.25 ms, percentile(95%) = 0.3 ms, percentile(99%) = 0.4 ms
[11/23/2026-10:00:01] [I] H2D Latency: min = 0.25 ms, max = 0.375 ms, mean = 0.3 ms, median = 0.3125 ms, percentile(90%) = 0.34 ms, percentile(95%) = 0.35 ms, percentile(99%) = 0.37 ms
[11/23/2026-10:00:01] [I] GPU Compute Time: min = 2.375 ms, max = 3.0 ms, mean = 2.5 ms, median = 2.4375 ms, percentile(90%) = 2.6 ms, percentile(95%) = 2.7 ms, percentile(99%) = 2.9 ms
[11/23/2026-10:00:01] [I] D2H Latency: min = 0.0078125 ms, max = 0.02 ms, mean = 0.01 ms, median = 0.009 ms, percentile(90%) = 0.012 ms, percentile(95%) = 0.014 ms, percentile(99%) = 0.018 ms
[11/23/2026-10:00:01] [I] Total Host Walltime: 3.00621 s
[11/23/2026-10:00:01] [I] Total GPU Compute Time: 3.02 s
[11/23/2026-10:00:01] [I] Explanations of the performance metrics are printed in the verbose logs.
[11/23/2026-10:00:01] [I]
&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=x.plan --shapes=input:8x3x224x224
"""

TRT8 = """\
[I] === Performance summary ===
[I] Throughput: 155.5 qps
[I] Latency: min = 6.25 ms, max = 6.75 ms, mean = 6.5 ms, median = 6.4375 ms, percentile(99%) = 6.625 ms
[I] End-to-End Host Latency: min = 6.25 ms, max = 6.75 ms, mean = 6.5 ms, median = 6.4375 ms, percentile(99%) = 6.625 ms
[I] GPU Compute Time: min = 6.0 ms, max = 6.5 ms, mean = 6.25 ms, median = 6.1875 ms, percentile(99%) = 6.4375 ms
[I] Total Host Walltime: 3.01 s
[I] Total GPU Compute Time: 2.99 s
"""


def test_reads_a_tensorrt_10_summary():
    s = tx.parse_summary(TRT10)
    assert s["throughput_qps"] == 402.5
    gpu = s["sections"]["GPU Compute Time"]
    assert gpu == {"min": 2.375, "max": 3.0, "mean": 2.5, "median": 2.4375, "p90": 2.6, "p95": 2.7, "p99": 2.9}
    # "Total GPU Compute Time" is a different line: it must not overwrite the section
    assert s["gpu_compute_total_s"] == 3.02 and s["host_walltime_s"] == 3.00621
    assert set(s["sections"]) == {"Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency"}
    assert s["sections"]["D2H Latency"]["min"] == 0.0078125
    assert tx.images_per_second(s, 8) == 402.5 * 8


def test_reads_a_tensorrt_8_summary_and_ignores_lines_before_it():
    s = tx.parse_summary("[I] Average on 10 runs - GPU latency: 99 ms\n" + TRT8)
    assert s["throughput_qps"] == 155.5
    assert s["sections"]["End-to-End Host Latency"]["p99"] == 6.625
    assert "p90" not in s["sections"]["Latency"]
    assert s["sections"]["GPU Compute Time"]["median"] == 6.1875


@pytest.mark.parametrize("text, match", [
    ("[I] Throughput: 10 qps\n", "no '=== Performance summary ==='"),  # the summary header is what proves a timing run
    ("[I] === Performance summary ===\n[I] Latency: min = 1 ms\n", "no 'Throughput"),
    ("", "no '=== Performance summary ==='"),
])
def test_a_run_without_a_summary_is_an_error(text, match):
    with pytest.raises(tx.TrtexecError, match=match):
        tx.parse_summary(text)


def test_command_matches_the_plan_and_shape():
    cmd = tx.command("/usr/src/tensorrt/bin/trtexec", "p/x.plan", "image", (8, 3, 224, 224), 2.0, 15.0)
    assert cmd[:3] == ["/usr/src/tensorrt/bin/trtexec", "--loadEngine=p/x.plan", "--shapes=image:8x3x224x224"]
    assert "--warmUp=2000" in cmd and "--duration=15" in cmd and "--useCudaGraph" not in cmd
    assert "--useCudaGraph" in tx.command("t", "x.plan", "image", (1, 3, 8, 8), 0, 1, cuda_graph=True)
    assert tx.shape_arg("in:0", (1, 3)) == "'in:0':1x3"  # names with ':' are quoted, as trtexec documents


def test_find_trtexec_with_a_missing_explicit_path(tmp_path):
    assert tx.find_trtexec(str(tmp_path / "nope")) is None
    exe = tmp_path / "trtexec"
    exe.write_text("")
    assert tx.find_trtexec(str(exe)) == str(exe)


def test_running_a_missing_trtexec_is_an_error(tmp_path):
    with pytest.raises(tx.TrtexecError, match="not found"):
        tx.run([str(tmp_path / "trtexec"), "--loadEngine=x"], timeout_s=5)


# ---- the comparison ---------------------------------------------------------------
def _report_with_a_tensorrt_row(tiny_package):
    from fakedet.package import ModelPackage

    pkg = ModelPackage.open(tiny_package[0])
    plan = pkg.manifest.artifacts[0].file  # any artifact file stands in for the plan's name here
    row = {"backend": "tensorrt", "precision": "fp16", "batch": 8, "artifact": plan,
           "throughput_img_s": {"median": 3000.0}}
    other = {"backend": "ort-cpu", "precision": "fp32", "batch": 8, "artifact": plan,
             "throughput_img_s": {"median": 20.0}}
    return pkg, {"results": [row, other], "skipped": []}


def test_ratio_is_fakedet_over_trtexec_on_the_same_plan(tiny_package):
    pkg, report = _report_with_a_tensorrt_row(tiny_package)
    settings = BenchSettings(trtexec=shutil.which("true") or "/bin/true", warmup_s=1, duration_s=2, repeats=3)
    seen = []

    def from_text(cmd, timeout_s):  # the summary trtexec would print; the arithmetic is what is tested
        seen.append(cmd)
        return tx.parse_summary(TRT10)

    (entry,) = compare(pkg, report, settings, runner=from_text)  # only the tensorrt row is compared
    assert entry["trtexec_img_s"] == pytest.approx(402.5 * 8)
    assert entry["ratio"] == pytest.approx(3000.0 / (402.5 * 8))
    assert entry["gpu_compute_ms"]["median"] == 2.4375 and entry["error"] is None
    assert "--shapes=input:8x3x16x16" in seen[0] and "--duration=6" in seen[0]  # the package's input, 3 repeats x 2 s
    validate_report(entry, {"type": "object", **_entry_schema()})


def test_missing_trtexec_gives_a_reason_not_a_crash(tiny_package, tmp_path):
    pkg, report = _report_with_a_tensorrt_row(tiny_package)
    (entry,) = compare(pkg, report, BenchSettings(trtexec=str(tmp_path / "missing-trtexec")))
    assert entry["trtexec_img_s"] is None and entry["ratio"] is None and "trtexec not found" in entry["error"]
    report.update(trtexec=[entry])
    report["results"] = []
    assert "not measured: trtexec not found" in format_table(report)


def _entry_schema():
    from fakedet.runtime.bench.trtexec import TRTEXEC_ENTRY_SCHEMA

    return TRTEXEC_ENTRY_SCHEMA


@pytest.mark.gpu
def test_bench_beside_real_trtexec_on_a_built_plan(whole_image_package, tmp_path):
    """Where TensorRT, trtexec and a GPU exist: build a plan, bench it with --trtexec."""
    import json

    from fakedet.cli import main

    if tx.find_trtexec() is None:
        pytest.skip("trtexec is not on PATH or in /usr/src/tensorrt/bin")
    built = tmp_path / "b.fdet"
    assert main(["build", str(whole_image_package), "--precision", "fp16", "--batch", "1:4:4",
                 "--image-size", "64:224:256", "-o", str(built)]) == 0
    out = tmp_path / "r.json"
    assert main(["bench", str(built), "--backend", "tensorrt", "--precision", "fp16", "--batch", "4",
                 "--warmup", "0.5", "--duration", "1", "--repeats", "1", "--trtexec", "--json", str(out)]) == 0
    (entry,) = json.loads(out.read_text())["trtexec"]
    assert entry["error"] is None, entry["error"]
    assert entry["trtexec_img_s"] > 0 and 0.1 < entry["ratio"] < 10
