"""Helpers shared by the bench / selection / TensorRT-rule tests (no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedet.package import ModelPackage, PackageWriter


def plan_attrs(**over) -> dict:
    """A trt-plan's manifest attrs exactly as `fakedet build` writes them."""
    attrs = {
        "trt_version": "10.3.0",
        "compute_capability": "8.7",
        "device_name": "Orin",
        "precision": "fp16",
        "profiles": [{"input": "input", "min": [1, 3, 16, 16], "opt": [8, 3, 16, 16], "max": [32, 3, 16, 16]}],
        "dla_core": None,
        "version_compatible": False,
        "hardware_compatibility": "none",
        "built_from": "model.fp16.onnx",
        "calibration": None,
    }
    attrs.update(over)
    return attrs


def quantize_int8(src: Path, dst: Path, size: int = 16) -> Path:
    """QDQ, per-channel INT8 with ONNX Runtime's static quantizer on a few random batches."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    input_name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{input_name: rng.standard_normal((2, 3, size, size)).astype(np.float32)}
                               for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return dst


def add_artifacts(pkg_dir: Path, int8: bool = False, plans: list[dict] | None = None, tmp: Path | None = None,
                  provenance: dict | None = None) -> Path:
    """Rewrite the package at pkg_dir with an INT8 QDQ ONNX and/or fake plan files added."""
    base = ModelPackage.open(pkg_dir)
    manifest = base.manifest.copy()
    if provenance:
        manifest.provenance.update(provenance)
    tmp = Path(tmp or pkg_dir.parent)
    with PackageWriter(pkg_dir, manifest, base=base) as w:
        if int8:
            fp32 = base.path_of(base.manifest.artifact("onnx-fp32"))
            q = quantize_int8(fp32, tmp / "q.int8.onnx")
            w.add_file(q, "model.int8.onnx", "onnx-int8-qdq")
        for i, attrs in enumerate(plans or []):
            blob = tmp / f"plan{i}.engine"
            blob.write_bytes(b"not a real plan " + bytes([i]))
            w.add_file(blob, f"model.{attrs['precision']}.{i}.engine", "trt-plan", **attrs)
    return pkg_dir
