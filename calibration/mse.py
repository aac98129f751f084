"""MSE-optimal symmetric INT8 clip from a histogram of |x| (no library provides this for ONNX).

For a candidate amax, values quantize to round(x / s) * s with s = amax / 127, clipped
to +-amax; the expected squared error is summed over histogram bins at their centres.
The candidate with the least error wins."""

from __future__ import annotations

import numpy as np

QMAX = 127


def quant_error(centres: np.ndarray, counts: np.ndarray, amax: float) -> float:
    if amax <= 0:
        return float(np.sum(counts * centres**2))
    s = amax / QMAX
    q = np.clip(np.round(centres / s), -QMAX, QMAX) * s
    return float(np.sum(counts * (centres - q) ** 2))


def mse_amax(hist: np.ndarray, edges: np.ndarray, candidates: int = 256) -> float:
    """amax minimising the quantization MSE over `candidates` clip points between
    1/candidates of the top edge and the top edge (the observed |x| maximum)."""
    hist = np.asarray(hist, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    top = float(edges[-1])
    if top <= 0 or hist.sum() == 0:
        return max(top, 0.0)
    centres = (edges[:-1] + edges[1:]) / 2.0
    nz = hist > 0
    c, h = centres[nz], hist[nz]
    cands = top * np.arange(1, candidates + 1) / candidates
    errs = [quant_error(c, h, a) for a in cands]
    return float(cands[int(np.argmin(errs))])
