"""`fakedet scan`: score an archive into resumable Parquet result shards."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fakedet.errors import printable

from ..selection import BACKENDS, PRECISIONS
from .package_ship import SHIP_MODES
from .runner import ENGINES, ScanOptions, run_scan


@click.command(
    "scan",
    epilog="""\b
Examples:
  fakedet scan archive/ --package model.fdet --out results/
  fakedet scan paths.csv --package model.fdet --out results/ --workers 4 --batch 32
  fakedet scan index.parquet --path-column uri --package model.fdet --out results/
  fakedet scan archive/ --package model.fdet --out results/ --engine ray --concurrency 2
  ray start --head                     # then, on each other node: ray start --address HEAD:6379
  fakedet scan /shared/archive --package /shared/model.fdet --out /shared/results \\
      --engine ray --address auto --concurrency 8
\b
SOURCE is a folder (walked recursively for images), a CSV or text list of paths (a CSV
names its path column 'path', 'file', 'filename' or 'image', or has none: the first
column), or a Parquet file with such a column. Relative paths in a list are read
against the list's folder.
\b
RESULTS gets Parquet shards (part-NNNNNN.parquet, --shard-size rows each), one row per
image: path, size, sha256, p_fake, decision, threshold, error, model, package_sha256,
backend, precision, seconds. Each shard is written atomically and then listed in
scan-manifest.json; a scan that is killed or run again skips every image of a listed
shard and scores the rest (--rescore starts over). summary.json holds the counts,
failures by kind and throughput. A bad image is a row with its error, never a failed scan.
\b
--engine ray needs the extra: pip install 'fakedet[ray]'. Without --address a local
Ray runtime starts (127.0.0.1, no dashboard) and stops at the end. The package reaches
the workers by path (a folder on storage every node sees) or as bytes through the
object store (a zipped package or .onnx file: --ship bytes, the default for a file);
each worker checks its sha256.
\b
Exit codes: 0 every image scored, 1 some images failed (each row says why), 2 usage,
package or source errors.""",
)
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--package", "package", required=True, type=click.Path(path_type=Path),
              help="The model package (NAME.fdet folder, zipped package or .onnx with a manifest).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Result folder (created; a folder from an earlier scan of this package is resumed).")
@click.option("--engine", default="local", show_default=True, type=click.Choice(ENGINES),
              help="local: this machine's cores; ray: a Ray Data pipeline (local runtime or --address).")
@click.option("--rescore", is_flag=True, help="Drop the results already in --out and score every image again.")
@click.option("--batch", "batch_size", default=32, show_default=True, type=click.IntRange(1, 4096),
              help="Images per inference call (ray: per scoring actor call).")
@click.option("--shard-size", default=4096, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Rows per Parquet shard: the unit of resumption.")
@click.option("--workers", default=None, type=click.IntRange(0, 256),
              help="local: decode processes (default: one per core; 0 decodes in the scoring process).")
@click.option("--decode-timeout-s", default=20.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="local: an image whose decode takes longer fails its row (its decode process is killed).")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(("auto",) + BACKENDS),
              help="Inference backend (on every worker, for ray).")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(("auto",) + PRECISIONS),
              help="Which artifact precision to run.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="CPU threads for ONNX Runtime (per actor, for ray).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Decision threshold on P(fake) (default: the Detector's, from the package).")
@click.option("--path-column", default=None, help="The path column of a CSV or Parquet SOURCE.")
@click.option("--address", default=None, help="ray: join a running cluster ('auto', HOST:PORT or ray://HOST:10001).")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1, 4096),
              help="ray: scoring actors (one Detector each).")
@click.option("--decode-batch", default=64, show_default=True, type=click.IntRange(1, 100_000),
              help="ray: images per decode task.")
@click.option("--num-cpus", default=None, type=click.IntRange(1, 4096),
              help="ray: CPUs of the local runtime started without --address (default: all).")
@click.option("--ship", default="auto", show_default=True, type=click.Choice(SHIP_MODES),
              help="ray: the package travels by path (shared storage) or as bytes (object store).")
@click.option("-q", "--quiet", is_flag=True, help="No progress line and no summary on stderr.")
def scan(source, package, out, engine, rescore, batch_size, shard_size, workers, decode_timeout_s, backend, precision,
         threads, threshold, path_column, address, concurrency, decode_batch, num_cpus, ship, quiet) -> int:
    """Score an archive of images into Parquet result shards, resumably.

    Runs on this machine (--engine local) or on Ray Data (--engine ray), on one machine
    or a cluster; both write the same rows.
    """
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise click.ClickException("fakedet scan writes Parquet with pyarrow: pip install 'fakedet[scan]'") from None
    opts = ScanOptions(source=source, package=package, out=out, engine=engine, rescore=rescore,
                       batch_size=batch_size, shard_size=shard_size, workers=workers,
                       decode_timeout_s=decode_timeout_s, backend=backend,
                       precision=precision, threads=threads, threshold=threshold, path_column=path_column,
                       address=address, concurrency=concurrency, decode_batch=decode_batch, num_cpus=num_cpus,
                       ship=ship, progress=not quiet)
    summary = run_scan(opts)
    if not quiet:
        t = summary["totals"]
        click.echo(f"fakedet: scan: {summary['this_run']['rows']} images this run "
                   f"({summary['skipped_already_done']} already done), {summary['images_per_second']} images/s; "
                   f"{t['rows']} rows in {t['shards']} shards: {t['scored']} scored ({t['fake']} fake), "
                   f"{t['failed']} failed {json.dumps(summary['failures_by_kind'])}; "
                   f"summary: {printable(str(Path(out) / 'summary.json'))}", err=True)
    return 1 if summary["totals"]["failed"] else 0
