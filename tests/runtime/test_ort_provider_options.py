"""The provider options fakedet hands ONNX Runtime's GPU providers, checked against the keys
the real provider libraries know (onnxruntime-gpu 1.31.1, read by
scripts/ort_provider_options.py). ORT rejects an unknown key when it creates the session,
which only happens on a GPU machine: this finds a misspelled key here instead."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from fakedet.runtime.backends.onnxruntime_backend import PROVIDERS, provider_options

DATA = Path(__file__).parents[1] / "data" / "ort_providers"
RECORDS = [json.loads(gzip.decompress(p.read_bytes())) for p in sorted(DATA.glob("*.json.gz"))]
OPTION_SETS = [
    {},
    {"device_id": 1, "fp16": True},
    {"int8": True, "cache_dir": "/var/cache/fakedet/trt", "workspace_bytes": 1 << 30},
]


def known(record: dict, provider: str, key: str) -> bool:
    names = record["providers"][provider]
    # a key may survive only as the tail of a longer string (linker string merging)
    return key in names or any(n.endswith(key) for n in names)


def emitted(provider_set: str, options: dict) -> list[tuple[str, str]]:
    return [(p, k) for p, cfg in (e for e in provider_options(provider_set, options) if isinstance(e, tuple))
            for k in cfg]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r["onnxruntime"])
@pytest.mark.parametrize("provider_set", ["ort-trt", "ort-cuda"])
def test_every_option_key_is_one_the_provider_knows(record, provider_set):
    keys = {pk for opts in OPTION_SETS for pk in emitted(provider_set, opts)}
    assert keys, "no provider options emitted: nothing was checked"
    unknown = [f"{p}: {k}" for p, k in sorted(keys) if not known(record, p, k)]
    assert unknown == []


def test_the_cache_options_are_all_checked():
    keys = {k for _, k in emitted("ort-trt", OPTION_SETS[2])}
    assert {"trt_engine_cache_enable", "trt_engine_cache_path", "trt_timing_cache_enable", "trt_timing_cache_path",
            "trt_max_workspace_size", "trt_int8_enable"} <= keys
    assert set(PROVIDERS["ort-trt"][:2]) == set(RECORDS[0]["providers"])


def test_a_misspelled_key_is_caught():
    record = RECORDS[0]
    assert not known(record, "TensorrtExecutionProvider", "trt_engine_cache_enabled")
    assert not known(record, "TensorrtExecutionProvider", "trt_fp16_enabled")
    assert not known(record, "CUDAExecutionProvider", "trt_int8_enable")  # a TensorRT key given to CUDA
    assert known(record, "CUDAExecutionProvider", "cudnn_conv_algo_search")  # a real CUDA option, for contrast
