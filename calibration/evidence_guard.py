"""The guard's view of the evidence map: how far the INT8 map moves from the FP32 one,
per region, as |delta P(fake)| (the map's logits through a sigmoid), on the guard's images."""

from __future__ import annotations

import numpy as np

from fakedet.runtime.scoring import sigmoid

from .feeds import feed
from .ort_run import session


def _has(sess, name: str) -> bool:
    return name in {o.name for o in sess.get_outputs()}


def evidence_delta(fp32_model, int8_model, batches, name: str = "evidence", exact: bool = False) -> dict | None:
    """{mean, p99, max |delta P| over all regions of all images, mean of the per-image max,
    regions, images}; None when either model lacks the output."""
    s32, s8 = session(fp32_model), session(int8_model, exact=exact)
    if not (_has(s32, name) and _has(s8, name)):
        return None
    deltas, worst = [], []
    for b in batches:
        m32 = s32.run([name], feed(s32, b))[0]
        m8 = s8.run([name], feed(s8, b))[0]
        dp = np.abs(sigmoid(m8) - sigmoid(m32)).reshape(len(m32), -1)
        deltas.append(dp.reshape(-1))
        worst.append(dp.max(axis=1))
    if not deltas:
        return None
    dp, worst = np.concatenate(deltas), np.concatenate(worst)
    return {"mean_abs_dp": float(dp.mean()), "p99_abs_dp": float(np.quantile(dp, 0.99)), "max_abs_dp": float(dp.max()),
            "mean_of_image_max_abs_dp": float(worst.mean()), "regions": int(dp.size), "images": int(worst.size)}
