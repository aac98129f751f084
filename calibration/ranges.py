"""Activation ranges from ONNX Runtime's calibrators (entropy, percentile, minmax), and
an MSE-optimal clip written here because no library offers it for ONNX.

Every float tensor of the FP32 graph is calibrated (not only the inputs of quantized
ops): TensorRT's implicit INT8 needs a range for each tensor it sees."""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakedet.errors import first_line
from fakedet.tempdirs import owned_tempdir

from .dataset import progress_bar
from .feeds import feed
from .mse import mse_amax

METHODS = ("entropy", "percentile", "minmax", "mse")
DEFAULT_NUM_BINS = 2048  # ORT's Entropy default of 128 bins gives the MinMax answer
DEFAULT_PERCENTILE = 99.999
# Per-tensor histogram size past which a tensor takes its min-max range: |x| histograms cost
# linear time (a percentile must survive outliers 100x the first batch's range); ORT's entropy
# search is quadratic in the bins (~1 s per tensor at 2048), so it gets a tighter bound.
MAX_BINS = 1 << 20
MAX_ENTROPY_BINS = 1 << 14
MIN_AMAX = 1e-30  # below it amax / 127 is no usable float32 scale (and all-zero has no range at all)


def method_params(method: str, num_bins: int = DEFAULT_NUM_BINS, percentile: float = DEFAULT_PERCENTILE) -> dict:
    if method not in METHODS:
        raise ValueError(f"unknown calibration method '{method}' (known: {', '.join(METHODS)})")
    if method == "minmax":
        return {}
    if method == "percentile":
        return {"num_bins": int(num_bins), "percentile": float(percentile)}
    if method == "entropy":
        return {"num_bins": int(num_bins), "num_quantized_bins": 128}
    return {"num_bins": int(num_bins)}


def _calibrator(model_path: Path, workdir: Path):
    """ORT's histogram calibrator, used for its augmented model (every float tensor a graph
    output) and session; the collection itself is done here, tensor by tensor."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    return create_calibrator(
        model_path,
        None,  # every float tensor
        augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Percentile,
        providers=["CPUExecutionProvider"],
        extra_options={"symmetric": True},
    )


def _collector(method: str, params: dict):
    """ORT's histogram collector with the settings its calibrator for `method` would use
    (mse reads the same |x| histograms as percentile); None for minmax."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    if method == "minmax":
        return None
    kind = "entropy" if method == "entropy" else "percentile"
    return HistogramCollector(kind, True, params["num_bins"], params.get("num_quantized_bins", 128),
                              params.get("percentile", DEFAULT_PERCENTILE), "same")  # fmt: skip


def _grows_too_far(collector, name: str, amax: float) -> bool:
    """Would ORT's histogram for `name` need more bins than we allow to take in values up to
    `amax`? (It keeps the first batch's bin width: a near-constant first batch followed by a
    wide one would ask for billions of bins.)"""
    h = collector.histogram_dict.get(name)
    if h is None:
        return False
    n = len(h[0])
    if collector.method == "entropy":  # (hist, edges, min, max, threshold), symmetric around 0
        old = float(h[4])
        if amax <= old or old == 0:
            return False
        return n + 2 * ((amax - old) / (2 * old / n) + 1) > MAX_ENTROPY_BINS
    edges = h[1]
    width = float(edges[1]) - float(edges[0])
    return amax > float(edges[-1]) and n + (amax - float(edges[-1])) / width > MAX_BINS


def _histogram_amax(collector, name: str, method: str) -> float:
    h = collector.histogram_dict[name]
    if method == "mse":
        return mse_amax(h[0], h[1])
    if method == "entropy":
        lo, hi = collector.get_entropy_threshold(h, collector.num_quantized_bins)
    else:
        everything = collector.histogram_dict
        collector.histogram_dict = {name: h}
        try:
            lo, hi = collector.compute_percentile()[name][:2]
        finally:
            collector.histogram_dict = everything
    return float(max(abs(float(np.asarray(lo).max())), abs(float(np.asarray(hi).max()))))


