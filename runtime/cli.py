"""`fakedet predict` and `fakedet info`: numpy, Pillow and the chosen backend only."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from fakedet.artifact_kinds import TRT_PLAN
from fakedet.click_params import parsed_by
from fakedet.errors import BackendUnavailable, FakedetError, PackageError, first_line, printable
from fakedet.package import ModelPackage

from .imageio import expand_paths
from .selection import BACKENDS, PRECISIONS, choose, explain
from .serve.config import parse_size
from .verdict import verdict_lines, verdict_summary
from .verdict_cli import operating_point_option

CHUNK = 256  # images decoded and scored per step, so huge folders stream


@click.command(
    "predict",
    epilog="""\b
Examples:
  fakedet predict model.fdet photo.jpg
  fakedet predict model.fdet photos/ uploads/ --batch 16
  fakedet predict model.fdet photos/ --json > scores.jsonl
  fakedet predict model.onnx img.png --backend ort-cpu --threshold 0.8
  fakedet predict model.fdet uploads/ --operating-point fpr-1% --json
  fakedet predict clip-text.fdet post.jpg --caption "sunset over the harbour"
  fakedet predict clip-text.fdet uploads/ --captions captions.csv   # path,caption
\b
A caption-aware package (exported from clip-mlp with use_text=true) scores each
image with its caption: --caption for a single image, --captions for many (a CSV
with columns path and caption; relative paths are read against the CSV's folder).
An image without a caption fails with an error unless the package says an empty
caption is valid. An image-only package ignores captions.
\b
Directories are searched recursively for images; files named on the command line
are always tried, so a non-image is reported rather than silently skipped.
Exit codes: 0 every image scored, 1 some images failed (each says why), 2 usage
or package errors.""",
)
@click.argument("package", type=click.Path(path_type=Path))
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--backend", default="auto", show_default=True, type=click.Choice(("auto",) + BACKENDS),
              help="Inference backend; auto picks the fastest that can run here.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(("auto",) + PRECISIONS),
              help="Which artifact precision to run.")
@click.option("--batch", "batch_size", default=8, show_default=True, type=click.IntRange(1, 4096), help="Images per inference call.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="Decision threshold on P(fake) (default: the package's).")
@operating_point_option
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="CPU threads for ONNX Runtime.")
@click.option("--max-memory", default="4GB", show_default=True, callback=parsed_by(parse_size, FakedetError),
              help="Memory this run may use: images larger than it allows the model are refused, one by one.")
@click.option("--captions", "captions_csv", type=click.Path(path_type=Path), default=None,
              help="Caption-aware packages: a CSV of path,caption giving each image its caption.")
@click.option("--caption", "caption_text", default=None, help="Caption-aware packages: the caption of the one image given.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout (JSON lines).")
@click.option("--provenance/--no-provenance", default=True, show_default=True,
              help="With --json: each image's declared origin (C2PA, XMP, EXIF/PNG text) beside its score.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line on stderr.")
def predict(package, paths, backend, precision, batch_size, threshold, operating_point, threads, max_memory,
            captions_csv, caption_text, as_json, provenance, quiet) -> int:
    """Score images with a model package: P(fake) per image.

    PACKAGE is a NAME.fdet directory, a zipped package, or a bare .onnx file that
    carries a fakedet manifest. PATHS are image files and/or directories.
    """
    from .detector import Detector

    items = expand_paths(paths)
    if not items:
        raise FakedetError(f"no images found in {', '.join(map(str, paths))}")
    caption_of = _caption_source(captions_csv, caption_text, items)
    options = {"threads": threads} if threads else {}
    det = Detector.open(package, backend=backend, precision=precision, batch_size=batch_size, threshold=threshold,
                        operating_point=operating_point, **options)
    det.set_memory_budget(max_memory, "--max-memory")
    if not quiet:
        click.echo(f"fakedet: {printable(det.describe())}", err=True)
        if caption_of is not None and not det.takes_captions:
            click.echo("fakedet: an image-only model: the captions are not read", err=True)
    failed = scored = fakes = 0
    if not as_json:
        click.echo(f"{'P(fake)':>8}  {'verdict':<7}  path")
    try:
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            caps = [caption_of(p) for p in chunk] if caption_of is not None else None
            for p in det.predict(chunk, captions=caps, provenance=as_json and provenance):
                if p.ok:
                    scored += 1
                    fakes += int(bool(p.is_fake))
                else:
                    failed += 1
                if as_json:
                    click.echo(json_line(p))
                elif p.ok:
                    click.echo(f"{p.score:8.4f}  {'FAKE' if p.is_fake else 'real':<7}  {printable(p.source)}")
                else:
                    click.echo(f"{'-':>8}  {'ERROR':<7}  {printable(p.source)}: {printable(p.error)}")
            sys.stdout.flush()
    finally:
        det.close()
    if not quiet:
        click.echo(
            f"fakedet: {scored} scored ({fakes} fake at threshold {det.threshold:g}"
            f"{f', operating point {det.operating_point}' if det.operating_point else ''}), {failed} failed, "
            f"{len(items)} total",
            err=True,
        )
    return 1 if failed else 0


def _caption_source(captions_csv, caption_text, items):
    """path -> caption (None where none is given), or None when no caption was given."""
    from .captions import caption_for, read_captions_csv

    if captions_csv is not None and caption_text is not None:
        raise click.UsageError("give --caption (one image) or --captions (a CSV), not both")
    if caption_text is not None:
        if len(items) != 1:
            raise click.UsageError(f"--caption is the caption of one image; {len(items)} were given "
                                   "(use --captions CSV for many)")
        return lambda _path: caption_text
    if captions_csv is not None:
        table = read_captions_csv(captions_csv)
        return lambda path: caption_for(table, path)
    return None


def json_line(p) -> str:
    """One prediction as a JSON object: always valid JSON (a non-finite number, which the
    detector never reports as a score, would become null rather than NaN)."""
    d = p.to_dict()
    d["path"] = d.pop("source")
    d = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in d.items()}
    return json.dumps(d, allow_nan=False)


def _cannot_open(pkg: ModelPackage, choice) -> str | None:
    """Why `choice` fails when opened the way `predict` opens it (a custom op, an output
    the manifest cannot read), or None when it opens."""
    from .scoring import check_output
    from .selection import make_backend

    try:
        runner = make_backend(choice, pkg).open()
    except FakedetError as e:
        return str(e)
    except Exception as e:
        return f"{type(e).__name__}: {first_line(e)}"
    try:
        check_output(runner.output_spec, pkg.manifest.output, choice.artifact.file)
    except FakedetError as e:
        return str(e)
    finally:
        runner.close()
    return None


def _backend_lines(pkg: ModelPackage, problems: list) -> list[str]:
    lines, failed = [], {}
    try:
        c = choose(pkg, "auto")
        why_not = _cannot_open(pkg, c)
        if why_not:
            lines.append(f"auto -> {c.backend} with {c.artifact.file} cannot run: {why_not}")
            problems.append(f"{c.backend} cannot run {c.artifact.file}: {why_not}")
            failed[(c.backend, c.artifact.file)] = why_not
        else:
            lines.append(f"auto -> {c.backend} with {c.artifact.file} ({c.precision}): {c.reason}")
    except BackendUnavailable as e:
        lines.append(f"auto -> nothing can run it here: {e}")
    for b in BACKENDS:
        try:
            c = choose(pkg, b)
            why_not = failed.get((c.backend, c.artifact.file))
            lines.append(f"{b:<9} no: {why_not}" if why_not else f"{b:<9} yes: {c.artifact.file} ({c.precision})")
        except BackendUnavailable as e:
            lines.append(f"{b:<9} no: {str(e).split('; the package has')[0]}")
    lines.extend(explain(pkg))  # plan-by-plan reasoning
    return lines


@click.command(
    "info",
    epilog="""\b
Examples:
  fakedet info model.fdet
  fakedet info model.fdet --json
  fakedet info exported.onnx""",
)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and checks as JSON.")
@click.option("--no-verify", is_flag=True, help="Skip re-hashing the artifacts.")
def info(package, as_json, no_verify) -> int:
    """Show a package's manifest, its artifacts (hash-checked) and which backends can run it here
    (the automatic choice is opened as `predict` opens it)."""
    pkg = ModelPackage.open(package)
    problems = []
    checks = {}
    for art in pkg.manifest.artifacts:
        if no_verify:
            checks[art.file] = "not verified"
            continue
        try:
            pkg.verify_artifact(art)
            checks[art.file] = "ok"
        except PackageError as e:
            checks[art.file] = "HASH MISMATCH"
            problems.append(str(e))
    backends = _backend_lines(pkg, problems)
    m = pkg.manifest
    if as_json:
        click.echo(json.dumps({"manifest": m.to_dict(), "verification": checks, "backends": backends,
                               "verdict": verdict_summary(m)}, indent=2))
    else:
        def echo(line: str) -> None:  # manifest strings are the package author's: no raw escapes
            click.echo(printable(line))

        pre = m.input.preprocess
        echo(f"package      {pkg.source}")
        echo(f"name         {m.name} ({m.architecture}), schema v{m.schema_version}")
        size = "native size" if pre.policy == "whole-image" else f"{pre.size[0]}x{pre.size[1]}"
        echo(f"input        {m.input.name} {m.input.dtype} {m.input.layout} {m.input.channel_order}, "
                   f"dynamic {','.join(m.input.dynamic_axes) or 'none'}")
        echo(f"preprocess   {pre.policy} {size}, {pre.interpolation}, small images: {pre.small_images}, "
                   f"mean {list(m.input.mean)} std {list(m.input.std)}")
        if m.text_input is not None:
            tx = m.text_input
            echo(f"captions     {tx.name} {tx.dtype} [batch, {tx.context_length}] token ids ({tx.tokenizer_kind}, "
                 f"{tx.tokenizer}), truncation {tx.truncation}, empty caption: {tx.empty_caption}")
        echo(f"output       {m.output.name} ({m.output.kind})")
        echo(f"threshold    {m.threshold.value:g} ({m.threshold.method})")
        for line in verdict_lines(m):
            echo(line)
        for key in ("source", "checkpoint", "data_digest", "metrics", "parity"):
            if key in m.provenance:
                val = m.provenance[key]
                echo(f"{key:<12} {json.dumps(val) if isinstance(val, (dict, list)) else val}"[:300])
        echo("artifacts")
        for art in m.artifacts:
            extra = ""
            if art.kind == TRT_PLAN:
                a = art.attrs
                extra = f" TRT {a.get('trt_version')} sm{str(a.get('compute_capability', '')).replace('.', '')} {a.get('precision')}"
            echo(f"  {art.kind:<22} {art.file:<36} {art.size / 1e6:8.2f} MB  {checks[art.file]}{extra}")
        echo("here")
        for line in backends:
            echo(f"  {line}")
    pkg.close()
    if problems:
        for p in problems:
            click.echo(f"fakedet: error: {printable(p)}", err=True)
        return 2
    return 0
