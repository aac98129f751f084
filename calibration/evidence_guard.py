"""The guard's view of the evidence map: how far the INT8 map moves from the FP32 one,
per region, as |delta P(fake)| (the map's logits through a sigmoid), on the guard's images."""

from __future__ import annotations

import numpy as np

from fakedet.runtime.scoring import sigmoid

from .feeds import feed
from .ort_run import session


def _has(sess, name: str) -> bool:
    return name in {o.name for o in sess.get_outputs()}


class EvidenceDelta:
    """How far an INT8 model's map moves from FP32's on the guard's batches; FP32's maps are
    computed once (the fallback asks after every step)."""

    def __init__(self, fp32_model, batches, name: str = "evidence"):
        self.batches, self.name = batches, name
        s32 = session(fp32_model)
        self.m32 = [s32.run([name], feed(s32, b))[0] for b in batches] if _has(s32, name) else None

    def __call__(self, int8_model, exact: bool = False) -> dict | None:
        """{mean, p99, max |delta P| over all regions of all images, mean of the per-image max,
        regions, images}; None when either model lacks the output."""
        s8 = session(int8_model, exact=exact)
        if self.m32 is None or not _has(s8, self.name):
            return None
        deltas, worst = [], []
        for b, m32 in zip(self.batches, self.m32):
            m8 = s8.run([self.name], feed(s8, b))[0]
            dp = np.abs(sigmoid(m8) - sigmoid(m32)).reshape(len(m32), -1)
            deltas.append(dp.reshape(-1))
            worst.append(dp.max(axis=1))
        if not deltas:
            return None
        dp, worst = np.concatenate(deltas), np.concatenate(worst)
        return {"mean_abs_dp": float(dp.mean()), "p99_abs_dp": float(np.quantile(dp, 0.99)),
                "max_abs_dp": float(dp.max()), "mean_of_image_max_abs_dp": float(worst.mean()),
                "regions": int(dp.size), "images": int(worst.size)}
