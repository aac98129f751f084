"""A cheap CPU throughput check of FP32 against the CPU INT8 artifact, run during calibration
so the runtime can put FP32 first where INT8 does not pay on this kind of CPU."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from fakedet.runtime.cpu_tier import cpu_record

from .feeds import batch_rows, feed
from .ort_run import session


def cpu_model() -> str:
    model = cpu_record()["model"]
    return model if model != "unknown" else platform.machine() or "unknown CPU"


def measure(fp32_model, int8_model, batch: np.ndarray, budget_s: float = 2.5, max_repeats: int = 5) -> dict:
    """Interleaved timed runs (one warm-up each) on one batch; median img/s per model.
    Stops after `max_repeats` or once `budget_s` is spent (at least one repeat each)."""
    import onnxruntime as ort

    threads = os.cpu_count() or 1
    sessions = {"fp32": session(fp32_model, threads), "int8": session(int8_model, threads)}
    feeds = {k: feed(s, batch) for k, s in sessions.items()}
    for k, s in sessions.items():
        s.run(None, feeds[k])
    times: dict[str, list[float]] = {k: [] for k in sessions}
    t_end = time.perf_counter() + budget_s
    while len(times["fp32"]) < max_repeats and (not times["fp32"] or time.perf_counter() < t_end):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feeds[k])
            times[k].append(time.perf_counter() - t0)
    ips = {k: batch_rows(batch) / float(np.median(v)) for k, v in times.items()}
    return {
        "fp32_img_s": ips["fp32"],
        "int8_img_s": ips["int8"],
        "speedup": ips["int8"] / ips["fp32"],
        "batch": batch_rows(batch),
        "repeats": len(times["fp32"]),
        "measured_on": f"{cpu_model()}, {threads} threads, onnxruntime {ort.__version__} CPU",
    }
