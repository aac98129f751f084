"""A model package -> an NVIDIA Triton Inference Server model repository.

    REPO/NAME/config.pbtxt            onnxruntime backend, dynamic batching
    REPO/NAME/1/model.onnx
    REPO/NAME/fakedet.manifest.json   the preprocessing contract (clients send tensors)
    REPO/NAME_trt/...                 tensorrt backend, only when the package has plans:
                                      1/model_<trt>_sm<cc>_<prec>.plan, chosen per GPU with
                                      cc_model_filenames

Each model directory is written in a staging directory and renamed into place."""

from __future__ import annotations

import shutil
from pathlib import Path

from fakedet.atomic import replace_dir, staging_dir
from fakedet.errors import DataError
from fakedet.manifest import Manifest
from fakedet.package import ModelPackage

from .trt_rules import TrtVersion

CONTRACT_FILE = "fakedet.manifest.json"
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}
TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


def parse_instance(text: str) -> tuple[str, int]:
    kind, _, count = text.partition(":")
    if kind not in KINDS:
        raise DataError(f"--instance '{text}': KIND must be one of {', '.join(KINDS)}")
    try:
        n = int(count or 1)
    except ValueError:
        raise DataError(f"--instance '{text}': COUNT must be an integer") from None
    if n < 1:
        raise DataError(f"--instance '{text}': COUNT must be >= 1")
    return kind, n


def input_dims(manifest: Manifest) -> list[int]:
    """Per-sample dims (Triton adds the batch axis); -1 where the model takes any size."""
    spec = manifest.input
    if spec.preprocess.policy == "whole-image":
        h = w = -1
    else:
        h, w = spec.preprocess.size
    return [3, h, w] if spec.layout == "NCHW" else [h, w, 3]


def preferred_batches(max_batch: int) -> list[int]:
    out = [b for b in (4, 8, 16, 32, 64) if b <= max_batch]
    return out or [max_batch]


def render_config(name: str, platform: str, manifest: Manifest, max_batch: int, kind: str, count: int,
                  extra: list[str] | None = None) -> str:
    spec, out = manifest.input, manifest.output
    out_dims = [1] if out.kind == "logit" else [2]
    fmt = f"FORMAT_{spec.layout}"
    lines = [
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {max_batch}",
        "input [",
        "  {",
        f'    name: "{spec.name}"',
        f"    data_type: {TYPES[spec.dtype]}",
        f"    format: {fmt}",
        f"    dims: [ {', '.join(map(str, input_dims(manifest)))} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{out.name}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {', '.join(map(str, out_dims))} ]",
        "  }",
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(map(str, preferred_batches(max_batch)))} ]",
        "  max_queue_delay_microseconds: 100",
        "}",
        "instance_group [",
        "  {",
        f"    count: {count}",
        f"    kind: {KINDS[kind]}",
        "  }",
        "]",
    ]
    return "\n".join(lines + (extra or [])) + "\n"


def _write_model_dir(dest: Path, files: dict[str, Path], config: str, manifest: Manifest) -> Path:
    stage = staging_dir(dest)
    try:
        (stage / "1").mkdir()
        for rel, src in files.items():
            shutil.copyfile(src, stage / rel)
        (stage / "config.pbtxt").write_text(config, encoding="utf-8")
        (stage / CONTRACT_FILE).write_text(manifest.to_json(), encoding="utf-8")
        replace_dir(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return dest


def _plans_by_cc(pkg: ModelPackage) -> dict[str, object]:
    """One plan per compute capability: the newest TensorRT, then the first listed."""
    best: dict[str, object] = {}
    for art in pkg.manifest.artifacts_of("trt-plan"):
        cc = str(art.attrs.get("compute_capability", ""))
        if not cc or art.attrs.get("dla_core") is not None:
            continue
        cur = best.get(cc)
        if cur is None or TrtVersion.parse(art.attrs["trt_version"]) > TrtVersion.parse(cur.attrs["trt_version"]):
            best[cc] = art
    return best


def write_triton_repo(package: str | Path | ModelPackage, repo: str | Path, name: str | None = None,
                      max_batch: int = 16, kind: str = "gpu", count: int = 1) -> list[Path]:
    """Write the package's models into the Triton repository `repo`; return the model dirs."""
    pkg = package if isinstance(package, ModelPackage) else ModelPackage.open(package)
    pkg.verify()
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    name = name or pkg.name
    onnx = pkg.manifest.artifact("onnx-fp32") or pkg.manifest.artifact("onnx-fp16")
    written = []
    if onnx is not None:
        cfg = render_config(name, "onnxruntime_onnx", pkg.manifest, max_batch, kind, count)
        written.append(_write_model_dir(repo / name, {"1/model.onnx": pkg.path_of(onnx)}, cfg, pkg.manifest))
    plans = _plans_by_cc(pkg)
    if plans:
        files = {f"1/{Path(art.file).name}": pkg.path_of(art) for art in plans.values()}
        first = next(iter(sorted(plans.items())))[1]
        max_b = min(int(p["max"][0]) for a in plans.values() for p in a.attrs["profiles"])
        extra = [f'default_model_filename: "{Path(first.file).name}"'] + [
            f'cc_model_filenames {{ key: "{cc}" value: "{Path(a.file).name}" }}' for cc, a in sorted(plans.items())]
        cfg = render_config(f"{name}_trt", "tensorrt_plan", pkg.manifest, max_b, "gpu", count, extra)
        written.append(_write_model_dir(repo / f"{name}_trt", files, cfg, pkg.manifest))
    if not written:
        raise DataError(f"{pkg.source}: no ONNX model or TensorRT plan to put in a Triton repository")
    return written
