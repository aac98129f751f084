"""A model package -> an NVIDIA Triton Inference Server model repository.

    REPO/NAME/config.pbtxt            onnxruntime backend, dynamic batching where the model batches
    REPO/NAME/1/model.onnx            the fp32 model, else fp16, else INT8 QDQ
    REPO/NAME/fakedet.manifest.json   the preprocessing contract (clients send tensors)
    REPO/NAME_images/                 with --image-endpoint: Triton's Python backend running
                                      fakedet's runtime on encoded images (1/model.py,
                                      1/detector.fdet): preprocessing happens in the server
    REPO/NAME_trt/...                 tensorrt backend, only when the package has plans:
                                      1/trt-<version>_sm<cc>_<prec>.plan, chosen per GPU with
                                      cc_model_filenames

The tensors' types, the batch axis and the output rank are read from the ONNX model (for
plans, the ONNX they were built from), so the config says what the model takes: Triton
refuses a config that disagrees with its model.

Each model directory is written in a staging directory and renamed into place."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from fakedet.artifact_kinds import ONNX_KINDS, TRT_PLAN
from fakedet.atomic import staged_dir
from fakedet.errors import DataError, FakedetError
from fakedet.manifest import Manifest
from fakedet.package import MANIFEST_FILE, ModelPackage
from fakedet.runtime.tensorrt_support import parse_cc

from .tensorrt_rules import TrtVersion

CONTRACT_FILE = "fakedet.manifest.json"
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}
ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16"}  # onnx.TensorProto.FLOAT, FLOAT16


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


@dataclass(frozen=True)
class ModelTensors:
    """What the model file says about its input and output, as Triton needs it."""

    batch: int | None  # None: the first axis is dynamic and Triton batches; else the model's fixed batch
    input_type: str
    output_type: str
    output_shape: tuple[int, ...]  # the whole shape, batch axis included, -1 where dynamic


def read_model_tensors(path: Path, manifest: Manifest) -> ModelTensors:
    """The manifest's input and output tensors as the ONNX graph at `path` declares them."""
    try:
        import onnx
    except ImportError:
        raise FakedetError("writing a Triton repository reads the ONNX model's tensors and needs the onnx "
                           "library: pip install onnx (or 'fakedet[export]')") from None
    graph = onnx.load(str(path), load_external_data=False).graph

    def find(values, name: str, role: str):
        for v in values:
            if v.name == name:
                tt = v.type.tensor_type
                if tt.elem_type not in ONNX_TYPES:
                    raise DataError(f"{path}: {role} '{name}' is {onnx.TensorProto.DataType.Name(tt.elem_type)}; "
                                    "a Triton repository is written for float32 or float16 tensors")
                return ONNX_TYPES[tt.elem_type], [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        raise DataError(f"{path}: the manifest's {role} '{name}' is not among the model's {role}s "
                        f"{[v.name for v in values]}")

    in_type, in_shape = find(graph.input, manifest.input.name, "input")
    out_type, out_shape = find(graph.output, manifest.output.name, "output")
    if len(in_shape) != 4:
        raise DataError(f"{path}: input '{manifest.input.name}' has rank {len(in_shape)}; an image batch needs rank 4")
    return ModelTensors(None if in_shape[0] == -1 else in_shape[0], in_type, out_type, tuple(out_shape))


def input_dims(manifest: Manifest) -> list[int]:
    """Per-sample dims (Triton adds the batch axis); -1 where the model takes any size."""
    spec = manifest.input
    hw = (-1, -1) if spec.preprocess.policy == "whole-image" else None
    return list(spec.tensor_shape(hw=hw))


def preferred_batches(max_batch: int) -> list[int]:
    out = [b for b in (4, 8, 16, 32, 64) if b <= max_batch]
    return out or [max_batch]


def _dims(values) -> str:
    return f"[ {', '.join(map(str, values))} ]"


def _text_input_lines(manifest: Manifest, batched: bool) -> list[str]:
    """A caption-aware model's second input: the caption's token ids (clients tokenize with the
    tokenizer.json written beside the config)."""
    text = manifest.text_input
    if text is None:
        return []
    dims = [text.context_length] if batched else [1, text.context_length]
    return ["  {", f'    name: "{text.name}"', f"    data_type: TYPE_{text.dtype.upper()}",
            f"    dims: {_dims(dims)}", "  }"]


def render_config(name: str, platform: str, manifest: Manifest, tensors: ModelTensors, max_batch: int, kind: str,
                  count: int, extra: list[str] | None = None) -> str:
    """Triton's rules: with max_batch_size > 0 dims leave out the batch axis; a model with a
    fixed batch gets max_batch_size 0 and its whole shape; an output of shape [batch]
    is declared [1] and reshaped to [] (Triton has no empty dims)."""
    spec, out = manifest.input, manifest.output
    batched = tensors.batch is None
    in_dims = input_dims(manifest) if batched else [tensors.batch, *input_dims(manifest)]
    out_dims = list(tensors.output_shape[1:] if batched else tensors.output_shape)
    out_dims_lines = [f"    dims: {_dims(out_dims)}"] if out_dims else ["    dims: [ 1 ]", "    reshape { shape: [ ] }"]
    lines = [
        f'name: "{name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {max_batch if batched else 0}",
        "input [",
        "  {",
        f'    name: "{spec.name}"',
        f"    data_type: {tensors.input_type}",
        f"    format: FORMAT_{spec.layout}",
        f"    dims: {_dims(in_dims)}",
        "  }" + ("," if manifest.takes_captions else ""),
        *_text_input_lines(manifest, batched),
        "]",
        "output [",
        "  {",
        f'    name: "{out.name}"',
        f"    data_type: {tensors.output_type}",
        *out_dims_lines,
        "  }",
        "]",
    ]
    if batched:
        lines += [
            "dynamic_batching {",
            f"  preferred_batch_size: {_dims(preferred_batches(max_batch))}",
            "  max_queue_delay_microseconds: 100",
            "}",
        ]
    lines += [
        "instance_group [",
        "  {",
        f"    count: {count}",
        f"    kind: {KINDS[kind]}",
        "  }",
        "]",
    ]
    return "\n".join(lines + (extra or [])) + "\n"


def _write_model_dir(dest: Path, files: dict[str, Path | str], config: str, manifest: Manifest) -> Path:
    """`files`: relative path -> a file to copy, or text (str) to write."""
    with staged_dir(dest) as stage:
        (stage / "1").mkdir()
        for rel, src in files.items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, str):
                (stage / rel).write_text(src, encoding="utf-8")
            else:
                shutil.copyfile(src, stage / rel)
        (stage / "config.pbtxt").write_text(config, encoding="utf-8")
        (stage / CONTRACT_FILE).write_text(manifest.to_json(), encoding="utf-8")
    return dest


