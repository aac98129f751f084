"""Latency and throughput per backend, precision and batch size.

For every combination: warm up for `warmup_s`, then `repeats` timed runs of
`duration_s` each. Per iteration the stages trtexec users know are timed:

  preprocess   host decoding + preprocessing (only with an images folder, `e2e_dir`)
  h2d          host-to-device copy      } None where the backend cannot separate them
  compute      inference on the device  } (ONNX Runtime on the CPU, PyTorch eager):
  d2h          device-to-host copy      } compute is then the whole call
  end_to_end   wall time of the iteration, everything included

Throughput (images/s) is reported as the median of the repeats with their IQR and
min/max; latency percentiles pool every timed iteration. Combinations that cannot
run are listed with the reason, never fatal to the run.

Report (JSON) schema, version REPORT_SCHEMA_VERSION: see REPORT_SCHEMA below.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedet.atomic import atomic_write_text
from fakedet.errors import FakedetError, ImageError, first_line
from fakedet.package import ModelPackage

from . import bench_stats as st
from .bench_trtexec import TRTEXEC_ENTRY_SCHEMA
from .selection import BACKENDS, EXTRA_BACKENDS, PRECISIONS, choose, load_extra_backend, make_backend

REPORT_SCHEMA_VERSION = 1
STAGES = ("preprocess", "h2d", "compute", "d2h", "end_to_end")

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_SPREAD = {
    "type": "object",
    "required": ["median", "iqr", "min", "max", "repeats"],
    "properties": {"median": _NUM, "iqr": _NUM, "min": _NUM, "max": _NUM, "repeats": {"type": "array", "items": _NUM}},
}
REPORT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fakedet bench report",
    "type": "object",
    "required": ["schema", "schema_version", "created", "package", "machine", "settings", "results", "skipped"],
    "properties": {
        "schema": {"enum": ["fakedet.bench"]},
        "schema_version": {"enum": [REPORT_SCHEMA_VERSION]},
        "created": {"type": "string"},
        "package": {"type": "object", "required": ["name", "source"]},
        "machine": {"type": "object", "required": ["hostname", "platform", "cpu_count", "python"]},
        "settings": {
            "type": "object",
            "required": ["backends", "precisions", "batches", "warmup_s", "duration_s", "repeats", "threads", "e2e_dir"],
        },
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["backend", "precision", "batch", "artifact", "device", "reason", "iterations",
                             "throughput_img_s", "latency_ms", "latency_p50_ms_repeats", "split_ms", "notes"],
                "properties": {
                    "backend": {"type": "string"},
                    "precision": {"enum": list(PRECISIONS)},
                    "batch": {"type": "integer", "minimum": 1},
                    "artifact": {"type": "string"},
                    "device": {"type": "string"},
                    "reason": {"type": "string"},
                    "iterations": {"type": "integer", "minimum": 1},
                    "throughput_img_s": _SPREAD,
                    "latency_p50_ms_repeats": _SPREAD,
                    "latency_ms": {
                        "type": "object",
                        "required": ["p50", "p90", "p99", "max", "mean", "count"],
                        "properties": {"p50": _NUM, "p90": _NUM, "p99": _NUM, "max": _NUM, "mean": _NUM,
                                       "count": {"type": "integer", "minimum": 1}},
                    },
                    "split_ms": {
                        "type": "object",
                        "required": list(STAGES),
                        "properties": {s: _NUM_OR_NULL for s in STAGES},
                    },
                    "notes": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "trtexec": {"type": "array", "items": TRTEXEC_ENTRY_SCHEMA},  # only with --trtexec
        "skipped": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["backend", "precision", "batch", "reason"],
                "properties": {"backend": {"type": "string"}, "precision": {"type": "string"},
                               "batch": {"type": ["integer", "null"]}, "reason": {"type": "string"}},
            },
        },
    },
}


def validate_report(report, schema: dict = REPORT_SCHEMA, where: str = "report") -> None:
    """Check `report` against the (JSON-Schema subset) schema; ValueError names the first problem."""
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        ok = {
            "object": isinstance(report, dict),
            "array": isinstance(report, list),
            "string": isinstance(report, str),
            "integer": isinstance(report, int) and not isinstance(report, bool),
            "number": isinstance(report, (int, float)) and not isinstance(report, bool),
            "null": report is None,
        }
        if not any(ok[t] for t in allowed):
            raise ValueError(f"{where}: expected {' or '.join(allowed)}, got {type(report).__name__}")
    if "enum" in schema and report not in schema["enum"]:
        raise ValueError(f"{where}: {report!r} not one of {schema['enum']}")
    if "minimum" in schema and isinstance(report, (int, float)) and report < schema["minimum"]:
        raise ValueError(f"{where}: {report} < {schema['minimum']}")
    if isinstance(report, dict):
        for key in schema.get("required", []):
            if key not in report:
                raise ValueError(f"{where}: missing '{key}'")
        for key, sub in schema.get("properties", {}).items():
            if key in report:
                validate_report(report[key], sub, f"{where}.{key}")
    if isinstance(report, list) and "items" in schema:
        for i, item in enumerate(report):
            validate_report(item, schema["items"], f"{where}[{i}]")


# ---- settings --------------------------------------------------------------
@dataclass
class BenchSettings:
    backends: list = field(default_factory=lambda: ["auto"])
    precisions: list = field(default_factory=lambda: ["fp32", "fp16", "int8"])
    batches: list = field(default_factory=lambda: [1, 8])
    warmup_s: float = 2.0
    duration_s: float = 5.0
    repeats: int = 3
    threads: int | None = None
    e2e_dir: str | None = None
    checkpoint: str | None = None
    cuda_graph: bool = False  # TensorRT backend: capture fixed shapes as CUDA graphs
    trtexec: str | None = None  # "auto" or a path: compare each tensorrt row with trtexec on the same plan
    seed: int = 0
    min_iterations: int = 2  # per repeat, however slow the model

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("backends", "precisions", "batches", "warmup_s", "duration_s",
                                              "repeats", "threads", "e2e_dir", "checkpoint", "cuda_graph", "trtexec")}


def machine_info() -> dict:
    info = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
    except ImportError:
        info["onnxruntime"] = None
    from .tensorrt_support import installed_trt_version

    info["tensorrt"] = installed_trt_version()
    if "torch" in sys.modules:  # only report it when a torch row loaded it
        info["torch"] = sys.modules["torch"].__version__
    return info


def sample_shape(manifest) -> tuple[tuple, list[str]]:
    """Shape of one input tensor (no batch axis) from the manifest's input spec."""
    spec, notes = manifest.input, []
    size = spec.preprocess.size
    if size is None:
        size = (224, 224)
        notes.append("whole-image model: synthetic inputs are 224x224")
    h, w = size
    return ((3, h, w) if spec.layout == "NCHW" else (h, w, 3)), notes


