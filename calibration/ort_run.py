"""Running a model in ONNX Runtime on the CPU during calibration: the session and the logits.
Everything that scores a (QDQ or float) model on the held-out images goes through here."""

from __future__ import annotations

import numpy as np

from fakedet.manifest import OutputSpec
from fakedet.runtime.ort_session import cpu_session
from fakedet.runtime.scoring import fake_logits

from .feeds import feed


def session(model, threads: int | None = None, exact: bool = False):
    """An ORT CPU session from a path or an in-memory ModelProto (`threads`: intra-op threads).
    `exact`: graph optimizations off, so a QDQ model runs as the exact quantization arithmetic
    (Q/DQ as written, float ops between them) instead of ORT's fused INT8 kernels, whose
    results differ by CPU tier (runtime/cpu_tier.py): what TensorRT's INT8 approximates."""
    return cpu_session(model, threads=threads, optimization="none" if exact else "all")


def logits_of(model, batches, output: OutputSpec, exact: bool = False) -> np.ndarray:
    sess = session(model, exact=exact)
    out = [fake_logits(sess.run(None, feed(sess, b))[0], output) for b in batches]
    return np.concatenate(out) if out else np.zeros(0)
