"""The text tower of a caption-aware graph (image + caption token ids -> logit), found by
reachability rather than by the exporter's node names: a node belongs to the text tower
when every graph input it depends on is the text input. The first nodes that also depend
on the image (the head's concat and after) are not part of it.

`--text-tower fp32` (the default) keeps these nodes in float in both INT8 artifacts, so the
caption's features are FP32's exactly: the text tower runs once per caption, is small next
to a large image tower (8% of ViT-L/14's multiply-adds), and its path from the token ids
(embedding gather, argmax of the end-of-text token, gather of its features) is integer
indexing. Where it is a large share (40% of ViT-B/32's) `int8` pays on CPUs
(benchmarks/calibration_text_tower.py)."""

from __future__ import annotations

from fakedet.onnx_graph import graph_inputs, producers

TEXT_TOWER_CHOICES = ("fp32", "int8")
DEFAULT_TEXT_TOWER = "fp32"


def text_tower_nodes(model, text_input: str) -> list[str]:
    """Names of the nodes (graph order) whose inputs all come, through any path, from the
    graph input `text_input` alone (constants and initializers aside). The graph's nodes
    must be named (fakedet.onnx_graph.name_nodes) and topologically sorted (ONNX requires it)."""
    g = model.graph
    inputs = {i.name for i in graph_inputs(g)}
    if text_input not in inputs:
        raise ValueError(f"the graph has no input '{text_input}' (its inputs: {sorted(inputs)})")
    depends: dict[str, frozenset] = {name: frozenset([name]) for name in inputs}
    tower = []
    for n in g.node:
        deps = frozenset().union(*(depends.get(t, frozenset()) for t in n.input if t))
        for t in n.output:
            if t:
                depends[t] = deps
        if deps == {text_input}:
            tower.append(n.name)
    return tower


def quantized_nodes(qdq_model, names) -> list[str]:
    """Of the nodes `names`, those that compute on quantized values in the QDQ model (they
    read a DequantizeLinear's output: an activation or a weight)."""
    names = set(names)
    prod = producers(qdq_model.graph)
    return [n.name for n in qdq_model.graph.node if n.name in names
            and any((p := prod.get(t)) is not None and p.op_type == "DequantizeLinear" for t in n.input if t)]
