"""Reading and editing an ONNX graph's wiring, for every stage that edits graphs
(export's FP16 clean-ups, calibration's Q/DQ surgery, `package`'s input checks).

The functions take ONNX protobuf objects but never import onnx: the caller already has
it, and the foundation stays installable without it."""

from __future__ import annotations


def producers(graph) -> dict:
    """Tensor name -> the node that writes it."""
    return {t: n for n in graph.node for t in n.output if t}


def consumers(graph) -> dict[str, list]:
    """Tensor name -> the nodes that read it, in graph order."""
    out: dict[str, list] = {}
    for n in graph.node:
        for t in n.input:
            if t:
                out.setdefault(t, []).append(n)
    return out


def replace_uses(graph, old: str, new: str) -> None:
    """Every node that reads tensor `old` reads `new` instead."""
    for n in graph.node:
        for i, t in enumerate(n.input):
            if t == old:
                n.input[i] = new


def name_nodes(model) -> None:
    """Give every node a unique name (quantization and sensitivity refer to nodes by name)."""
    seen = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            base = f"{n.op_type}_{i}"
            n.name = base if base not in seen else f"{base}_{len(seen)}"
        seen.add(n.name)


def graph_inputs(graph) -> list:
    """The graph's real inputs (value infos), without initializers listed as inputs."""
    init_names = {i.name for i in graph.initializer}
    return [i for i in graph.input if i.name not in init_names]


def value_dims(value_info, unknown=None) -> list:
    """A tensor's dims: ints where fixed, the symbolic name where named, else `unknown`."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or unknown)
            for d in value_info.type.tensor_type.shape.dim]
