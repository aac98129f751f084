"""Per-layer sensitivity in bounded time.

Measuring one layer group means a QDQ model with that group in float, scored on the
held-out images: one ONNX Runtime session build and run per group. On a ViT or a
ResNet-50 that is hundreds of sessions (the cost that made `calibrate` take 15 minutes).
So the ranking here has two stages:

1. a cheap signal for every group from one session and one pass: the group's *own*
   INT8 error, i.e. its quantized form (Q/DQ on inputs, weights, inside and on its output:
   what keeping it in float removes) fed with exact FP32 activations, against FP32;
2. the exact measurement (keep the group in float, logit MSE against FP32) for the
   groups the cheap signal puts first, most suspicious first, until `budget_s` seconds
   are spent.

Measured groups come first, ordered by their measured logit MSE (lowest = keeping it in
float helps most), then the rest in cheap-signal order. The greedy fallback that uses
the ranking still judges every step on the whole held-out set, so the accuracy budgets
hold whatever the ranking; the budget only decides how well the order is informed.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from fakedet.manifest import OutputSpec
from fakedet.onnx_graph import consumers, producers
from fakedet.runtime.metrics import roc_auc
from fakedet.runtime.scoring import sigmoid

from .dataset import progress_bar
from .feeds import feed
from .ort_run import logits_of, session
from .surgery import keep_float, layer_groups, quantized_groups

log = logging.getLogger("fakedet.calibration")

DEFAULT_BUDGET_S = 30.0


def _local_copies(qdq_model, fp32_model, groups) -> tuple[object, dict[str, tuple[str, str]]]:
    """The FP32 model plus, for each group, a copy of its quantized form (the group's nodes
    in the QDQ model with the Q/DQ on its inputs, inside it and on its output) that reads
    the FP32 model's activations. Returns the model and, per group, (FP32 output tensor,
    its local INT8 counterpart): one run measures every group's own error."""
    import copy

    from onnx import TensorProto, helper

    m = copy.deepcopy(fp32_model)
    g = m.graph
    q = qdq_model.graph
    qnodes = {n.name: n for n in q.node}
    producer = producers(q)
    readers = consumers(q)
    fp32_tensors = {t for n in g.node for t in n.output} | {i.name for i in g.input}
    qinit = {i.name: i for i in q.initializer}
    added_inits: set[str] = set()
    pairs = {}
    for k, grp in enumerate(groups):
        if grp.name not in qnodes:
            continue
        tag = f"__local{k}"
        # a ReLU that ORT's uint8 quantizer folded into its Q is missing here: the Q after
        # the group's last present node clamps at 0 instead (surgery.restore_folded_relus)
        chosen = [qnodes[n] for n in grp.nodes if n in qnodes]
        inside = {t for n in chosen for t in n.output}
        # the Q/DQ feeding the group (activations and weights), and between its nodes
        extra, frontier = [], [t for n in chosen for t in n.input]
        while frontier:
            t = frontier.pop()
            p = producer.get(t)
            if p is None or t in inside or p.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                continue
            extra.append(p)
            inside |= set(p.output)
            frontier += list(p.input)
        out = chosen[-1].output[0]
        tail = [c for c in readers.get(out, []) if c.op_type == "QuantizeLinear"][:1]
        if tail:
            dq = [c for c in readers.get(tail[0].output[0], []) if c.op_type == "DequantizeLinear"][:1]
            tail += dq if dq else []
        if not extra and not tail:
            continue  # nothing quantized about it (shape arithmetic, int64 tensors): no error of its own
        local_out = out
        for n in tail:
            inside |= set(n.output)
            local_out = n.output[0]
        ids = {id(n) for n in (*extra, *chosen, *tail)}
        order = [n for n in q.node if id(n) in ids]  # the QDQ graph's (topological) order
        for n in order:
            c = copy.deepcopy(n)
            c.name = n.name + tag
            for i, t in enumerate(c.input):
                if t in inside:
                    c.input[i] = t + tag
                elif t in qinit:
                    c.input[i] = "q::" + t
                    if t not in added_inits:
                        init = copy.deepcopy(qinit[t])
                        init.name = "q::" + t
                        g.initializer.append(init)
                        added_inits.add(t)
                elif t and t not in fp32_tensors:
                    break  # reads something the FP32 graph does not have: skip this group
            else:
                for i, t in enumerate(c.output):
                    c.output[i] = t + tag
                g.node.append(c)
                continue
            break
        else:
            pairs[grp.name] = (out, local_out + tag)
    have = {o.name for o in g.output}
    for a, b in pairs.values():
        for t in (a, b):
            if t not in have:
                g.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
                have.add(t)
    return m, pairs


