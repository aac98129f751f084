"""The `fakedet` command: assembles each stage's commands, importing a stage only
when one of its commands runs (so `fakedet predict` never pays for torch)."""

from __future__ import annotations

import errno
import importlib
import os
import signal
import sys

import click

from . import __version__
from .errors import FakedetError, Terminated, printable

# command name -> (module, attribute, one-line help shown in `fakedet --help`)
COMMANDS = {
    "package": ("fakedet.calibration.package_cli", "package", "Wrap any ONNX image classifier into a model package."),
    "info": ("fakedet.runtime.cli", "info", "Show a package's manifest, artifacts and what can run it here."),
    "predict": ("fakedet.runtime.cli", "predict", "Score images: P(fake) per image."),
    "bench": ("fakedet.runtime.bench.cli", "bench", "Measure latency and throughput per backend, precision and batch."),
    "align": ("fakedet.train.align_cli", "align", "Build an aligned dataset by autoencoder reconstruction."),
    "train": ("fakedet.train.cli", "train", "Train a detector (resnet50-nodown, resnet-tiny-nodown, resnet50, clip-mlp, clip-linear)."),
    "eval": ("fakedet.train.eval_cli", "eval_", "Evaluate a checkpoint or package: AUC, AP, accuracy, ROC."),
    "export": ("fakedet.export.cli", "export", "Export a checkpoint to a model package (ONNX fp32/fp16, Triton)."),
    "build": ("fakedet.export.build_cli", "build", "Build a TensorRT plan for this GPU into a package."),
    "calibrate": ("fakedet.calibration.cli", "calibrate", "Calibrate INT8: QDQ ONNX, TensorRT cache, accuracy guard."),
    "import": ("fakedet.train.importers.cli", "import_", "Import a published detector checkpoint (CNNDetection, ...)."),
    "serve": ("fakedet.runtime.serve.cli", "serve", "HTTP service: batched scoring, limits, metrics, console."),
    "watch": ("fakedet.runtime.watch_cli", "watch", "Score video, stream or camera frames; alert on fakes."),
    "scan": ("fakedet.runtime.scan.cli", "scan", "Score an archive into resumable Parquet shards (local or Ray Data)."),
    "demo": ("fakedet.demo.cli", "demo", "Every stage on real photographs bundled in wheels, offline, in minutes."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            missing = getattr(e, "name", None) or str(e)
            return _unavailable(name, f"needs a module that is not installed ({missing}); "
                                      f"install the extra for it, e.g. pip install 'fakedet[train,export]'")
        return getattr(mod, attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, why: str) -> click.Command:
    @click.command(name, help=f"(unavailable here: {why})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args):
        raise FakedetError(f"'fakedet {name}' {why}")

    return cmd


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  fakedet package model.onnx --input-spec spec.json -o model.fdet
  fakedet info model.fdet
  fakedet predict model.fdet photos/ --json > scores.jsonl
  fakedet train --arch resnet50-nodown --data data/ --out runs/r50
  fakedet export runs/r50/best -o r50.fdet
  fakedet import cnndetection blur_jpg_prob0.5.pth -o ck/cnndetection
  fakedet calibrate r50.fdet --data calib/ --eval-data heldout/
  fakedet bench r50.fdet --backend ort-cpu --precision fp32,int8 --batch 1,8
  fakedet serve r50.fdet --port 8000
  fakedet watch r50.fdet --source rtsp://cam/stream --fps 2 --alert-frames 3
  fakedet scan archive/ --package r50.fdet --out results/

Exit codes: 0 all went well, 1 some items failed, 2 usage or input errors.""",
)
@click.version_option(__version__, "-V", "--version", prog_name="fakedet")
def cli():
    """fakedet: fake-image detectors from training to fast, calibrated engines."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return _run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv) -> int:
    try:
        rv = cli.main(args=argv, prog_name="fakedet", standalone_mode=False)
    except Terminated:
        click.echo("fakedet: terminated", err=True)
        return 143
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        return _write_failed(e)
    except SystemExit:
        if type(sys.stdout).__name__ != "_PacifyFlushWrapper":
            raise
        # click met a closed pipe (EPIPE), muted stdout and stderr, and exits 1: say it, exit 2
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        return _write_failed(OSError(errno.EPIPE, os.strerror(errno.EPIPE)))
    except FakedetError as e:
        click.echo(f"fakedet: error: {printable(e)}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("fakedet: aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return 2 if isinstance(e, click.UsageError) else e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("fakedet: interrupted", err=True)
        return 130
    try:  # what is still buffered fails here, not in the interpreter's exit, as a traceback
        sys.stdout.flush()
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        return _write_failed(e)
    return rv if isinstance(rv, int) else 0


WRITE_ERRNOS = {errno.ENOSPC, errno.EPIPE, errno.EDQUOT, errno.EFBIG, errno.EIO}


def _write_failed(e: OSError) -> int:
    """A full disk or a closed pipe: one line, exit 2; stdout is pointed at /dev/null so the
    interpreter's own flush at exit cannot fail again."""
    where = f" {e.filename}" if e.filename else ""
    click.echo(f"fakedet: error: cannot write the output{where}: {e.strerror or e}", err=True)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 2


if __name__ == "__main__":
    sys.exit(main())
