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

import logging
from dataclasses import dataclass

from fakedet.onnx_graph import consumers, graph_inputs, producers

TEXT_TOWER_CHOICES = ("fp32", "int8")
DEFAULT_TEXT_TOWER = "fp32"

log = logging.getLogger("fakedet.calibration")


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


TEXT_TOWER_WHY = {
    "fp32": "kept in float (--text-tower fp32): the caption's features are FP32's exactly; it runs once per caption, "
            "is small next to a large image tower, and its path from the token ids is integer indexing",
    "int8": "quantized like the image tower and the head (--text-tower int8)",
}


@dataclass
class TextTower:
    """A caption-aware graph's text-tower nodes and whether they are quantized."""

    precision: str
    nodes: list[str]

    @property
    def float_nodes(self) -> list[str]:
        return self.nodes if self.precision == "fp32" else []

    def float_tensors(self, named) -> set[str]:
        """Tensors a float text tower computes for itself (its output, the text features the
        INT8 head reads, is not one of them)."""
        inside = set(self.float_nodes)
        readers = consumers(named.graph)
        return {t for n in named.graph.node if n.name in inside for t in n.output
                if t and all(r.name in inside for r in readers.get(t, []))}

    def record(self, model) -> dict:
        """What the report and the artifact attrs say about it in the final QDQ `model`."""
        q = len(quantized_nodes(model, self.nodes))
        return {"precision": self.precision, "nodes": len(self.nodes), "quantized_nodes": q,
                "float_nodes": len(self.nodes) - q}  # fmt: skip


def text_tower_of(named, manifest, choice: str) -> TextTower | None:
    """The text tower of a caption-aware graph (None for an image-only one)."""
    if manifest.text_input is None:
        if choice != DEFAULT_TEXT_TOWER:
            log.warning("--text-tower %s: this package reads images only; there is no text tower", choice)
        return None
    return TextTower(choice, text_tower_nodes(named, manifest.text_input.name))