def measure_group(qdq_model, fp32_model, group, batches, l32: np.ndarray, labels, output: OutputSpec,
                  exact: bool = False) -> dict:
    """The exact measurement of one layer group: the QDQ model with that group in float,
    scored on `batches`; its logit MSE against FP32 (and its AUC when both classes are there)."""
    l8 = logits_of(keep_float(qdq_model, fp32_model, group.nodes), batches, output, exact)
    out = {"logit_mse": float(np.mean((l8 - l32) ** 2))}
    if labels is not None and np.unique(labels).size == 2:
        out["auc"] = roc_auc(labels, sigmoid(l8))
    return out


def rank_every_group(qdq_model, fp32_model, batches, l32: np.ndarray, labels, output: OutputSpec, progress=True,
                     exact: bool = False) -> list[dict]:
    """The one-by-one reference ranking: every layer group measured exactly (measure_group),
    lowest logit MSE first. rank_layer_groups approximates it in bounded time."""
    rows = [{**grp.to_dict(), **measure_group(qdq_model, fp32_model, grp, batches, l32, labels, output, exact)}
            for grp in progress_bar(layer_groups(fp32_model), progress, desc="layer sensitivity", unit="layer")]
    return sorted(rows, key=lambda r: r["logit_mse"])


def cheap_signal(qdq_model, fp32_model, groups, batches, exact: bool = False) -> dict[str, float]:
    """Each group's own INT8 error: the relative squared error of its quantized form (input,
    weight, internal and output Q/DQ) fed with exact FP32 activations, against FP32. One
    ONNX Runtime session and one pass over `batches`, accumulated batch by batch. `exact`: the
    quantized copies run as the exact quantization arithmetic (ort_run.session)."""
    model, pairs = _local_copies(qdq_model, fp32_model, groups)
    sess = session(model, exact=exact)
    want = sorted({t for pair in pairs.values() for t in pair})
    err = dict.fromkeys(pairs, 0.0)
    ref = dict.fromkeys(pairs, 0.0)
    for b in batches:
        got = dict(zip(want, sess.run(want, feed(sess, b))))
        for grp, (a, q) in pairs.items():
            x = got[a].astype(np.float64)
            err[grp] += float(np.sum((x - got[q]) ** 2))
            ref[grp] += float(np.sum(x * x))
    return {g.name: (err[g.name] / ref[g.name] if ref.get(g.name) else 0.0) if g.name in pairs else 0.0
            for g in groups}


def rank_layer_groups(qdq_model, fp32_model, batches, l32: np.ndarray, labels, output: OutputSpec,
                      progress: bool = True, budget_s: float | None = DEFAULT_BUDGET_S,
                      exact: bool = False) -> tuple[list[dict], dict]:
    """(rows, info): the layer groups ranked for the fallback (module doc), and how the
    ranking was made: groups measured exactly, groups ranked by the cheap signal only,
    seconds spent, and whether the budget cut the exact measurements short. `exact`: INT8 is
    judged as the exact quantization arithmetic (the TensorRT artifact), else ORT's kernels."""
    t0 = time.perf_counter()
    every = layer_groups(fp32_model)
    groups = quantized_groups(qdq_model, every)
    signal = cheap_signal(qdq_model, fp32_model, groups, batches, exact)
    order = sorted(groups, key=lambda g: -signal[g.name])
    cheap_s = time.perf_counter() - t0
    measured, cut = [], False
    for grp in progress_bar(order, progress, desc="layer sensitivity", unit="layer"):
        if budget_s is not None and time.perf_counter() - t0 >= budget_s:
            cut = True
            break
        measured.append({**grp.to_dict(), "own_error": signal[grp.name],
                         **measure_group(qdq_model, fp32_model, grp, batches, l32, labels, output, exact)})
    done = {r["name"] for r in measured}
    rest = [{**g.to_dict(), "own_error": signal[g.name]} for g in order if g.name not in done]
    rows = sorted(measured, key=lambda r: r["logit_mse"]) + rest
    info = {
        "groups": len(groups),
        "groups_already_float": len(every) - len(groups),
        "measured": len(measured),
        "ranked_by_signal_only": len(rest),
        "budget_s": budget_s,
        "budget_cut_short": cut,
        "signal_seconds": round(cheap_s, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if cut:
        log.warning("sensitivity budget of %.0f s reached: %d of %d layer groups measured exactly, the rest ranked "
                    "by their own INT8 error (raise --sensitivity-budget for a fuller ranking)",
                    budget_s, len(measured), len(groups))  # fmt: skip
    return rows, info