# ---- one combination ---------------------------------------------------------
class _Runner:
    """A loaded backend plus how to call it with stage timings."""

    def __init__(self, backend, label: str, artifact: str, reason: str):
        self.backend, self.label, self.artifact, self.reason = backend, label, artifact, reason

    def run(self, batch: np.ndarray) -> dict:
        return self.backend.infer_timed(batch)[1]


def _open_runner(pkg: ModelPackage, backend: str, precision: str, settings: BenchSettings) -> _Runner:
    opts = {}
    if settings.threads:
        opts["threads"] = settings.threads
    if backend in EXTRA_BACKENDS:
        cls = load_extra_backend(backend)
        runner = cls.for_package(pkg, precision=precision, checkpoint=settings.checkpoint, **opts)
        runner.activate()
        return _Runner(runner, backend, runner.artifact_name, runner.reason)
    choice = choose(pkg, backend, precision)
    if choice.backend == "tensorrt":
        opts.pop("threads", None)
        opts["cuda_graph"] = settings.cuda_graph
    runner = make_backend(choice, pkg, **opts)
    runner.activate()
    return _Runner(runner, choice.backend, choice.artifact.file, choice.reason)


class _Inputs:
    """Batches to feed: synthetic tensors, or real images decoded and preprocessed each iteration."""

    def __init__(self, pkg: ModelPackage, settings: BenchSettings):
        self.spec = pkg.manifest.input
        self.shape, self.notes = sample_shape(pkg.manifest)
        self.rng = np.random.default_rng(settings.seed)
        self.files = []
        self.failed = 0
        if settings.e2e_dir:
            from .imageio import expand_paths

            self.files = expand_paths([Path(settings.e2e_dir)])
            if not self.files:
                raise FakedetError(f"{settings.e2e_dir}: no images found for --e2e")
        self._next = 0
        self._cache: dict[int, np.ndarray] = {}

    def synthetic(self, b: int) -> np.ndarray:
        if b not in self._cache:
            self._cache[b] = self.rng.standard_normal((b,) + tuple(self.shape)).astype(np.float32)
        return self._cache[b]

    def real(self, b: int) -> tuple[np.ndarray, float]:
        """Decode + preprocess b images (cycling through the folder); (batch, ms)."""
        from .imageio import load_image
        from .preprocess import preprocess_image

        t0 = time.perf_counter()
        tensors, tries = [], 0
        while len(tensors) < b:
            if tries > 2 * len(self.files) + b:
                raise FakedetError(f"{len(self.files)} images in the --e2e folder; too few decode")
            path = self.files[self._next % len(self.files)]
            self._next += 1
            tries += 1
            try:
                tensors.append(preprocess_image(load_image(path, self.spec.preprocess.max_pixels), self.spec, str(path)))
            except ImageError:
                self.failed += 1  # one bad image costs only itself
        shapes = {t.shape for t in tensors}
        if len(shapes) > 1:
            raise FakedetError("the --e2e images preprocess to different sizes (whole-image policy); "
                               "use same-size images to batch them")
        return np.stack(tensors), (time.perf_counter() - t0) * 1e3


