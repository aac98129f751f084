"""The records the calibration pipeline passes between its stages (pipeline.py -> report.py
and the package write): typed, so a missing or misspelt field fails where it is made."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Built:
    """One INT8 flavour (files.TARGETS): its QDQ model after the guard and fallback."""

    target: str  # "tensorrt" or "ort-cpu"
    file: str
    activations: str
    weights: str
    model: object  # onnx.ModelProto
    guard: dict  # the guard's verdict and fallback steps, as the report writes it
    l8: np.ndarray  # the final model's logits on the guard set
    text_tower: dict | None = None  # caption-aware packages: what the text tower became

    @property
    def kept_float_names(self) -> list[str]:
        return [g["name"] for g in self.guard["kept_float"]]


@dataclass(frozen=True)
class CpuFacts:
    """The CPU the guard validated the CPU flavour on, and how far ORT's kernels stray there."""

    validated_cpu: dict  # runtime.cpu_tier.cpu_record()
    kernels_vs_exact: float  # largest |dlogit| of this CPU's INT8 kernels against the exact arithmetic
    tier_proof: bool  # its weight form cannot saturate on any CPU tier

    def report_fields(self) -> dict:
        return {"tier_proof": self.tier_proof, "kernels_vs_exact": self.kernels_vs_exact}