@dataclass
class _Stats:
    amax: float = 0.0
    unusable: str | None = None  # why the tensor stays in float
    no_histogram: str | None = None  # why its range is the min-max one


def compute_ranges(model_path: str | Path, batches, method: str, params: dict, progress: bool = True,
                   notes: dict | None = None) -> dict[str, float]:  # fmt: skip
    """{tensor name: amax} for every float activation tensor of the model (symmetric ranges).

    A tensor that cannot be calibrated (NaN/inf values, all zero, a range too small for an
    int8 scale) is left out, so the QDQ model and the TensorRT cache keep it in float; a
    tensor whose histogram cannot be built (constant or near-constant values, a range that
    grows by orders of magnitude) takes its min-max range. `notes`, when given, receives
    {"kept_float": {tensor: why}, "minmax_fallback": {tensor: why}}."""
    model_path = Path(model_path)
    batches = list(batches)
    it = progress_bar(batches, progress, desc=f"calibrating ({method})", unit="batch")
    stats: dict[str, _Stats] = {}
    with owned_tempdir("fakedet-calib-") as tmp:
        cal = _calibrator(model_path, tmp)
        session = cal.infer_session
        outputs = [o.name for o in session.get_outputs()]
        wanted = set(cal.tensors_to_calibrate)
        collector = _collector(method, params)
        quiet = io.StringIO()  # ORT's histogram collector prints its settings to stdout
        with contextlib.redirect_stdout(quiet):
            for batch in it:
                for name, arr in zip(outputs, session.run(None, feed(session, batch))):  # it keeps the inputs
                    if name in wanted:
                        _collect(stats.setdefault(name, _Stats()), collector, name, np.asarray(arr))
            amax = _results(stats, collector, method)
        del cal, session
    if notes is not None:
        notes["kept_float"] = {n: s.unusable for n, s in sorted(stats.items()) if s.unusable}
        notes["minmax_fallback"] = {n: s.no_histogram for n, s in sorted(stats.items()) if s.no_histogram and not s.unusable}
    return dict(sorted(amax.items()))


def _collect(st: _Stats, collector, name: str, arr: np.ndarray) -> None:
    if st.unusable:
        return
    if not np.isfinite(arr).all():
        st.unusable = "non-finite values (NaN or infinity) on the calibration data"
        return
    batch_amax = float(np.max(np.abs(arr))) if arr.size else 0.0
    st.amax = max(st.amax, batch_amax)
    if collector is None or st.no_histogram:
        return
    if _grows_too_far(collector, name, batch_amax):
        st.no_histogram = "its range grew too far past the first batch's for a histogram of that bin width"
    else:
        try:
            collector.collect({name: [arr]})
            return
        except Exception as e:  # numpy cannot bin a (near-)constant range; ORT asserts on odd dtypes
            st.no_histogram = f"no histogram ({first_line(e)})"
    collector.histogram_dict.pop(name, None)


def _results(stats: dict[str, _Stats], collector, method: str) -> dict[str, float]:
    amax = {}
    for name, st in stats.items():
        if st.unusable:
            continue
        if st.amax < MIN_AMAX:
            st.unusable = "all zero on the calibration data" if st.amax == 0 else f"range {st.amax:.3g} too small for an int8 scale"
            continue
        value = st.amax
        if collector is not None and not st.no_histogram:
            try:  # never past the largest |x| seen (numpy widens a constant's histogram by +-0.5)
                value = min(_histogram_amax(collector, name, method), st.amax)
            except Exception as e:
                st.no_histogram = f"{method} failed ({first_line(e)})"
            if not st.no_histogram and not (math.isfinite(value) and value >= MIN_AMAX):
                st.no_histogram = f"{method} gave {value:.3g}"
            if st.no_histogram:
                value = st.amax
        amax[name] = float(value)
    return amax
