"""`fakedet bench`: latency and throughput per backend, precision and batch size."""

from __future__ import annotations

from pathlib import Path

import click

from fakedet.errors import FakedetError
from fakedet.package import ModelPackage


def _csv_list(kind):
    def convert(ctx, param, value):
        if value is None:
            return None
        items = [v.strip() for v in str(value).split(",") if v.strip()]
        try:
            return [kind(v) for v in items]
        except ValueError:
            raise click.BadParameter(f"expected a comma-separated list, got '{value}'") from None

    return convert


@click.command(
    "bench",
    epilog="""\b
Backends: auto, ort-cpu, ort-cuda, ort-trt, tensorrt, torch (PyTorch eager
reference: needs torch and the checkpoint, from --checkpoint or the manifest's
provenance "checkpoint").
\b
Examples:
  fakedet bench r50.fdet
  fakedet bench r50.fdet --backend torch,ort-cpu --precision fp32,int8 --batch 1,8
  fakedet bench r50.fdet --backend tensorrt --precision fp16 --batch 1,8,32 --json b.json --plot b.png
  fakedet bench r50.fdet --images photos/ --batch 8 --csv b.csv   # end to end: decode + preprocess + infer
  fakedet bench r50.fdet --backend tensorrt --precision fp16 --batch 8 --trtexec
  fakedet bench clip-text.fdet --backend ort-cpu,torch --caption-tokens 40   # a caption-aware package
\b
The split follows trtexec: host preprocessing (with --images, decoding real
images), H2D, compute, D2H, end to end. Where a backend cannot separate
H2D/compute/D2H (ONNX Runtime on the CPU, PyTorch eager), H2D and D2H are
reported as null and compute is the whole call. Combinations that cannot run
are listed with the reason. --threads and --cuda-graph go to the backends that
take them; a row notes a setting that does not apply to its backend.
\b
A caption-aware package (image + caption) gets the token ids of a synthetic
caption of --caption-tokens BPE tokens beside every image (built with the
package's tokenizer; the report states the length). With --images the captions
are tokenized every iteration, inside 'pre'. Such packages run on ONNX Runtime
(ort-cpu, ort-cuda, ort-trt) and torch; the native TensorRT backend and trtexec
take one-input plans and are refused for them.""",
)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--backend", "backends", default="auto", show_default=True, callback=_csv_list(str),
              help="Comma-separated backends to measure.")
@click.option("--precision", "precisions", default="fp32,fp16,int8", show_default=True, callback=_csv_list(str),
              help="Comma-separated precisions (fp32, fp16, int8).")
@click.option("--batch", "batches", default="1,8", show_default=True, callback=_csv_list(int),
              help="Comma-separated batch sizes.")
@click.option("--warmup", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Warm-up seconds per combination.")
@click.option("--duration", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds per timed repeat.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed repeats; throughput is their median, spread their IQR and min/max.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (ONNX Runtime intra-op, torch).")
@click.option("--images", "--e2e", "e2e_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="End to end: decode and preprocess real images from this folder every iteration, so the "
                   "'pre' column is measured and img/s compares with `fakedet serve` (--e2e is the old name).")
@click.option("--caption-tokens", type=click.IntRange(min=1), default=None,
              help="Caption-aware packages: tokens in the synthetic caption fed beside each image "
                   "(default 20, a typical caption; at most the context length - 2).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint directory for the torch row (default: the manifest's provenance).")
@click.option("--cuda-graph", is_flag=True, help="TensorRT backend: replay each fixed batch shape as a CUDA graph.")
@click.option("--trtexec", "trtexec", default=None, is_flag=False, flag_value="auto",
              help="Also run trtexec on each measured TensorRT plan (same batch and shape) and report "
                   "fakedet/trtexec; give a path, or no value to find trtexec on PATH or in /usr/src/tensorrt/bin.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report as JSON (schema fakedet.bench v1).")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one CSV row per measured combination.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG of latency and throughput against batch size.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
def bench(package, backends, precisions, batches, warmup, duration, repeats, threads, e2e_dir, caption_tokens,
          checkpoint, cuda_graph, trtexec, json_out, csv_out, plot_out, quiet) -> int:
    """Measure throughput and latency (p50/p90/p99/max, with the trtexec-style split)
    of PACKAGE for each backend x precision x batch size."""
    from .report import format_table, write_csv, write_json
    from .run import BenchSettings, run_bench
    from ..selection import PRECISIONS

    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise FakedetError(f"unknown precision(s) {', '.join(bad)} (known: {', '.join(PRECISIONS)})")
    if any(b < 1 for b in batches):
        raise FakedetError("batch sizes must be >= 1")
    settings = BenchSettings(
        backends=backends, precisions=precisions, batches=batches, warmup_s=warmup, duration_s=duration,
        repeats=repeats, threads=threads, e2e_dir=str(e2e_dir) if e2e_dir else None,
        checkpoint=str(checkpoint) if checkpoint else None, cuda_graph=cuda_graph, trtexec=trtexec,
        caption_tokens=caption_tokens,
    )
    progress = None if quiet else (lambda msg: click.echo(f"fakedet bench: {msg}", err=True))
    with ModelPackage.open(package) as pkg:
        report = run_bench(pkg, settings, progress)
    click.echo(format_table(report))
    if json_out:
        write_json(report, json_out)
    if csv_out:
        write_csv(report, csv_out)
    if plot_out and report["results"]:
        from .plot import write_plot

        write_plot(report, plot_out)
    if not report["results"]:
        click.echo("fakedet bench: no combination could run (reasons above)", err=True)
        return 2
    return 0
