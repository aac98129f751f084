"""PyTorch eager as a runtime backend: the reference row of `fakedet bench --backend torch`.

It lives in `train/` because it needs torch; the runtime reaches it only through the
lazy registry entry in fakedet.runtime.selection.EXTRA_BACKENDS. The model comes from a
checkpoint (`fakedet.train.checkpoint.load_checkpoint`): `--checkpoint DIR`, or the
package manifest's provenance["checkpoint"]. An in-memory module can be passed as
`model=` (benchmarks that built the model themselves).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fakedet.errors import BackendUnavailable
from fakedet.runtime.backends.base import Backend, TensorSpec


def find_checkpoint(pkg, checkpoint=None) -> Path:
    """The checkpoint directory for a package: the given one, or the manifest's provenance
    entry (absolute, or relative to the package's folder or its parent)."""
    if checkpoint:
        return Path(checkpoint)
    ref = pkg.manifest.provenance.get("checkpoint") if pkg is not None else None
    if not ref:
        raise BackendUnavailable(
            "torch: no checkpoint: pass --checkpoint DIR (the manifest's provenance names none)"
        )
    ref = Path(ref)
    if ref.is_absolute():
        return ref
    for base in (pkg.source.parent, pkg.root, Path.cwd()):
        if (base / ref).exists():
            return base / ref
    raise BackendUnavailable(f"torch: the checkpoint '{ref}' named in the manifest is not here; pass --checkpoint DIR")


class TorchBackend(Backend):
    """Options: checkpoint (dir), model (nn.Module), device ("cpu", "cuda"), precision
    ("fp32", "fp16" on CUDA), threads (torch intra-op threads)."""

    name = "torch"

    def __init__(self, model_path=None, **options):
        super().__init__(model_path, **options)
        self.model = options.get("model")
        self.precision = options.get("precision", "fp32")
        self.device = options.get("device", "cpu")
        self.artifact_name = str(model_path) if model_path else "<in-memory model>"
        self.reason = "PyTorch eager reference"

    @classmethod
    def for_package(cls, pkg, precision: str = "fp32", checkpoint=None, **options) -> "TorchBackend":
        if precision == "int8":
            raise BackendUnavailable("torch: the PyTorch eager reference runs fp32 (or fp16 on a GPU), not int8")
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("torch: PyTorch is not installed here (pip install 'fakedet[train]')") from None
        device = options.pop("device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
        if precision == "fp16" and device == "cpu":
            raise BackendUnavailable("torch: fp16 eager on the CPU is not a meaningful reference; fp32 only here")
        path = find_checkpoint(pkg, checkpoint)
        b = cls(path, precision=precision, device=device, **options)
        b.artifact_name = path.name
        b.reason = f"PyTorch {torch.__version__} eager, {precision}, checkpoint {path}"
        return b

    def _activate(self) -> None:
        import torch

        if self.options.get("threads"):
            torch.set_num_threads(int(self.options["threads"]))
        if self.model is None:
            from .checkpoint import load_checkpoint

            if self.model_path is None:
                raise BackendUnavailable("torch: no checkpoint and no model given")
            self.model, self.config = load_checkpoint(self.model_path)
            spec = self.config.get("input", {})
            self._in_name = spec.get("name", "image") if isinstance(spec, dict) else "image"
        else:
            self._in_name = "image"
        self.model.eval().to(self.device)
        self._dtype = torch.float16 if self.precision == "fp16" else torch.float32
        if self.precision == "fp16":
            self.model.half()
        self._torch = torch

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.infer_timed(batch)[0]

    def infer_timed(self, batch: np.ndarray) -> tuple[np.ndarray, dict]:
        """On the CPU: compute only (no copies exist). On CUDA: H2D, compute, D2H each
        timed with a synchronize around it."""
        self.activate()
        torch = self._torch
        with torch.inference_mode():
            if self.device == "cpu":
                t0 = time.perf_counter()
                out = self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
                dt = (time.perf_counter() - t0) * 1e3
                return out.float().numpy(), {"h2d": None, "compute": dt, "d2h": None}
            t0 = time.perf_counter()
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self._dtype)
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            out = self.model(x)
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            res = out.float().cpu().numpy()
            t3 = time.perf_counter()
        return res, {"h2d": (t1 - t0) * 1e3, "compute": (t2 - t1) * 1e3, "d2h": (t3 - t2) * 1e3}

    def _input_spec(self) -> TensorSpec:
        return TensorSpec(self._in_name, (None, None, None, None), "float32")

    def _output_spec(self) -> TensorSpec:
        return TensorSpec("logit", (None, 1), "float32")

    def _close(self) -> None:
        self.model = None if self.model_path is not None else self.model

    def describe(self) -> str:
        return f"torch eager ({self.device}, {self.precision})"

