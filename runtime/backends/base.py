"""The backend interface: a small runner that turns a preprocessed batch into logits.

Backends load lazily (`activate()` on first use), so constructing one is free and
importing this module imports no inference library."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints for fixed axes, None for dynamic ones
    dtype: str  # numpy dtype name

    def fixed_batch(self) -> int | None:
        return self.shape[0] if self.shape and isinstance(self.shape[0], int) and self.shape[0] > 0 else None


class Backend(ABC):
    """One loaded model on one device. Subclasses implement _activate, _infer, _close."""

    #: registry name, e.g. "ort-cpu", "tensorrt"
    name: str = ""

    def __init__(self, model_path, **options):
        self.model_path = model_path
        self.options = options
        self._active = False

    # ---- lifecycle -------------------------------------------------------
    def activate(self) -> "Backend":
        if not self._active:
            self._activate()
            self._active = True
        return self

    def close(self) -> None:
        if self._active:
            self._close()
            self._active = False

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.close()

    # ---- inference -------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 batch in the model's layout -> the first output, as float32 numpy."""
        self.activate()
        return self._infer(batch)

    def infer_timed(self, batch: np.ndarray) -> tuple[np.ndarray, dict]:
        """(output, {h2d, compute, d2h} in ms). Here one timed `infer`: no separate copy
        stages (None); backends that can tell them apart override this."""
        t0 = time.perf_counter()
        out = self.infer(batch)
        return out, {"h2d": None, "compute": (time.perf_counter() - t0) * 1e3, "d2h": None}

    @property
    def input_spec(self) -> TensorSpec:
        self.activate()
        return self._input_spec()

    @property
    def output_spec(self) -> TensorSpec:
        self.activate()
        return self._output_spec()

    def describe(self) -> str:
        """One line: what runs, on which device."""
        return self.name

    # ---- to implement ----------------------------------------------------
    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _input_spec(self) -> TensorSpec: ...

    @abstractmethod
    def _output_spec(self) -> TensorSpec: ...

    def _close(self) -> None:
        pass
