"""The export's check of the evidence output: on the parity images, in every ONNX file
written, the map has one channel per image and its mean equals the image's logit (the
map splits the score over the regions; a graph where it does not is refused)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from fakedet.artifact_kinds import ONNX_FP16
from fakedet.evidence_spec import EvidenceSpec
from fakedet.train.models.evidence import EVIDENCE_OUTPUT

from .fp16 import ORT_CPU_DISABLED_OPTIMIZERS
from .parity import ParityError, ParityInputs


def mean_gap(session, feed: dict) -> tuple[float, tuple]:
    """max |mean(map) - logit| over the batch, and the map's shape."""
    logit, evidence = session.run(["logit", EVIDENCE_OUTPUT], feed)
    evidence = np.asarray(evidence, dtype=np.float64)
    if evidence.ndim != 4 or evidence.shape[1] != 1 or evidence.shape[0] != len(logit):
        raise ParityError(f"the evidence output has shape {evidence.shape}; expected N x 1 x h x w")
    gap = np.abs(evidence.mean(axis=(1, 2, 3)) - np.asarray(logit, np.float64).reshape(-1))
    return float(gap.max()), evidence.shape


def check_evidence(protos: dict, inputs: ParityInputs, atol: float, atol_fp16: float,
                   echo: Callable[[str], None] = print) -> EvidenceSpec:
    """`protos`: {artifact kind: (ModelProto, file)}; the manifest's evidence entry, or ParityError."""
    from fakedet.runtime.ort_session import cpu_session

    details = {}
    for kind, (proto, _) in protos.items():
        fp16 = kind == ONNX_FP16
        sess = cpu_session(proto.SerializeToString(), disabled_optimizers=ORT_CPU_DISABLED_OPTIMIZERS if fp16 else ())
        name = sess.get_inputs()[0].name
        gaps, shape = [], None
        for which in ("random", "real"):
            for feed in inputs.feeds(which, name).values():
                g, shape = mean_gap(sess, feed)
                gaps.append(g)
        worst, tol = max(gaps), atol_fp16 if fp16 else atol
        details[kind] = {"max_abs_mean_minus_logit": worst, "atol": tol, "map_shape": list(shape)}
        echo(f"evidence ({kind}): map {shape[2]}x{shape[3]} per image, max |mean(map) - logit| {worst:.2e}")
        if worst > tol:
            raise ParityError(f"{kind}: the evidence map's mean differs from the logit by {worst:.3g} > {tol:g}; "
                              "the package was not written")
    return EvidenceSpec(details={"check": details}).validate()
