"""The files an ONNX model reads besides itself (external-data tensors), found by walking
its protobuf wire format: the runtime has no `onnx` library, and ONNX Runtime would read
those files unasked. A package must list each with its sha256 (see ModelPackage)."""

from __future__ import annotations

import mmap
import os

from .errors import PackageError

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
MAX_NESTING = 64


class _Malformed(Exception):
    pass


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _skip_group(buf, pos: int, end: int, field: int) -> int:
    open_groups = [field]
    while open_groups:
        key, pos = _varint(buf, pos, end)
        f, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            pos += n
        elif wire == 5:
            pos += 4
        elif wire == 3:
            if len(open_groups) > MAX_NESTING:
                raise _Malformed("nested too deeply")
            open_groups.append(f)
        elif wire == 4 and open_groups[-1] == f:
            open_groups.pop()
        else:
            raise _Malformed(f"wire type {wire}")
        if pos > end:
            raise _Malformed("group runs past its message")
    return pos


def _fields(buf, start: int, end: int):
    """(field number, wire type, value or (start, end) of a length-delimited field)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value
        elif wire == 1:
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise _Malformed("field runs past its message")
            yield field, wire, (pos, pos + n)
            pos += n
        elif wire == 5:
            pos += 4
        elif wire == 3:  # a (deprecated) group: skip to its end marker
            pos = _skip_group(buf, pos, end, field)
        else:
            raise _Malformed(f"wire type {wire}")
    if pos != end:
        raise _Malformed("message runs past its end")


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
                        raise _Malformed("nested too deeply")
                    if kind == _ENTRY:
                        entry = {f: bytes(buf[v[0]:v[1]]) for f, w, v in _fields(buf, start, end) if w == 2}
                        if entry.get(1) == b"location" and 2 in entry:
                            loc = entry[2].decode("utf-8", "replace")
                            if loc not in found:
                                found.append(loc)
                        continue
                    children = _CHILDREN.get(kind, {})
                    for field, wire, value in _fields(buf, start, end):
                        if wire == 2 and field in children:
                            stack.append((children[field], value[0], value[1], depth + 1))
    except _Malformed as e:
        raise PackageError(path, f"not a loadable ONNX model ({e})") from None
    return found
