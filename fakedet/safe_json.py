"""JSON from files a stranger may have written (manifests, input specs): size-capped,
regular files only, no NaN/Infinity literals, nesting depth bounded, one-line errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .errors import ManifestError

MAX_JSON_BYTES = 4 << 20  # a manifest with a full training config is ~10 KB
MAX_JSON_DEPTH = 64


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def depth(obj) -> int:
    """Nesting depth of parsed JSON, computed without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                return d
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_json(text: str, where: str):
    if len(text) > MAX_JSON_BYTES:
        raise ManifestError(f"{where}: {len(text)} characters, more than the {MAX_JSON_BYTES} a manifest may have")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except ValueError as e:
        raise ManifestError(f"{where}: not valid JSON ({e})") from None
    except RecursionError:
        raise ManifestError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if depth(data) > MAX_JSON_DEPTH:
        raise ManifestError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def read_text(path: str | os.PathLike, limit: int = MAX_JSON_BYTES) -> str:
    """A small UTF-8 text file; FIFOs, devices and oversized files are refused before reading."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    if not stat.S_ISREG(st.st_mode):
        raise ManifestError(f"{path}: not a regular file")
    if st.st_size > limit:
        raise ManifestError(f"{path}: {st.st_size} bytes, more than the {limit} a manifest or spec file may have")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ManifestError(f"{path}: more than the {limit} bytes a manifest or spec file may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None


def read_json_file(path: str | os.PathLike, where: str | None = None):
    return parse_json(read_text(path), where or str(path))
