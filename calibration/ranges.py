"""Activation ranges from ONNX Runtime's calibrators (entropy, percentile, minmax), and
an MSE-optimal clip written here because no library offers it for ONNX.

Every float tensor of the FP32 graph is calibrated (not only the inputs of quantized
ops): TensorRT's implicit INT8 needs a range for each tensor it sees."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from .dataset import progress_bar
from .mse import mse_amax

METHODS = ("entropy", "percentile", "minmax", "mse")
DEFAULT_NUM_BINS = 2048  # ORT's Entropy default of 128 bins gives the MinMax answer
DEFAULT_PERCENTILE = 99.999


class _OneBatch:
    """A CalibrationDataReader over one batch: feeding batch by batch keeps memory flat
    (ORT's histogram calibrators hold every intermediate output of a collect_data call)."""

    def __init__(self, name: str, batch: np.ndarray):
        self._items = [{name: batch}]

    def get_next(self):  # all ORT's collect_data calls
        return self._items.pop() if self._items else None


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


def _calibrator(model_path: Path, method: str, params: dict, workdir: Path):
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    if method == "minmax":
        ort_method, options = CalibrationMethod.MinMax, {"symmetric": True}
    elif method == "entropy":
        ort_method, options = CalibrationMethod.Entropy, {"symmetric": True, **params}
    elif method == "percentile":
        ort_method, options = CalibrationMethod.Percentile, {"symmetric": True, **params}
    else:  # mse works on the same |x| histograms the percentile calibrator collects
        ort_method, options = CalibrationMethod.Percentile, {"symmetric": True, "num_bins": params["num_bins"]}
    return create_calibrator(
        model_path,
        None,  # every float tensor
        augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=ort_method,
        providers=["CPUExecutionProvider"],
        extra_options=options,
    )


def compute_ranges(model_path: str | Path, batches, method: str, params: dict, progress: bool = True) -> dict[str, float]:
    """{tensor name: amax} for every float activation tensor of the model (symmetric ranges)."""
    model_path = Path(model_path)
    batches = list(batches)
    it = progress_bar(batches, progress, desc=f"calibrating ({method})", unit="batch")
    with tempfile.TemporaryDirectory(prefix="fakedet-calib-") as tmp:
        cal = _calibrator(model_path, method, params, Path(tmp))
        input_name = cal.infer_session.get_inputs()[0].name  # the augmented model keeps the inputs
        quiet = io.StringIO()  # ORT's histogram collector prints its settings to stdout
        with contextlib.redirect_stdout(quiet):
            for batch in it:
                cal.collect_data(_OneBatch(input_name, batch))
            if method == "mse":
                hists = cal.collector.histogram_dict
                amax = {name: mse_amax(h[0], h[1]) for name, h in hists.items()}
            else:
                data = cal.compute_data()
                amax = {}
                for name, td in data.items():
                    lo, hi = td.range_value
                    amax[name] = float(max(abs(float(np.asarray(lo).max())), abs(float(np.asarray(hi).max()))))
        del cal
    return dict(sorted(amax.items()))
