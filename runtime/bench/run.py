"""One `fakedet bench` run: open each backend/precision, feed batches, time the stages."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field


from fakedet.errors import FakedetError, first_line
from fakedet.package import ModelPackage

from ..backends import registry
from ..backends.registry import split_options
from ..selection import BACKENDS, choose, make_backend
from . import stats as st
from .inputs import BenchInputs
from .schema import REPORT_SCHEMA_VERSION, STAGES

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
    caption_tokens: int | None = None  # caption-aware models: tokens per synthetic caption (None: the default)
    seed: int = 0
    min_iterations: int = 2  # per repeat, however slow the model

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("backends", "precisions", "batches", "warmup_s", "duration_s",
                                              "repeats", "threads", "e2e_dir", "checkpoint", "cuda_graph", "trtexec",
                                              "caption_tokens")}


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
    from ..tensorrt_support import installed_trt_version

    info["tensorrt"] = installed_trt_version()
    if "torch" in sys.modules:  # only report it when a torch row loaded it
        info["torch"] = sys.modules["torch"].__version__
    return info


# ---- one combination ---------------------------------------------------------
class _Runner:
    """A loaded backend, what it runs and why, and the settings that do not apply to it."""

    def __init__(self, backend, choice, not_applicable: dict):
        self.backend, self.label, self.artifact, self.reason = backend, choice.backend, choice.artifact.file, choice.reason
        self.not_applicable = not_applicable

    def run(self, batch) -> dict:
        return self.backend.infer_timed(batch)[1]


def _open_runner(pkg: ModelPackage, backend: str, precision: str, settings: BenchSettings) -> _Runner:
    hints = {"checkpoint": settings.checkpoint} if backend in registry.other_backends() and settings.checkpoint else {}
    choice = choose(pkg, backend, precision, **hints)
    # The bench's settings hold for every row; each backend takes those it has.
    wanted = {"threads": settings.threads, "cuda_graph": settings.cuda_graph}
    opts, not_applicable = split_options(choice.backend, {k: v for k, v in wanted.items() if v})
    return _Runner(make_backend(choice, pkg, **opts).open(), choice, not_applicable)


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
    inputs = BenchInputs(pkg, settings)
    results, skipped, seen = [], [], set()
    combos = [(b, p) for b in settings.backends for p in settings.precisions]
    for backend, precision in combos:
        known = ("auto",) + BACKENDS + registry.other_backends()
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
        # The caption length actually fed (the default resolved), None for an image-only model.
        "settings": {**settings.to_dict(), "caption_tokens": inputs.caption_tokens},
        "results": results,
        "skipped": skipped,
        "notes": inputs.notes + ([f"{inputs.failed} --e2e image(s) failed to decode and were skipped"]
                                 if inputs.failed else []),
    }
    if settings.trtexec and pkg.manifest.takes_captions:
        report["notes"].append("--trtexec: not run: a caption-aware package has two inputs (image, token ids) "
                               "and no plan for the native TensorRT backend to compare against; it runs on ort-trt")
    elif settings.trtexec:
        from .trtexec import compare

        report["trtexec"] = compare(pkg, report, settings, progress)
        if not report["trtexec"]:
            report["notes"].append("--trtexec: no tensorrt row was measured, so there was nothing to compare")
    return report


def _one(runner: _Runner, precision: str, batch: int, inputs: BenchInputs, settings: BenchSettings) -> dict:
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
    notes = [f"--{k.replace('_', '-')} does not apply to {runner.label}" for k in runner.not_applicable]
    if row["split_ms"]["h2d"] is None:
        notes.append("H2D/compute/D2H not separable for this backend: compute is the whole inference call")
    if row["split_ms"]["preprocess"] is None:
        notes.append("preprocessing not measured (synthetic tensors; use --images DIR)")
    row["notes"] = notes
    return row
