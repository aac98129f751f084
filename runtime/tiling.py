"""Exact tiled inference: when a fully convolutional model's evidence map can be computed
tile by tile with the same result as on the whole image, and how to cut the tiles.

Each value of the evidence map reads a window of the input. Walking the graph from the
image input to the evidence output gives, per spatial axis, the total stride S (map cell
j is anchored at input pixel S*j) and how far the window reaches before and after that
anchor (`before`, `after`: the receptive field, asymmetric pads included). Then a tile
whose origin is a multiple of S, padded by a halo >= the reach on each side, computes the
cells of its core exactly as the whole image does: every pixel they read is inside the
tile, and the convolutions' zero padding falls only where the whole image has it too
(the image's own borders) or where no core cell looks.

Any op on the way that is not a sliding window (Conv, pooling with a fixed kernel) or
elementwise (activations, BatchNorm, Add with a same-stride branch, Q/DQ, Cast; a Concat
of channels joins branches the same way) makes the
model not tileable (Resize, global pooling, Reshape, MatMul, Transpose ...): the caller
scores the whole image instead."""

from __future__ import annotations

from dataclasses import dataclass

from .onnx_wire import Graph, Node

WINDOWED = {"Conv", "MaxPool", "AveragePool", "LpPool", "ConvInteger"}
ELEMENTWISE = {
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
    "Softsign", "Gelu", "Mish", "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Pow", "Clip", "Identity",
    "Cast", "BatchNormalization", "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Where",
    "QuantizeLinear", "DequantizeLinear", "Dropout",
}


@dataclass(frozen=True)
class Reach:
    """Per spatial axis (height, width): total stride, reach before and after the anchor."""
    stride: tuple[int, int]
    before: tuple[int, int]
    after: tuple[int, int]

    def halo(self, axis: int) -> int:
        """The padding a tile needs on each side along `axis`: the reach, rounded up to
        a multiple of the stride (tile origins stay on the stride grid)."""
        s = self.stride[axis]
        r = max(self.before[axis], self.after[axis], 0)
        return -(-r // s) * s


@dataclass
class Analysis:
    reach: Reach | None
    why_not: str | None = None  # why the model is not tileable (None when it is)


def _window(node: Node, graph: Graph, r: Reach) -> Reach | str:
    a = node.attrs
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return f"{node.op_type} with auto_pad={a['auto_pad']}"
    kernel = a.get("kernel_shape")
    if kernel is None and node.op_type in ("Conv", "ConvInteger") and len(node.inputs) > 1:
        dims = graph.initializers.get(node.inputs[1])
        kernel = dims[2:] if dims and len(dims) == 4 else None
    if kernel is None or len(kernel) != 2:
        return f"{node.op_type} without a known 2-D kernel"
    strides = a.get("strides", [1, 1])
    dilations = a.get("dilations", [1, 1])
    pads = [0, 0, 0, 0] if a.get("auto_pad") == "VALID" else a.get("pads", [0, 0, 0, 0])
    stride, before, after = [], [], []
    for ax in (0, 1):
        S, k, d, s, p = r.stride[ax], kernel[ax], dilations[ax], strides[ax], pads[ax]
        # output i reads inputs s*i - p + d*t (t = 0..k-1); input q reads [S*q - before, S*q + after]
        before.append(r.before[ax] + S * p)
        after.append(r.after[ax] + S * (d * (k - 1) - p))
        stride.append(S * s)
    return Reach(tuple(stride), tuple(before), tuple(after))


def _merge(reaches: list[Reach], op: str) -> Reach | str:
    if len({r.stride for r in reaches}) != 1:
        return f"{op} joins branches of different strides"
    return Reach(reaches[0].stride, tuple(max(r.before[a] for r in reaches) for a in (0, 1)),
                 tuple(max(r.after[a] for r in reaches) for a in (0, 1)))


def _between(graph: Graph, source: str, target: str) -> set[int]:
    """Indices of the nodes on some path from tensor `source` to tensor `target`."""
    reached, after = {source}, set()
    for i, n in enumerate(graph.nodes):
        if any(t in reached for t in n.inputs):
            after.add(i)
            reached.update(n.outputs)
    needed, before = {target}, set()
    for i in range(len(graph.nodes) - 1, -1, -1):
        n = graph.nodes[i]
        if any(t in needed for t in n.outputs):
            before.add(i)
            needed.update(t for t in n.inputs if t)
    return after & before


def analyse(graph: Graph, image: str, evidence: str) -> Analysis:
    """The reach of `evidence` over `image` (NCHW), or why it cannot be tiled."""
    if image not in graph.inputs:
        return Analysis(None, f"the graph has no input '{image}'")
    if evidence not in graph.outputs:
        return Analysis(None, f"the graph has no output '{evidence}'")
    path = _between(graph, image, evidence)
    if not path:
        return Analysis(None, f"'{evidence}' does not depend on '{image}'")
    known = {image: Reach((1, 1), (0, 0), (0, 0))}
    for i in sorted(path):  # ONNX nodes are in topological order
        n = graph.nodes[i]
        ins = [t for t in n.inputs if t in known]
        if n.op_type in WINDOWED:
            if n.inputs[:1] != ins:
                return Analysis(None, f"{n.op_type} reads the image through its weights")
            r = _window(n, graph, known[ins[0]])
        elif n.op_type in ELEMENTWISE or (n.op_type == "Concat" and n.attrs.get("axis") in (1, -3)):
            r = _merge([known[t] for t in ins], n.op_type)  # a channel Concat joins like an Add
        else:
            return Analysis(None, f"{n.op_type} on the way from '{image}' to '{evidence}'")
        if isinstance(r, str):
            return Analysis(None, r)
        known.update({t: r for t in n.outputs[:1] if t})
    reach = known.get(evidence)
    return Analysis(reach, None if reach is not None else f"'{evidence}' is not reached from '{image}'")


# ---- the tile plan -----------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """One tile along one axis: it reads [start, end) and keeps the map cells of its core."""
    start: int
    end: int
    core_start: int
    last: bool  # the last tile keeps every cell to the end of its map


def spans(length: int, core: int, halo: int, stride: int) -> list[Span]:
    """Cores of `core` pixels (a multiple of `stride`) cut `length`; each tile reaches `halo`
    past its core on both sides (within the image)."""
    core = max(stride, core // stride * stride)
    out, c = [], 0
    while c < length:
        end = min(length, c + core)
        last = end >= length
        out.append(Span(max(0, c - halo), length if last else min(length, end + halo), c, last))
        c = end
    return out


def core_cells(span: Span, next_span: Span | None, stride: int, cells_in_tile: int) -> tuple[int, int]:
    """[first, end) of the tile's map cells that belong to its core, in the tile's own map."""
    first = (span.core_start - span.start) // stride
    if span.last or next_span is None:
        return first, cells_in_tile
    return first, (next_span.core_start - span.start) // stride


def tile_count(height: int, width: int, core: tuple[int, int], reach: Reach) -> int:
    return (len(spans(height, core[0], reach.halo(0), reach.stride[0]))
            * len(spans(width, core[1], reach.halo(1), reach.stride[1])))