def measure(step, warmup_s: float, duration_s: float, repeats: int, min_iterations: int = 2) -> list[list[dict]]:
    """Run `step()` (returns a stage-timing dict, ms) for warm-up, then `repeats` timed
    runs; each iteration's dict gets its wall time as "end_to_end" and each repeat its
    wall time under key "_wall_s" of its last iteration. Returns iterations per repeat."""
    t_end = time.perf_counter() + warmup_s
    step()
    while time.perf_counter() < t_end:
        step()
    runs = []
    for _ in range(repeats):
        its = []
        t_start = time.perf_counter()
        deadline = t_start + duration_s
        while len(its) < min_iterations or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            d = dict(step())
            d["end_to_end"] = (time.perf_counter() - t0) * 1e3
            its.append(d)
        its[-1]["_wall_s"] = time.perf_counter() - t_start
        runs.append(its)
    return runs


def summarize(runs: list[list[dict]], batch: int) -> dict:
    """Per-combination statistics from measure()'s iterations."""
    all_its = [it for its in runs for it in its]
    thr = [batch * len(its) / its[-1]["_wall_s"] for its in runs]
    p50s = [st.median([it["end_to_end"] for it in its]) for its in runs]
    split = {s: st.median_or_none([it.get(s) for it in all_its]) for s in STAGES}
    return {
        "iterations": len(all_its),
        "throughput_img_s": st.Spread.of(thr).to_dict(),
        "latency_ms": st.latency_summary([it["end_to_end"] for it in all_its]),
        "latency_p50_ms_repeats": st.Spread.of(p50s).to_dict(),
        "split_ms": split,
    }


def _skip(backend, precision, batch, reason) -> dict:
    return {"backend": backend, "precision": precision, "batch": batch, "reason": reason}


def run_bench(pkg: ModelPackage, settings: BenchSettings, progress=None) -> dict:
    """Measure every (backend, precision, batch) of `settings`; returns the report dict."""
    inputs = _Inputs(pkg, settings)
    results, skipped, seen = [], [], set()
    combos = [(b, p) for b in settings.backends for p in settings.precisions]
    for backend, precision in combos:
        known = ("auto",) + BACKENDS + tuple(EXTRA_BACKENDS)
        if backend not in known:
            skipped.append(_skip(backend, precision, None, f"unknown backend (known: {', '.join(known)})"))
            continue
        try:
            runner = _open_runner(pkg, backend, precision, settings)
        except FakedetError as e:
            skipped.append(_skip(backend, precision, None, str(e)))
            continue
        except Exception as e:  # a backend that fails to load costs its rows only
            skipped.append(_skip(backend, precision, None, f"{type(e).__name__}: {first_line(e, 300)}"))
            continue
        key = (runner.label, runner.artifact)
        if key in seen:  # e.g. auto resolving to a combination already measured
            runner.backend.close()
            skipped.append(_skip(backend, precision, None, f"same as {runner.label} / {runner.artifact}, measured above"))
            continue
        seen.add(key)
        try:
            for batch in settings.batches:
                if progress:
                    progress(f"{runner.label} {precision} batch {batch}")
                try:
                    results.append(_one(runner, precision, batch, inputs, settings))
                except Exception as e:
                    skipped.append(_skip(runner.label, precision, batch,
                                         f"{type(e).__name__}: {first_line(e, 300)}"))
        finally:
            runner.backend.close()
    report = {
        "schema": "fakedet.bench",
        "schema_version": REPORT_SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "package": {"name": pkg.name, "source": str(pkg.source), "architecture": pkg.manifest.architecture},
        "machine": machine_info(),
        "settings": settings.to_dict(),
        "results": results,
        "skipped": skipped,
        "notes": inputs.notes + ([f"{inputs.failed} --e2e image(s) failed to decode and were skipped"]
                                 if inputs.failed else []),
    }
    if settings.trtexec:
        from .bench_trtexec import compare

        report["trtexec"] = compare(pkg, report, settings, progress)
        if not report["trtexec"]:
            report["notes"].append("--trtexec: no tensorrt row was measured, so there was nothing to compare")
    return report


