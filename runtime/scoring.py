"""Model outputs -> (logit, P(fake))."""

from __future__ import annotations

import numpy as np

from fakedet.errors import PackageError
from fakedet.manifest import OutputSpec


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def fake_logits(outputs: np.ndarray, spec: OutputSpec) -> np.ndarray:
    """One logit per image whose sigmoid is P(fake). For two-class outputs this is
    l_fake - l_real, whose sigmoid equals softmax(l)[fake]."""
    out = np.asarray(outputs, dtype=np.float64)
    n = out.shape[0]
    out = out.reshape(n, -1)
    if spec.kind == "logit":
        if out.shape[1] != 1:
            raise ValueError(f"output '{spec.name}' has {out.shape[1]} values per image; the manifest says one logit")
        return out[:, 0]
    if out.shape[1] != 2:
        raise ValueError(f"output '{spec.name}' has {out.shape[1]} values per image; the manifest says two-class logits")
    return out[:, spec.fake_index] - out[:, 1 - spec.fake_index]


def check_output(tensor, spec: OutputSpec, file: str) -> None:
    """Refuse, when the model is loaded, an output (a backends.base.TensorSpec) whose
    values per image contradict the manifest; dims known only at run time pass here
    and are checked by fake_logits."""
    n = tensor.values_per_item()
    want = 1 if spec.kind == "logit" else 2
    if n is not None and n != want:
        what = "one logit" if want == 1 else "two-class logits"
        raise PackageError(file, f"output '{tensor.name}' has {n} values per image; the manifest says {what}")
