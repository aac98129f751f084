"""The wiring of an ONNX graph (nodes, their inputs, outputs and integer attributes), read
straight from the protobuf bytes: the runtime must not need the `onnx` package.

Only what a graph walk needs is decoded (ModelProto.graph -> GraphProto.node, input,
output, initializer names and dims; NodeProto.op_type, input, output, attribute). Tensor
payloads are skipped, not read: the file is memory-mapped, so a 100 MB model costs the
pages of its headers only."""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path

from fakedet.errors import FakedetError
from fakedet.protobuf_wire import Malformed, varint
from fakedet.protobuf_wire import fields as wire_fields

# field numbers, from onnx.proto
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTR_NAME, _ATTR_I, _ATTR_S, _ATTR_INTS = 1, 3, 4, 8
_TENSOR_DIMS, _TENSOR_NAME = 1, 8
_VALUE_INFO_NAME = 1


@dataclass
class Node:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)  # name -> int, list[int] or str (other kinds are left out)


@dataclass
class Graph:
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    initializers: dict[str, list[int]]  # name -> dims


class WireError(FakedetError):
    pass


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def fields(buf):
    """(field number, wire type, value) of each field of one message: an int for varints
    and fixed-size fields, a memoryview for length-delimited ones."""
    for number, wire, value in wire_fields(buf):
        yield number, wire, (buf[value[0]:value[1]] if wire == 2 else value)


def _ints(wire: int, value) -> list[int]:
    if wire == 0:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):  # packed
        v, pos = varint(value, pos, len(value))
        out.append(_signed(v))
    return out


def _text(value) -> str:
    return bytes(value).decode("utf-8", "replace")


def _attribute(buf) -> tuple[str, object]:
    name, value, ints = "", None, []
    for number, wire, v in fields(buf):
        if number == _ATTR_NAME:
            name = _text(v)
        elif number == _ATTR_I and wire == 0:
            value = _signed(v)
        elif number == _ATTR_S and wire == 2:
            value = _text(v)
        elif number == _ATTR_INTS:
            ints.extend(_ints(wire, v))
    return name, (ints if ints else value)


def _node(buf) -> Node:
    node = Node("", [], [])
    for number, wire, v in fields(buf):
        if number == _NODE_INPUT:
            node.inputs.append(_text(v))
        elif number == _NODE_OUTPUT:
            node.outputs.append(_text(v))
        elif number == _NODE_OP_TYPE:
            node.op_type = _text(v)
        elif number == _NODE_ATTRIBUTE:
            name, value = _attribute(v)
            if value is not None:
                node.attrs[name] = value
    return node


def _name_of(buf, number_of_name: int) -> str:
    return next((_text(v) for n, w, v in fields(buf) if n == number_of_name and w == 2), "")


def _tensor(buf) -> tuple[str, list[int]]:
    name, dims = "", []
    for number, wire, v in fields(buf):
        if number == _TENSOR_NAME:
            name = _text(v)
        elif number == _TENSOR_DIMS:
            dims.extend(_ints(wire, v))
    return name, dims


def parse_graph(model_bytes) -> Graph:
    graph = next((v for n, w, v in fields(model_bytes) if n == _MODEL_GRAPH and w == 2), None)
    if graph is None:
        raise WireError("no graph in the model")
    g = Graph([], [], [], {})
    for number, wire, v in fields(graph):
        if wire != 2:
            continue
        if number == _GRAPH_NODE:
            g.nodes.append(_node(v))
        elif number == _GRAPH_INPUT:
            g.inputs.append(_name_of(v, _VALUE_INFO_NAME))
        elif number == _GRAPH_OUTPUT:
            g.outputs.append(_name_of(v, _VALUE_INFO_NAME))
        elif number == _GRAPH_INITIALIZER:
            name, dims = _tensor(v)
            g.initializers[name] = dims
    return g


def read_graph(path: str | Path) -> Graph:
    """The wiring of the ONNX file at `path` (WireError if it is not a readable model)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        try:
            return parse_graph(view)
        except Malformed as e:
            raise WireError(str(e)) from None
        finally:
            view.release()
