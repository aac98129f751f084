"""`fakedet info`'s provenance lines: each one whole (a summary, never JSON cut mid-number)."""

from __future__ import annotations

import json

WIDTH = 12


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _parity(value: dict) -> str:
    """`onnx-fp32 max |diff| 3.81e-06, agreement 1 ok; onnx-fp16 ...`."""
    parts = []
    for kind, r in value.items():
        if not isinstance(r, dict):
            continue
        verdict = "ok" if r.get("passed") else "FAILED"
        parts.append(f"{kind} max |logit diff| {_number(r.get('max_abs_diff'))} (atol {_number(r.get('atol'))}), "
                     f"agreement {_number(r.get('score_agreement'))} {verdict}")
    return "; ".join(parts) or json.dumps(value)


def _flat(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_number(v) if not isinstance(v, (dict, list)) else json.dumps(v)}"
                         for k, v in value.items())
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def _backbone(value) -> str:
    if str(value) == "none":
        return "none (started from random weights, no pretrained backbone)"
    return str(value)


FIELDS = (("source", _flat), ("checkpoint", _flat), ("backbone_weights", _backbone), ("data_digest", _flat),
          ("metrics", _flat), ("parity", lambda v: _parity(v) if isinstance(v, dict) else _flat(v)))
LABELS = {"backbone_weights": "backbone"}


def provenance_lines(provenance: dict) -> list[str]:
    out = []
    for key, show in FIELDS:
        if key in provenance and provenance[key] is not None:
            out.append(f"{LABELS.get(key, key):<{WIDTH}} {show(provenance[key])}")
    return out
