"""The JSON report of `fakedet bench`: its schema (version REPORT_SCHEMA_VERSION) and a
small validator for it (no jsonschema dependency)."""

from __future__ import annotations

from ..selection import PRECISIONS
from .trtexec import TRTEXEC_ENTRY_SCHEMA

REPORT_SCHEMA_VERSION = 1
STAGES = ("preprocess", "h2d", "compute", "d2h", "end_to_end")

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_SPREAD = {
    "type": "object",
    "required": ["median", "iqr", "min", "max", "repeats"],
    "properties": {"median": _NUM, "iqr": _NUM, "min": _NUM, "max": _NUM, "repeats": {"type": "array", "items": _NUM}},
}
REPORT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fakedet bench report",
    "type": "object",
    "required": ["schema", "schema_version", "created", "package", "machine", "settings", "results", "skipped"],
    "properties": {
        "schema": {"enum": ["fakedet.bench"]},
        "schema_version": {"enum": [REPORT_SCHEMA_VERSION]},
        "created": {"type": "string"},
        "package": {"type": "object", "required": ["name", "source"]},
        "machine": {"type": "object", "required": ["hostname", "platform", "cpu_count", "python"]},
        "settings": {
            "type": "object",
            "required": ["backends", "precisions", "batches", "warmup_s", "duration_s", "repeats", "threads", "e2e_dir"],
            "properties": {
                # Caption-aware packages: BPE tokens of the synthetic caption fed beside each image
                # (null for an image-only one). Optional: reports written before it still validate.
                "caption_tokens": {"type": ["integer", "null"], "minimum": 1},
            },
        },
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["backend", "precision", "batch", "artifact", "device", "reason", "iterations",
                             "throughput_img_s", "latency_ms", "latency_p50_ms_repeats", "split_ms", "notes"],
                "properties": {
                    "backend": {"type": "string"},
                    "precision": {"enum": list(PRECISIONS)},
                    "batch": {"type": "integer", "minimum": 1},
                    "artifact": {"type": "string"},
                    "device": {"type": "string"},
                    "reason": {"type": "string"},
                    "iterations": {"type": "integer", "minimum": 1},
                    "throughput_img_s": _SPREAD,
                    "latency_p50_ms_repeats": _SPREAD,
                    "latency_ms": {
                        "type": "object",
                        "required": ["p50", "p90", "p99", "max", "mean", "count"],
                        "properties": {"p50": _NUM, "p90": _NUM, "p99": _NUM, "max": _NUM, "mean": _NUM,
                                       "count": {"type": "integer", "minimum": 1}},
                    },
                    "split_ms": {
                        "type": "object",
                        "required": list(STAGES),
                        "properties": {s: _NUM_OR_NULL for s in STAGES},
                    },
                    "notes": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "trtexec": {"type": "array", "items": TRTEXEC_ENTRY_SCHEMA},  # only with --trtexec
        "skipped": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["backend", "precision", "batch", "reason"],
                "properties": {"backend": {"type": "string"}, "precision": {"type": "string"},
                               "batch": {"type": ["integer", "null"]}, "reason": {"type": "string"}},
            },
        },
    },
}


def validate_report(report, schema: dict = REPORT_SCHEMA, where: str = "report") -> None:
    """Check `report` against the (JSON-Schema subset) schema; ValueError names the first problem."""
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        ok = {
            "object": isinstance(report, dict),
            "array": isinstance(report, list),
            "string": isinstance(report, str),
            "integer": isinstance(report, int) and not isinstance(report, bool),
            "number": isinstance(report, (int, float)) and not isinstance(report, bool),
            "null": report is None,
        }
        if not any(ok[t] for t in allowed):
            raise ValueError(f"{where}: expected {' or '.join(allowed)}, got {type(report).__name__}")
    if "enum" in schema and report not in schema["enum"]:
        raise ValueError(f"{where}: {report!r} not one of {schema['enum']}")
    if "minimum" in schema and isinstance(report, (int, float)) and report < schema["minimum"]:
        raise ValueError(f"{where}: {report} < {schema['minimum']}")
    if isinstance(report, dict):
        for key in schema.get("required", []):
            if key not in report:
                raise ValueError(f"{where}: missing '{key}'")
        for key, sub in schema.get("properties", {}).items():
            if key in report:
                validate_report(report[key], sub, f"{where}.{key}")
    if isinstance(report, list) and "items" in schema:
        for i, item in enumerate(report):
            validate_report(item, schema["items"], f"{where}[{i}]")
