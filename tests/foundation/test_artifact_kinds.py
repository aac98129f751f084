"""The artifact-kind table (fakedet/artifact_kinds.py) is the one place a kind's facts live."""

from __future__ import annotations

import ast

from test_layering import _docstring_nodes, _sources

from fakedet import artifact_kinds as ak
from fakedet.manifest import Artifact


def test_every_kind_in_the_table_is_a_valid_manifest_kind_and_the_derived_views_agree():
    for name in ak.KINDS:
        Artifact(file="x", kind=name, sha256="0" * 64, size=1).validate("test")
    assert ak.ONNX_KINDS == ("onnx-fp32", "onnx-fp16", "onnx-int8-qdq")  # fp32 first: Triton's preference
    assert {ak.onnx_kind(p): p for p in ("fp32", "fp16", "int8")} == ak.PRECISION_OF_KIND
    assert ak.default_file(ak.ONNX_FP32) == "model.onnx" and ak.default_file(ak.ONNX_FP16) == "model.fp16.onnx"


def test_no_kind_name_is_spelt_out_outside_the_table():
    """A hyphenated kind name as a string literal anywhere in the stages (docstrings aside)
    is a second copy of the table; code names the table's constant instead."""
    names = {k for k in ak.KINDS if "-" in k}
    found = []
    for path in _sources():
        if path.name == "artifact_kinds.py":
            continue
        tree = ast.parse(path.read_text())
        docs = _docstring_nodes(tree)
        found += [f"{path.name}:{n.lineno} {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in names and id(n) not in docs]
    assert not found, "\n".join(found)
