"""`fakedet package`: wrap any ONNX image classifier (one logit or two-class logits)
with its preprocessing and threshold, so models fakedet did not train run too."""

from __future__ import annotations

from pathlib import Path

import click

from .errors import FakedetError, PackageError, first_line
from .onnx_refs import external_files
from .manifest import ONNX_KINDS, Manifest
from .package import ModelPackage, PackageWriter, embed_manifest
from .spec_file import EXAMPLE, load_spec_file


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in value_info.type.tensor_type.shape.dim]


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
    init_names = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init_names]
    outputs = list(model.graph.output)
    spec_in, spec_out = manifest.input, manifest.output
    in_names = [i.name for i in inputs]
    spec_in.name = _match_name("input", spec_in.name, in_names, notes, path)
    if len(inputs) != 1:
        raise PackageError(path, f"fakedet runs image classifiers with one input; this model has {in_names}")
    spec_out.name = _match_name("output", spec_out.name, [o.name for o in outputs], notes, path)
    dims = _dims(inputs[0])
    if len(dims) != 4:
        raise PackageError(path, f"input '{spec_in.name}' has rank {len(dims)}; an image batch needs rank 4 ({spec_in.layout})")
    c = dims[1] if spec_in.layout == "NCHW" else dims[3]
    if isinstance(c, int) and c != 3:
        raise PackageError(path, f"input '{spec_in.name}' has {c} channels at the {spec_in.layout} channel axis; expected 3")
    hw = (dims[2], dims[3]) if spec_in.layout == "NCHW" else (dims[1], dims[2])
    pre = spec_in.preprocess
    if pre.policy == "whole-image" and any(isinstance(d, int) for d in hw):
        raise PackageError(path, f"policy 'whole-image' needs dynamic height and width; the model fixes {hw}")
    if pre.policy != "whole-image" and all(isinstance(d, int) for d in hw) and tuple(hw) != tuple(pre.size):
        raise PackageError(path, f"the model takes {hw[0]}x{hw[1]} images but the spec's preprocessing makes {pre.size[0]}x{pre.size[1]}")
    odims = _dims(next(o for o in outputs if o.name == spec_out.name))
    per_image = odims[-1] if len(odims) >= 2 else 1
    want = 1 if spec_out.kind == "logit" else 2
    if isinstance(per_image, int) and per_image != want:
        raise PackageError(
            path, f"output '{spec_out.name}' gives {per_image} values per image but the spec says {spec_out.kind} ({want})"
        )
    dyn = ["batch"] + (["height", "width"] if pre.policy == "whole-image" else [])
    spec_in.dynamic_axes = tuple(dyn if not isinstance(dims[0], int) else dyn[1:])
    return notes


@click.command(
    "package",
    epilog=f"""\b
Examples:
  fakedet package detector.onnx --input-spec spec.json -o detector.fdet
  fakedet package detector.onnx --input-spec spec.json -o detector.fdet --threshold 0.7
\b
The spec file (complete example: {EXAMPLE}):
  {{"input": {{"mean": [...], "std": [...], "preprocess": {{"policy": "center-crop", "size": [224, 224]}}}},
   "output": {{"kind": "logit"}}, "threshold": 0.5}}""",
)
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--input-spec", "spec_path", required=True, type=click.Path(path_type=Path),
              help="JSON file: input tensor, preprocessing policy, output kind, threshold.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path), help="Package directory to write (NAME.fdet).")
@click.option("--name", default=None, help="Model name (default: spec's name, else the ONNX file's stem).")
@click.option("--threshold", type=float, default=None, help="Decision threshold on P(fake), overriding the spec.")
@click.option("--kind", type=click.Choice(ONNX_KINDS), default="onnx-fp32", show_default=True, help="What the ONNX file holds.")
def package(model: Path, spec_path: Path, out: Path, name, threshold, kind) -> int:
    """Wrap an ONNX image classifier into a fakedet package.

    MODEL is any ONNX classifier with one image input and one output: a single logit
    (sigmoid gives P(fake)) or two-class logits (softmax[fake_index] gives P(fake)).
    The package holds the model with the manifest embedded in its metadata, so the
    bare .onnx file is self-describing too. Written atomically: OUTPUT is whole or absent.
    """
    try:
        import onnx
    except ImportError:
        raise FakedetError("fakedet package needs the onnx library: pip install onnx (or 'fakedet[export]')") from None

    spec = load_spec_file(spec_path)
    manifest = Manifest(
        name=name or spec.name or model.stem,
        architecture=spec.architecture or "external-onnx",
        input=spec.input,
        output=spec.output,
        threshold=spec.threshold,
        provenance={"source": "fakedet package", "source_onnx": model.name},
    )
    if threshold is not None:
        manifest.threshold.value = threshold
        manifest.threshold.method = "user"
        manifest.threshold.validate()
    try:
        proto = onnx.load(str(model))
    except Exception as e:
        raise PackageError(model, f"not a readable ONNX model ({first_line(e)})") from None
    for note in reconcile_io(proto, manifest, model):
        click.echo(f"note: {note}", err=True)
    embed_manifest(proto, manifest, kind)
    with PackageWriter(out, manifest) as w:
        w.add_onnx(proto, "model.onnx", kind, external=bool(external_files(model)))
        _smoke_test(w.stage / "model.onnx", w.manifest)
    with ModelPackage.open(out) as pkg:
        art = pkg.manifest.artifacts[0]
        click.echo(f"wrote {out} ({art.kind} {art.file}, sha256 {art.sha256[:12]}..., threshold {pkg.manifest.threshold.value})")
    return 0


def _smoke_test(onnx_path: Path, manifest: Manifest) -> None:
    """Run one dummy image through ONNX Runtime before committing the package."""
    import numpy as np

    from fakedet.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from fakedet.runtime.scoring import fake_logits

    pre = manifest.input.preprocess
    h, w = pre.size if pre.size else (64, 64)
    if pre.policy == "whole-image":
        h, w = max(h, 64), max(w, 64)
    with OnnxRuntimeBackend(onnx_path, "ort-cpu") as be:
        n = be.input_spec.fixed_batch() or 1
        shape = (n, 3, h, w) if manifest.input.layout == "NCHW" else (n, h, w, 3)
        try:
            out = be.infer(np.zeros(shape, np.float32))
        except Exception as e:
            raise PackageError(onnx_path.name, f"a {shape} test batch fails in ONNX Runtime: {first_line(e, 300)}") from None
    try:
        fake_logits(out, manifest.output)
    except ValueError as e:
        raise PackageError(onnx_path.name, str(e)) from None
