"""`fakedet export`: checkpoint -> model package (or Triton model repository)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from fakedet.errors import DataError

from .onnx_export import DEFAULT_OPSET, EXPORTERS
from .overwrite import check_overwrite
from .pipeline import PRECISION_CHOICES, ExportOptions


def _size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise click.BadParameter(f"'{text}': expected SIZE or HxW, e.g. 256 or 256x384") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8:
        raise click.BadParameter(f"'{text}': expected SIZE or HxW with sides >= 8")
    return parts[0], parts[1]


@click.command(
    "export",
    epilog="""\b
Examples:
  fakedet export runs/r50/best -o r50.fdet
  fakedet export runs/clip/best -o clip.fdet --precision both --calib-images val/
  fakedet export runs/r50/best -o r50.fdet --precision fp32 --opset 18 --atol 1e-5
  fakedet export runs/r50/best -o r50.fdet --force      # replace r50.fdet (drops its INT8 files)
  fakedet export runs/r50/best -o triton_repo --format triton --name r50
  fakedet export r50.fdet -o triton_repo --format triton   # package (with plans) -> Triton
  fakedet export r50.fdet -o triton_repo --format triton --image-endpoint   # + JPEG/PNG in, scores out

\b
Parity: the ONNX model is run with ONNX Runtime (CPU) against PyTorch on random
tensors and on real images (from --calib-images, else synthesized) at batch 1, 3
and 8. Max and mean |logit difference| and score agreement at the threshold are
printed and stored in the manifest and in parity/report.json; above --atol
(fp32) or --atol-fp16 the export fails with exit code 2 and writes nothing.

\b
A caption-aware model (clip-mlp trained with --model-opt use_text=true) exports
one graph with two inputs: 'image' and 'text' (int32 CLIP BPE token ids, the
context length of its CLIP, batch dynamic). Its tokenizer is written into the
package as tokenizer.json (HF tokenizers, hashed like every artifact) and checked
against open_clip's on awkward captions; parity feeds captions of every length
(empty to cut-off) beside the images.

\b
--format triton writes an NVIDIA Triton model repository at -o instead of a
package: NAME/config.pbtxt + NAME/1/model.onnx (onnxruntime backend), and when
the source is a package holding TensorRT plans, NAME_trt/ with the plans
(tensorrt backend); each model directory also holds fakedet.manifest.json, the
preprocessing contract clients must apply.""",
)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="The package to write (NAME.fdet), or the repository directory with --format triton.")
@click.option("--name", default=None, help="Model name (default: the output name without .fdet).")
@click.option("--opset", default=DEFAULT_OPSET, show_default=True, type=click.IntRange(13, 23), help="ONNX opset.")
@click.option("--precision", default="both", show_default=True, type=click.Choice(PRECISION_CHOICES),
              help="Which ONNX files to write: fp32, mixed-precision fp16 (fp32 inputs/outputs), or both.")
@click.option("--atol", default=1e-4, show_default=True, type=float, help="Max |logit diff| allowed for fp32 ONNX.")
@click.option("--atol-fp16", default=5e-2, show_default=True, type=float, help="Max |logit diff| allowed for fp16 ONNX.")
@click.option("--exporter", default="auto", show_default=True, type=click.Choice(EXPORTERS),
              help="torch.onnx exporter: legacy (TorchScript, MHA fast path off), dynamo, or auto (legacy, then dynamo).")
@click.option("--calib-images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Directory of real images for the parity check (default: synthesized images).")
@click.option("--sample-size", default="128", show_default=True,
              help="Image size (SIZE or HxW) used to trace and check whole-image models.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim simplification.")
@click.option("--empty-caption", default="refuse", show_default=True, type=click.Choice(["refuse", "score"]),
              help="Caption-aware models (clip-mlp use_text=true): what an image without a caption means at run "
                   "time. refuse: that item fails with an error; score: it is scored with the empty caption "
                   "(only for a model trained with uncaptioned rows).")
@click.option("--format", "fmt", default="fdet", show_default=True, type=click.Choice(["fdet", "triton"]),
              help="Write a model package, or a Triton model repository.")
@click.option("--max-batch", default=16, show_default=True, type=click.IntRange(1, 4096),
              help="Triton max_batch_size for the ONNX model (TensorRT models take their profile's max).")
@click.option("--instance", default="gpu:1", show_default=True,
              help="Triton instance group for the ONNX model: KIND:COUNT, KIND gpu, cpu or auto.")
@click.option("--image-endpoint", is_flag=True,
              help="--format triton: also write NAME_images, a Python-backend model that takes encoded images "
                   "(JPEG/PNG bytes) and applies the package's preprocessing in the server.")
@click.option("--no-evidence", is_flag=True,
              help="Leave out the second output, the per-region evidence map (written for the architectures where "
                   "it is exact: resnet-tiny-nodown, resnet50-nodown, resnet50; docs/evidence-maps.md).")
@click.option("--force", is_flag=True,
              help="Replace an existing package at -o (its INT8 files, calibration report and plans are lost).")
def export(checkpoint, output, name, opset, precision, atol, atol_fp16, exporter, calib_images, sample_size,
           no_simplify, empty_caption, fmt, max_batch, instance, image_endpoint, no_evidence, force):
    """Export CHECKPOINT (a training checkpoint directory: model.safetensors +
    config.json) to a model package with ONNX models, the manifest and a parity report."""
    opts = ExportOptions(name=name, opset=opset, precision=precision, atol=atol, atol_fp16=atol_fp16,
                         exporter=exporter, calib_images=calib_images, whole_image_size=_size(sample_size),
                         simplify=not no_simplify, empty_caption=empty_caption, evidence=not no_evidence)
    if fmt == "triton":
        from .triton import parse_instance, write_triton_repo

        kind, count = parse_instance(instance)
        if (checkpoint / "manifest.json").is_file():
            written = write_triton_repo(checkpoint, output, name, max_batch, kind, count, image_endpoint)
        else:
            with tempfile.TemporaryDirectory(prefix="fakedet-export-") as tmp:
                pkg = _export(checkpoint, Path(tmp) / f"{name or checkpoint.name}.fdet", opts)
                written = write_triton_repo(pkg, output, name, max_batch, kind, count, image_endpoint)
        for d in written:
            click.echo(f"wrote Triton model {d}")
        return 0
    if (checkpoint / "manifest.json").is_file():
        raise DataError(f"{checkpoint}: already a model package; export takes a training checkpoint "
                        "(or use --format triton to turn the package into a Triton repository)")
    replacing = check_overwrite(output, force)
    if replacing:
        click.echo(f"fakedet export: {replacing}", err=True)
    pkg = _export(checkpoint, output, opts)
    click.echo(f"wrote {pkg}")
    return 0


def _export(checkpoint: Path, dest: Path, opts: ExportOptions) -> Path:
    from .pipeline import export_package
    from .source import load_source

    source = load_source(checkpoint, say=lambda m: click.echo(m, err=True))
    result = export_package(source, dest, opts, echo=lambda m: click.echo(m, err=True))
    return result.path