def _plans_by_cc(pkg: ModelPackage) -> dict[str, object]:
    """One plan per compute capability: the newest TensorRT, then the first listed."""
    best: dict[str, object] = {}
    for art in pkg.manifest.artifacts_of(TRT_PLAN):
        cc = str(art.attrs.get("compute_capability", ""))
        if not cc or art.attrs.get("dla_core") is not None:
            continue
        cur = best.get(cc)
        if cur is None or TrtVersion.parse(art.attrs["trt_version"]) > TrtVersion.parse(cur.attrs["trt_version"]):
            best[cc] = art
    return best


IMAGE_ENDPOINT_SUFFIX = "_images"
PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")


def render_image_endpoint_config(name: str, max_batch: int, kind: str, count: int, backend: str = "auto",
                                 precision: str = "auto") -> str:
    """A Python-backend model over encoded images: IMAGE (BYTES) in; SCORE, IS_FAKE and
    ERROR out, one row per image."""
    return "\n".join([
        f'name: "{name}"',
        'backend: "python"',
        f"max_batch_size: {max_batch}",
        'input [ { name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] } ]',
        "output [",
        '  { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] },',
        '  { name: "IS_FAKE" data_type: TYPE_BOOL dims: [ 1 ] },',
        '  { name: "ERROR" data_type: TYPE_STRING dims: [ 1 ] }',
        "]",
        "dynamic_batching {",
        f"  preferred_batch_size: {_dims(preferred_batches(max_batch))}",
        "  max_queue_delay_microseconds: 500",
        "}",
        f"instance_group [ {{ count: {count} kind: {KINDS[kind]} }} ]",
        f'parameters {{ key: "fakedet_backend" value: {{ string_value: "{backend}" }} }}',
        f'parameters {{ key: "fakedet_precision" value: {{ string_value: "{precision}" }} }}',
    ]) + "\n"


