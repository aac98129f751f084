"""Artifact kinds: the one table of what each kind of package file is. The manifest
validates against it; the runtime, export, build, Triton and calibration code read their
facts here (precision, default file name, ONNX or not) instead of repeating them.
Adding a kind is adding one record."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArtifactKind:
    name: str
    precision: str | None = None  # a model's numeric precision (fp32, fp16, int8); None for other files
    file: str | None = None  # the file fakedet writes it to (None: named per artifact, e.g. plans)
    onnx: bool = False  # an ONNX model the runtime can run (hashed, its embedded manifest checked)


ONNX_FP32 = "onnx-fp32"
ONNX_FP16 = "onnx-fp16"
ONNX_INT8_QDQ = "onnx-int8-qdq"
TRT_CALIBRATION_CACHE = "trt-calibration-cache"
TRT_PLAN = "trt-plan"
CALIBRATION_REPORT = "calibration-report"
PARITY_REPORT = "parity-report"
ONNX_EXTERNAL_DATA = "onnx-external-data"
TOKENIZER = "tokenizer"

# ONNX models in the order fakedet prefers them where nothing else decides (Triton, bare files)
KINDS: dict[str, ArtifactKind] = {k.name: k for k in (
    ArtifactKind(ONNX_FP32, "fp32", "model.onnx", onnx=True),
    ArtifactKind(ONNX_FP16, "fp16", "model.fp16.onnx", onnx=True),
    # the TensorRT flavour; calibration's ONNX Runtime CPU flavour is calibration/files.INT8_CPU_FILE
    ArtifactKind(ONNX_INT8_QDQ, "int8", "model.int8.onnx", onnx=True),
    ArtifactKind(TRT_CALIBRATION_CACHE, file="calibration.cache"),
    ArtifactKind(TRT_PLAN),  # precision in its attrs; file named per GPU and TensorRT version
    ArtifactKind(CALIBRATION_REPORT, file="calibration.json"),  # and its figure calibration.png
    ArtifactKind(PARITY_REPORT, file="parity/report.json"),
    ArtifactKind(ONNX_EXTERNAL_DATA),  # tensors of an ONNX artifact kept beside it (models over 2 GB); attrs: of
    ArtifactKind(TOKENIZER, file="tokenizer.json"),  # a caption-aware model's tokenizer; attrs: tokenizer kind
)}  # fmt: skip

ARTIFACT_KINDS = tuple(KINDS)
ONNX_KINDS = tuple(k.name for k in KINDS.values() if k.onnx)
PRECISION_OF_KIND = {k.name: k.precision for k in KINDS.values() if k.onnx}


def onnx_kind(precision: str) -> str:
    """The ONNX kind holding a model of `precision` (fp32, fp16, int8)."""
    return next(k for k, p in PRECISION_OF_KIND.items() if p == precision)


def default_file(kind: str) -> str:
    file = KINDS[kind].file
    if file is None:
        raise ValueError(f"artifact kind '{kind}' has no default file name")
    return file