def _one(runner: _Runner, precision: str, batch: int, inputs: _Inputs, settings: BenchSettings) -> dict:
    fixed = runner.backend.input_spec.fixed_batch()
    if fixed and fixed != batch:
        raise FakedetError(f"the model has a fixed batch of {fixed}")

    if inputs.files:
        def step():
            x, pre_ms = inputs.real(batch)
            d = runner.run(x)
            d["preprocess"] = pre_ms
            return d
    else:
        x = inputs.synthetic(batch)

        def step():
            d = runner.run(x)
            d["preprocess"] = None
            return d

    runs = measure(step, settings.warmup_s, settings.duration_s, settings.repeats, settings.min_iterations)
    row = {
        "backend": runner.label,
        "precision": precision,
        "batch": batch,
        "artifact": runner.artifact,
        "device": runner.backend.describe(),
        "reason": runner.reason,
    }
    row.update(summarize(runs, batch))
    notes = []
    if row["split_ms"]["h2d"] is None:
        notes.append("H2D/compute/D2H not separable for this backend: compute is the whole inference call")
    if row["split_ms"]["preprocess"] is None:
        notes.append("preprocessing not measured (synthetic tensors; use --e2e IMAGES_DIR)")
    row["notes"] = notes
    return row


# ---- output ----------------------------------------------------------------
CSV_COLUMNS = ["backend", "precision", "batch", "artifact", "throughput_img_s", "throughput_iqr", "throughput_min",
               "throughput_max", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "iterations"] + \
              [f"{s}_ms" for s in STAGES] + ["device"]


def to_csv(report: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in report["results"]:
        t, lat, sp = r["throughput_img_s"], r["latency_ms"], r["split_ms"]
        w.writerow([r["backend"], r["precision"], r["batch"], r["artifact"], f"{t['median']:.3f}", f"{t['iqr']:.3f}",
                    f"{t['min']:.3f}", f"{t['max']:.3f}"] + [f"{lat[k]:.4f}" for k in ("p50", "p90", "p99", "max", "mean")]
                   + [r["iterations"]] + ["" if sp[s] is None else f"{sp[s]:.4f}" for s in STAGES] + [r["device"]])
    return buf.getvalue()


def _ms(v) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def format_table(report: dict) -> str:
    head = ["backend", "prec", "batch", "img/s", "spread", "p50", "p90", "p99", "max", "pre", "h2d", "compute",
            "d2h", "e2e"]
    rows = [head]
    for r in report["results"]:
        t, lat, sp = r["throughput_img_s"], r["latency_ms"], r["split_ms"]
        rows.append([r["backend"], r["precision"], str(r["batch"]), f"{t['median']:.1f}",
                     f"{t['min']:.1f}-{t['max']:.1f}"] + [_ms(lat[k]) for k in ("p50", "p90", "p99", "max")]
                    + [_ms(sp[s]) for s in STAGES])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("latency columns in ms (per batch); spread = min-max of the repeat medians; '-' = not separable "
                 "or not measured")
    for s in report["skipped"]:
        where = f" batch {s['batch']}" if s["batch"] is not None else ""
        lines.append(f"skipped {s['backend']} {s['precision']}{where}: {s['reason']}")
    if report.get("trtexec"):
        from .bench_trtexec import format_lines

        lines.extend(format_lines(report["trtexec"]))
    return "\n".join(lines)


def write_json(report: dict, path) -> None:
    validate_report(report)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")


def write_csv(report: dict, path) -> None:
    atomic_write_text(path, to_csv(report))