def write_image_endpoint(pkg: ModelPackage, repo: Path, name: str, max_batch: int, kind: str, count: int) -> Path:
    """REPO/NAME_images: model.py (fakedet's runtime, preprocessing included) and the
    package itself, served by Triton's Python backend."""
    model = f"{name}{IMAGE_ENDPOINT_SUFFIX}"
    cfg = render_image_endpoint_config(model, max_batch, kind, count)
    # The package as a directory of its own files only (a bare .onnx package lives among others).
    files: dict[str, Path | str] = {"1/model.py": PYTHON_MODEL, f"1/detector.fdet/{MANIFEST_FILE}": pkg.manifest.to_json()}
    files.update({f"1/detector.fdet/{a.file}": pkg.path_of(a) for a in pkg.manifest.artifacts})
    return _write_model_dir(repo / model, files, cfg, pkg.manifest)


def _tokenizer_files(pkg: ModelPackage) -> dict:
    if not pkg.manifest.takes_captions:
        return {}
    return {Path(pkg.manifest.text_input.tokenizer).name: pkg.path_of(pkg.manifest.tokenizer_artifact())}


def write_triton_repo(package: str | Path | ModelPackage, repo: str | Path, name: str | None = None,
                      max_batch: int = 16, kind: str = "gpu", count: int = 1,
                      image_endpoint: bool = False) -> list[Path]:
    """Write the package's models into the Triton repository `repo`; return the model dirs."""
    pkg = package if isinstance(package, ModelPackage) else ModelPackage.open(package)
    pkg.verify()
    if image_endpoint and pkg.manifest.takes_captions:
        raise DataError(f"{pkg.source}: --image-endpoint serves image-only models; a caption-aware package's "
                        "clients send token ids beside the image (tokenizer.json is written into the model folder)")
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    name = name or pkg.name
    onnx_arts = pkg.onnx_artifacts()
    # fp32 first, then fp16; an INT8 QDQ model only where the package has nothing else
    onnx = next((a for k in ONNX_KINDS for a in onnx_arts if a.kind == k), None)  # the table's order
    written = []
    if onnx is not None:
        tensors = read_model_tensors(pkg.path_of(onnx), pkg.manifest)
        extra = []
        if onnx.attrs.get("ort_cpu_disabled_optimizers") and kind in ("cpu", "auto"):
            # ORT's CPU NCHWc layout pass crashes on these fp16 graphs; Triton cannot skip one
            # optimizer, but level 1 (basic + extended) leaves out the layout passes.
            extra = ["optimization { graph { level: 1 } }"]
        cfg = render_config(name, "onnxruntime_onnx", pkg.manifest, tensors, max_batch, kind, count, extra)
        files = {"1/model.onnx": pkg.path_of(onnx), **_tokenizer_files(pkg)}
        written.append(_write_model_dir(repo / name, files, cfg, pkg.manifest))
    plans = _plans_by_cc(pkg)
    if plans:
        files = {f"1/{Path(art.file).name}": pkg.path_of(art) for art in plans.values()}
        files.update(_tokenizer_files(pkg))
        first = plans[max(plans, key=parse_cc)]  # the fallback for GPUs not listed: the newest architecture
        max_b = min(int(p["max"][0]) for a in plans.values() for p in a.attrs["profiles"])
        extra = [f'default_model_filename: "{Path(first.file).name}"'] + [
            f'cc_model_filenames {{ key: "{cc}" value: "{Path(a.file).name}" }}' for cc, a in sorted(plans.items(), key=lambda kv: parse_cc(kv[0]))]
        source = next((a for a in onnx_arts if a.file == first.attrs.get("built_from")), onnx)
        if source is None:
            raise DataError(f"{pkg.source}: the TensorRT plans' ONNX model ({first.attrs.get('built_from')}) is not in "
                            "the package; its input and output tensors are needed for the Triton config")
        if source is not onnx:  # the served ONNX model's tensors were read above
            tensors = read_model_tensors(pkg.path_of(source), pkg.manifest)
        cfg = render_config(f"{name}_trt", "tensorrt_plan", pkg.manifest, tensors, max_b, "gpu", count, extra)
        written.append(_write_model_dir(repo / f"{name}_trt", files, cfg, pkg.manifest))
    if not written:
        raise DataError(f"{pkg.source}: no ONNX model or TensorRT plan to put in a Triton repository")
    if image_endpoint:
        written.append(write_image_endpoint(pkg, repo, name, max_batch, kind, count))
    return written
