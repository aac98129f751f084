"""PyTorch eager as a backend: the reference row of `fakedet bench --backend torch`, and
the engine of `fakedet eval CHECKPOINT`.

It lives in `train/` because it needs torch; the runtime reaches it only through the
registry entry "torch" (fakedet.runtime.backends.registry), resolved when a caller
names it. The model comes from a checkpoint (`fakedet.train.checkpoint.load_checkpoint`):
for a package, the manifest's provenance["checkpoint"] or the one passed as `checkpoint`
to selection.choose (`fakedet bench --checkpoint DIR`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedet.errors import BackendUnavailable
from fakedet.manifest import Artifact
from fakedet.runtime.backends.base import Backend, TensorSpec
from fakedet.runtime.captions import IMAGE_ONLY, CaptionInput

from .models.clip import CaptionAwareGraph, takes_captions


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


class CheckpointCaptions(CaptionInput):
    """A caption-aware checkpoint's text input: CaptionInput with open_clip's tokenizer, as
    in training; the PyTorch reference refuses no caption (a missing one reads as "")."""

    def __init__(self, spec, backend: "TorchBackend"):
        super().__init__(spec, tokenizer=None)
        self.backend = backend

    def check(self, caption) -> None:
        pass

    def tokens(self, captions: list) -> np.ndarray:
        return self.backend.model.detector.token_ids(captions, self.spec.context_length)


class TorchBackend(Backend):
    """A fakedet checkpoint (model_path: its directory) run by PyTorch eager."""

    name = "torch"
    OPTIONS = {
        "device": "cpu, cuda, cuda:N or auto (default: cuda when available)",
        "precision": "fp32, or fp16 on CUDA",
        "threads": "torch intra-op threads (a process-wide setting)",
    }

    # ---- building from a package -------------------------------------------
    @classmethod
    def choose_for_package(cls, pkg, precision: str = "auto", checkpoint=None):
        """selection.Choice for a package: its checkpoint, at fp32 (fp16 needs a GPU: refused at open)."""
        from fakedet.runtime.selection import Choice

        if precision not in ("auto", "fp32", "fp16"):
            raise BackendUnavailable(f"torch: the PyTorch eager reference runs fp32 (or fp16 on a GPU), not {precision}")
        precision = "fp32" if precision == "auto" else precision
        path = find_checkpoint(pkg, checkpoint)
        art = Artifact(file=path.name, kind="checkpoint", sha256="", attrs={"path": str(path), "precision": precision})
        return Choice("torch", art, f"PyTorch eager, {precision}, checkpoint {path}")

    @classmethod
    def package_inputs(cls, pkg, choice) -> tuple[object, dict]:
        return Path(choice.artifact.attrs["path"]), {"precision": choice.precision}

    # ---- hooks -----------------------------------------------------------
    def _open(self) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("torch: PyTorch is not installed here (pip install 'fakedet[train]')") from None
        from .checkpoint import load_checkpoint

        self.precision = self.options.get("precision", "fp32")
        device = self.options.get("device") or "auto"
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        if self.precision not in ("fp32", "fp16"):
            raise BackendUnavailable(f"torch: precision {self.precision}: the PyTorch eager reference runs fp32 or fp16")
        if self.precision == "fp16" and self.device.type == "cpu":
            raise BackendUnavailable("torch: fp16 eager on the CPU is not a meaningful reference; fp32 only here")
        if self.options.get("threads"):
            torch.set_num_threads(int(self.options["threads"]))
        model, self.config = load_checkpoint(self.model_path, map_location="cpu")
        self._dtype = torch.float16 if self.precision == "fp16" else torch.float32
        self.model = model.eval().to(self.device, self._dtype)
        spec = self.config.get("input", {})
        self._in_name = spec.get("name", "image") if isinstance(spec, dict) else "image"
        self._text, self.captions = None, IMAGE_ONLY  # the caption input a caller feeds through
        if takes_captions(self.model):  # a caption-aware model: (image, token ids), as its package's graph
            from fakedet.manifest import TextInputSpec

            self._text = TextInputSpec(context_length=self.model.context_length)
            self.captions = CheckpointCaptions(self._text, self)
            self.model = CaptionAwareGraph(self.model).eval()
        self._torch = torch

    def _args(self, batch, device=None):
        torch = self._torch
        if not isinstance(batch, dict):
            batch = {self._in_name: batch}
        args = [torch.from_numpy(batch[self._in_name])]
        if self._text is not None:
            args.append(torch.from_numpy(np.ascontiguousarray(batch[self._text.name])))
        if device is not None:
            args = [args[0].to(device, self._dtype)] + [a.to(device) for a in args[1:]]
        return args

    def _run(self, batch: np.ndarray):
        """On the CPU: the base times the call (no copies exist). On CUDA: H2D, compute,
        D2H each timed with a synchronize around it."""
        import time

        torch = self._torch
        with torch.inference_mode():
            if self.device.type == "cpu":
                return self.model(*self._args(batch)).float().numpy()
            t0 = time.perf_counter()
            args = self._args(batch, self.device)
            torch.cuda.synchronize(self.device)
            t1 = time.perf_counter()
            out = self.model(*args)
            torch.cuda.synchronize(self.device)
            t2 = time.perf_counter()
            res = out.float().cpu().numpy()
            t3 = time.perf_counter()
        return res, {"h2d": (t1 - t0) * 1e3, "compute": (t2 - t1) * 1e3, "d2h": (t3 - t2) * 1e3}

    def _input_spec(self) -> TensorSpec:
        return TensorSpec(self._in_name, (None, None, None, None), "float32")

    def _input_specs(self) -> list[TensorSpec]:
        specs = [self._input_spec()]
        if self._text is not None:
            specs.append(TensorSpec(self._text.name, (None, self._text.context_length), self._text.dtype))
        return specs

    def _output_spec(self) -> TensorSpec:
        return TensorSpec("logit", (None, None), "float32")  # eager: the width shows only when it runs

    def _close(self) -> None:
        self.model = None

    def describe(self) -> str:
        if not self.is_open:
            return "torch eager"
        return f"torch {self._torch.__version__} eager ({self.device}, {self.precision})"
