"""Wrapping a bare ONNX image classifier with an input spec: the one implementation that
`fakedet package` and `fakedet calibrate --input-spec` share.

It lives in the calibration stage because that is the lowest stage that both has onnx
(the `calibrate` extra) and may run the runtime for the smoke test; export may import it."""

from __future__ import annotations

from pathlib import Path

from fakedet.artifact_kinds import ONNX_FP32
from fakedet.errors import FakedetError, PackageError, first_line
from fakedet.manifest import Manifest
from fakedet.onnx_graph import graph_inputs, value_dims
from fakedet.package import embed_manifest
from fakedet.spec_file import load_spec_file


def _match_name(role: str, wanted: str, names: list[str], notes: list[str], path: Path) -> str:
    """The spec's tensor name if the graph has it, else the graph's only one (noted)."""
    if wanted in names:
        return wanted
    if len(names) == 1:
        notes.append(f"{role} tensor: using the model's only {role} '{names[0]}' (spec said '{wanted}')")
        return names[0]
    raise PackageError(path, f"{role} '{wanted}' not in the model; its {role}s are {names}")


def reconcile_io(model, manifest: Manifest, path: Path) -> list[str]:
    """Check the spec against the graph; adopt the graph's tensor names where the spec
    kept the defaults and the graph has exactly one. Returns notes for the user."""
    notes = []
    inputs = graph_inputs(model.graph)
    outputs = list(model.graph.output)
    spec_in, spec_out = manifest.input, manifest.output
    in_names = [i.name for i in inputs]
    spec_in.name = _match_name("input", spec_in.name, in_names, notes, path)
    if len(inputs) != 1:
        raise PackageError(path, f"fakedet runs image classifiers with one input; this model has {in_names}")
    spec_out.name = _match_name("output", spec_out.name, [o.name for o in outputs], notes, path)
    dims = value_dims(inputs[0])
    if len(dims) != 4:
        raise PackageError(path, f"input '{spec_in.name}' has rank {len(dims)}; an image batch needs rank 4 ({spec_in.layout})")
    h_axis, w_axis = spec_in.hw_axes()
    c = dims[1] if spec_in.layout == "NCHW" else dims[3]
    if isinstance(c, int) and c != 3:
        raise PackageError(path, f"input '{spec_in.name}' has {c} channels at the {spec_in.layout} channel axis; expected 3")
    hw = (dims[h_axis], dims[w_axis])
    pre = spec_in.preprocess
    if pre.policy == "whole-image" and any(isinstance(d, int) for d in hw):
        raise PackageError(path, f"policy 'whole-image' needs dynamic height and width; the model fixes {hw}")
    if pre.policy != "whole-image" and all(isinstance(d, int) for d in hw) and tuple(hw) != tuple(pre.size):
        raise PackageError(path, f"the model takes {hw[0]}x{hw[1]} images but the spec's preprocessing makes {pre.size[0]}x{pre.size[1]}")
    odims = value_dims(next(o for o in outputs if o.name == spec_out.name))
    per_image = odims[-1] if len(odims) >= 2 else 1
    want = 1 if spec_out.kind == "logit" else 2
    if isinstance(per_image, int) and per_image != want:
        raise PackageError(
            path, f"output '{spec_out.name}' gives {per_image} values per image but the spec says {spec_out.kind} ({want})"
        )
    dyn = ["batch"] + (["height", "width"] if pre.policy == "whole-image" else [])
    spec_in.dynamic_axes = tuple(dyn if not isinstance(dims[0], int) else dyn[1:])
    return notes


def wrap_onnx(model_path: Path, spec_path: Path, *, provenance: dict, name: str | None = None,
              threshold: float | None = None, kind: str = ONNX_FP32, architecture: str = "external-onnx"):
    """Load `model_path`, describe it with the spec file, reconcile the spec's tensor names
    with the graph's and embed the manifest. `architecture` is used where the spec names
    none. Returns (onnx proto, manifest, notes)."""
    try:
        import onnx
    except ImportError:
        raise FakedetError("wrapping an ONNX model needs the onnx library: pip install onnx (or 'fakedet[calibrate]')") from None
    spec = load_spec_file(spec_path)
    manifest = Manifest(
        name=name or spec.name or model_path.stem,
        architecture=spec.architecture or architecture,
        input=spec.input,
        output=spec.output,
        threshold=spec.threshold,
        provenance=provenance,
    )
    if threshold is not None:
        manifest.threshold.value = threshold
        manifest.threshold.method = "user"
        manifest.threshold.validate()
    try:
        proto = onnx.load(str(model_path))
    except Exception as e:
        raise PackageError(model_path, f"not a readable ONNX model ({first_line(e)[:200]})") from None
    notes = reconcile_io(proto, manifest, model_path)
    embed_manifest(proto, manifest, kind)
    return proto, manifest, notes


def smoke_test(onnx_path: Path, manifest: Manifest) -> None:
    """Run one dummy image through ONNX Runtime before committing a package."""
    import numpy as np

    from fakedet.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from fakedet.runtime.scoring import fake_logits

    pre = manifest.input.preprocess
    h, w = pre.size if pre.size else (64, 64)
    if pre.policy == "whole-image":
        h, w = max(h, 64), max(w, 64)
    with OnnxRuntimeBackend(onnx_path, "ort-cpu") as be:  # one image: the backend pads to a fixed batch
        shape = manifest.input.tensor_shape(1, (h, w))
        try:
            out = be.infer(np.zeros(shape, np.float32))
        except Exception as e:
            raise PackageError(onnx_path.name, f"a {shape} test batch fails in ONNX Runtime: {first_line(e)[:300]}") from None
    try:
        fake_logits(out, manifest.output)
    except ValueError as e:
        raise PackageError(onnx_path.name, str(e)) from None
