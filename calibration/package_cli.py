"""`fakedet package`: wrap any ONNX image classifier (one logit or two-class logits)
with its preprocessing and threshold, so models fakedet did not train run too."""

from __future__ import annotations

from pathlib import Path

import click

from fakedet.artifact_kinds import ONNX_FP32
from fakedet.manifest import ONNX_KINDS
from fakedet.onnx_refs import external_files
from fakedet.package import ModelPackage, PackageWriter
from fakedet.spec_file import EXAMPLE

from .files import FP32_FILE
from .wrap import smoke_test, wrap_onnx


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
@click.option("--kind", type=click.Choice(ONNX_KINDS), default=ONNX_FP32, show_default=True, help="What the ONNX file holds.")
def package(model: Path, spec_path: Path, out: Path, name, threshold, kind) -> int:
    """Wrap an ONNX image classifier into a fakedet package.

    MODEL is any ONNX classifier with one image input and one output: a single logit
    (sigmoid gives P(fake)) or two-class logits (softmax[fake_index] gives P(fake)).
    The package holds the model with the manifest embedded in its metadata, so the
    bare .onnx file is self-describing too. Written atomically: OUTPUT is whole or absent.
    """
    proto, manifest, notes = wrap_onnx(model, spec_path, name=name, threshold=threshold, kind=kind,
                                       provenance={"source": "fakedet package", "source_onnx": model.name})
    for note in notes:
        click.echo(f"note: {note}", err=True)
    with PackageWriter(out, manifest) as w:
        w.add_onnx(proto, FP32_FILE, kind, external=bool(external_files(model)))  # whatever its kind: the one model
        smoke_test(w.stage / FP32_FILE, w.manifest)
    with ModelPackage.open(out) as pkg:
        art = pkg.manifest.artifacts[0]
        click.echo(f"wrote {out} ({art.kind} {art.file}, sha256 {art.sha256[:12]}..., threshold {pkg.manifest.threshold.value})")
    return 0

