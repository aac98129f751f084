"""The files an ONNX model reads besides itself (external-data tensors), found by walking
its protobuf wire format: the runtime has no `onnx` library, and ONNX Runtime would read
those files unasked. A package must list each with its sha256 (see ModelPackage)."""

from __future__ import annotations

import mmap
import os

from .errors import PackageError
from .protobuf_wire import MAX_NESTING, Malformed, fields

# field numbers from onnx.proto: message -> {field: message type of that (embedded) field}
_MODEL, _GRAPH, _NODE, _ATTR, _TENSOR, _SPARSE, _FUNC, _ENTRY = range(8)
_CHILDREN = {
    _MODEL: {7: _GRAPH, 25: _FUNC},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTR},
    _ATTR: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _FUNC: {7: _NODE},
    _TENSOR: {13: _ENTRY},
}


def external_files(path: str | os.PathLike) -> list[str]:
    """Every external-data `location` the model at `path` names, in order of first use."""
    found: list[str] = []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return found
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                stack = [(_MODEL, 0, size, 0)]
                while stack:
                    kind, start, end, depth = stack.pop()
                    if depth > MAX_NESTING:
                        raise Malformed("nested too deeply")
                    if kind == _ENTRY:
                        entry = {f: bytes(buf[v[0]:v[1]]) for f, w, v in fields(buf, start, end) if w == 2}
                        if entry.get(1) == b"location" and 2 in entry:
                            loc = entry[2].decode("utf-8", "replace")
                            if loc not in found:
                                found.append(loc)
                        continue
                    children = _CHILDREN.get(kind, {})
                    for field, wire, value in fields(buf, start, end):
                        if wire == 2 and field in children:
                            stack.append((children[field], value[0], value[1], depth + 1))
    except Malformed as e:
        raise PackageError(path, f"not a loadable ONNX model ({e})") from None
    return found
