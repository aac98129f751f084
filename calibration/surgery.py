"""Graph edits on a QDQ model that ONNX Runtime's quantizer does not offer.

ORT's nodes_to_exclude leaves an excluded node reading a fake-quantized input, and leaves
the Q/DQ pair on its output for its neighbours: a layer whose activation range is ruined
stays ruined. Keeping a *layer group* (a weighted op, add or pool plus the pointwise ops
fused into it: ReLU, clip, BN...) in float here means: its nodes read the FP32 model's
float inputs and weights, and its outputs carry no Q/DQ. TensorRT reads that the same way
(a layer without Q/DQ on its inputs runs in float)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from fakedet.onnx_graph import consumers, producers, replace_uses

POINTWISE_FOLLOWERS = {
    "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Tanh", "BatchNormalization", "Identity", "Gelu", "Erf",
}  # fmt: skip
GROUP_HEADS = {
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Concat",
    "MaxPool", "AveragePool", "GlobalAveragePool",
}  # fmt: skip


@dataclass
class LayerGroup:
    name: str  # the head node's name
    op_type: str
    nodes: list[str]

    def to_dict(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "nodes": self.nodes}


def layer_groups(model) -> list[LayerGroup]:
    """Groups of the FP32 graph: each head op with the chain of single-consumer pointwise ops after it."""
    g = model.graph
    cons = consumers(g)
    groups: list[LayerGroup] = []
    for n in g.node:
        if n.op_type not in GROUP_HEADS:
            continue
        nodes, cur = [n.name], n
        while True:
            users = cons.get(cur.output[0], []) if cur.output else []
            if len(users) == 1 and users[0].op_type in POINTWISE_FOLLOWERS and len(cur.output) == 1:
                cur = users[0]
                nodes.append(cur.name)
            else:
                break
        groups.append(LayerGroup(n.name, n.op_type, nodes))
    return groups


def quantized_groups(qdq_model, groups: list[LayerGroup]) -> list[LayerGroup]:
    """The groups with some Q/DQ to remove in `qdq_model` (a node reads a DequantizeLinear's
    output or a QuantizeLinear reads a node's output): keeping any other in float changes
    nothing (a float text tower, integer shape arithmetic)."""
    g = qdq_model.graph
    prod, cons = producers(g), consumers(g)
    nodes = {n.name: n for n in g.node}

    def touched(name: str) -> bool:
        n = nodes.get(name)
        return n is not None and (
            any(prod.get(t) is not None and prod[t].op_type == "DequantizeLinear" for t in n.input)
            or any(c.op_type == "QuantizeLinear" for t in n.output for c in cons.get(t, []))
        )

    return [grp for grp in groups if any(touched(n) for n in grp.nodes)]


def remove_qdq(graph, q) -> None:
    """Drop a QuantizeLinear and its DequantizeLinear consumers; their users read the float tensor."""
    src = q.input[0]
    outputs = {o.name for o in graph.output}
    cons = consumers(graph)
    dqs = [d for d in cons.get(q.output[0], []) if d.op_type == "DequantizeLinear"]
    if len(dqs) != len(cons.get(q.output[0], [])):
        return  # the quantized tensor feeds something else: leave it
    prod = producers(graph)
    for d in dqs:
        out = d.output[0]
        if out in outputs and src in prod:
            # keep the graph output's name: the float producer writes it directly
            p = prod[src]
            for i, t in enumerate(p.output):
                if t == src:
                    p.output[i] = out
            replace_uses(graph, src, out)
            src = out
        else:
            replace_uses(graph, out, src)
    for node in [q, *dqs]:
        graph.node.remove(node)


def float_graph_outputs(model) -> None:
    """No Q/DQ on the model's outputs: a logit rounded to 8 bits squashes confidences."""
    g = model.graph
    prod = producers(g)
    for o in [o.name for o in g.output]:
        d = prod.get(o)
        if d is not None and d.op_type == "DequantizeLinear":
            q = producers(g).get(d.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                remove_qdq(g, q)


def _prune(model) -> None:
    """Remove Q/DQ nodes whose outputs nobody reads, then unused initializers."""
    g = model.graph
    outputs = {o.name for o in g.output}
    changed = True
    while changed:
        changed = False
        used = {t for n in g.node for t in n.input} | outputs
        for n in list(g.node):
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in n.output):
                g.node.remove(n)
                changed = True
    used = {t for n in g.node for t in n.input} | outputs
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def strip_qdq_on(model, tensors, fp32_model=None) -> None:
    """No Q/DQ on `tensors` (ones calibration found no range for): their readers take them in
    float (with `fp32_model`, a ReLU that a removed quantizer stood in for comes back)."""
    tensors = set(tensors)
    for q in [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in tensors]:
        remove_qdq(model.graph, q)
    if fp32_model is not None:
        restore_folded_relus(model.graph, fp32_model)
    _prune(model)


def keep_float(qdq_model, fp32_model, node_names) -> object:
    """A copy of `qdq_model` with the given FP32 nodes computing in float."""
    names = set(node_names)
    m = copy.deepcopy(qdq_model)
    g = m.graph
    _read_float_inputs(g, fp32_model, names)
    # outputs of the float nodes carry no Q/DQ
    for n in [n for n in g.node if n.name in names]:
        for t in n.output:
            for c in list(consumers(g).get(t, [])):
                if c.op_type == "QuantizeLinear":
                    remove_qdq(g, c)
    restore_folded_relus(g, fp32_model)
    _prune(m)
    return m


def read_float_inputs(model, fp32_model, node_names) -> None:
    """In place: the given nodes read the FP32 model's float inputs and weights (no
    DequantizeLinear before them; ORT's nodes_to_exclude leaves those on inputs and weights
    shared with quantized nodes). Q/DQ on their outputs stay for readers that want them."""
    _read_float_inputs(model.graph, fp32_model, set(node_names))
    restore_folded_relus(model.graph, fp32_model)
    _prune(model)


def restore_folded_relus(g, fp32_model) -> None:
    """Put back the ReLUs ORT's quantizer folded into a quantizer where something now reads
    their output in float.

    With uint8 activations (zero-point 0) ORT drops a ReLU and lets its producer write the
    ReLU's output name: the QuantizeLinear's clamp at 0 does the ReLU. A node that reads that
    tensor without the Q/DQ (a group kept in float, or the readers of a stripped Q/DQ) would
    get the pre-ReLU values, negatives included. Here the producer writes the ReLU's input
    name again, QuantizeLinear readers keep reading it (their clamp is unchanged, so ORT's
    QLinear fusion is too), and the FP32 ReLU gives every other reader its output."""
    fp32_tensors = {t for n in fp32_model.graph.node for t in n.output}
    here = {n.name for n in g.node}
    prod = producers(g)
    cons = consumers(g)
    outputs = {o.name for o in g.output}
    for relu in fp32_model.graph.node:
        if relu.op_type != "Relu" or relu.name in here:
            continue
        pre, post = relu.input[0], relu.output[0]
        p = prod.get(post)
        if p is None or pre in prod or pre not in fp32_tensors:
            continue
        float_readers = [c for c in cons.get(post, []) if c.op_type != "QuantizeLinear"]
        if not float_readers and post not in outputs:
            continue
        for i, t in enumerate(p.output):
            if t == post:
                p.output[i] = pre
        for c in cons.get(post, []):
            if c.op_type == "QuantizeLinear":
                for i, t in enumerate(c.input):
                    if t == post:
                        c.input[i] = pre
        at = list(g.node).index(p) + 1
        g.node.insert(at, copy.deepcopy(relu))
        prod = producers(g)
        cons = consumers(g)


def _read_float_inputs(g, fp32_model, names: set) -> None:
    fp32_nodes = {n.name: n for n in fp32_model.graph.node}
    fp32_inits = {i.name: i for i in fp32_model.graph.initializer}
    have_inits = {i.name for i in g.initializer}
    for n in g.node:
        if n.name not in names:
            continue
        f = fp32_nodes[n.name]
        for i, t in enumerate(f.input):
            if t in fp32_inits:
                if t not in have_inits:
                    copy_name = f"{t}__float"
                    if copy_name not in have_inits:
                        init = copy.deepcopy(fp32_inits[t])
                        init.name = copy_name
                        g.initializer.append(init)
                        have_inits.add(copy_name)
                    t = copy_name
            n.input[i] = t


def unshare_qdq_params(model) -> None:
    """Give each QuantizeLinear of a tensor read by several Qs its own scale and zero-point
    initializers, so ORT's common-subexpression elimination cannot merge the dedicated
    Q/DQ pairs back into one Q feeding several DQs (a shape its QDQ fusion skips)."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    for t, users in consumers(g).items():
        qs = [u for u in users if u.op_type == "QuantizeLinear"]
        for k, q in enumerate(qs[1:], 1):
            for pos in (1, 2):
                if pos >= len(q.input) or q.input[pos] not in inits:
                    continue
                name = f"{q.input[pos]}__q{k}"
                if name not in inits:
                    dup = copy.deepcopy(inits[q.input[pos]])
                    dup.name = name
                    g.initializer.append(dup)
                    inits[name] = dup
                q.input[pos] = name
