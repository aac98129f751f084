"""`fakedet eval`: AUC, AP, accuracies, per-generator rows, robustness, ROC for a checkpoint or a package."""

from __future__ import annotations

import json
from pathlib import Path

import click

EPILOG = """\b
MODEL is a checkpoint directory (model.safetensors + config.json, from `fakedet train`),
run with PyTorch, or a model package (NAME.fdet, zipped package, or .onnx with a
manifest), run through the fakedet runtime. Both read and preprocess images with the
runtime's code, so a checkpoint and its export are compared by the same tool.

\b
DATA: a folder with 0_real/ and 1_fake/ (optionally under generator folders, which
give per-generator rows; a generator folder holding only 1_fake/ is measured against
the top-level reals), or a CSV with columns path,label[,generator][,caption].

\b
A caption-aware model (clip-mlp trained with use_text=true, or its package) reads
each image with the CSV's caption, and is scored a second time with the captions
shuffled across the set: that AUC is what the image alone carries, and the report
(metrics.json "captions", a dashed curve in roc.png) shows how much of the score
comes from the text. Where real and fake captions come from different sources (D3),
the text can carry the label: a large gap is a leak, not detection.

\b
Writes to --out: metrics.json (every figure), scores.csv (P(fake) per image),
roc.png, and with --robustness robustness.png. An image is called fake when
P(fake) >= threshold. Unreadable images are skipped, counted and named (exit code 1).

\b
Robustness conditions (on the decoded image, before the model's preprocessing):
  downscale:F  both sides x F (bicubic, antialiased)    jpeg:Q / webp:Q  re-encode at quality Q
  blur:S       Gaussian blur, sigma S pixels
Default sweep: downscale 0.75,0.5,0.25; jpeg 95,75,50,30; webp 95,75,50; blur 1,2,3.

\b
Single process: eval scores one dataset on one device and is not run under torchrun
(the metrics need every score at once). Evaluate the checkpoint that rank 0 of a
torchrun training wrote (<out>/best) with one plain `fakedet eval` afterwards.

\b
Verdicts (packages): --fit-calibration CAL fits temperature scaling (or, with
--calibration-method, Platt scaling: temperature plus a shift, or an isotonic map) on the
labelled set CAL, then measures the
operating points fpr-1%, fpr-5% and balanced on --data (a separate held-out set: sharing an
image is refused) with the calibrated P(fake), and writes both into the package's manifest
(--save-to for a new package). --out gets calibration.json (ECE and AUC before/after) and
calibration.png (the reliability diagram); the evaluation then runs on the calibrated package.
--operating-point NAME decides at a point of the manifest instead of its threshold.

\b
Spliced images (--splice RECON_DIR, packages only): each real image of DATA/0_real/ gets
two splices, a half (left or right) and a random rectangle of 25-50% of the area replaced
by the same region of its reconstruction (RECON_DIR/NAME, same size). Reported in
metrics.json "splice" and splice.png: pixel-level localisation AUC of the evidence map,
the spliced images the whole-image score misses, and how many of those the `partial`
verdict catches at a threshold chosen for <= 5% false partials on untouched reals
(chosen on half of them, measured on the other half). --set-partial writes that
threshold into the package (docs/evidence-maps.md).

\b
Examples:
  fakedet eval d.fdet --data heldout/ --splice heldout/reconstructed/1_fake --out eval/splice
  fakedet eval r50.fdet --data thresholds/ --fit-calibration calib/ --out eval/r50
  fakedet eval r50.fdet --data test/ --operating-point fpr-1%
  fakedet eval runs/r50/best --data test/ --out eval/r50
  fakedet eval r50.fdet --data test/ --out eval/r50-onnx --backend ort-cpu
  fakedet eval runs/r50/best --data test.csv --robustness --target-fpr 0.01
  fakedet eval r50.fdet --data test/ --robustness --sweep "jpeg:90,70 webp:80 blur:1.5"
"""


@click.command("eval", epilog=EPILOG, context_settings={"max_content_width": 100})
@click.argument("model", metavar="CHECKPOINT_OR_PACKAGE", type=click.Path(exists=True))
@click.option("--data", required=True, type=click.Path(exists=True), help="Dataset folder or CSV list.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder. Default: eval-<MODEL name> in the current folder.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Decision threshold on P(fake). Default: the model's own (checkpoint config or manifest).")
@click.option("--target-fpr", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Also report the lowest threshold whose false-positive rate is at most this.")
@click.option("--robustness", is_flag=True, help="Sweep perturbations (see below) and report each.")
@click.option("--sweep", default=None, metavar="CONDITIONS",
              help='Conditions for --robustness, e.g. "jpeg:90,70 blur:1". Implies --robustness.')
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Images per forward pass.")
@click.option("--backend", default="auto", show_default=True,
              help="Package backend: auto, ort-cpu, ort-cuda, ort-trt, tensorrt.")
@click.option("--precision", default="auto", show_default=True, help="Package precision: auto, fp32, fp16, int8.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Checkpoint device.")
@click.option("--caption-shuffles", type=click.IntRange(1, 100), default=1, show_default=True,
              help="Caption-aware models: how many shuffles of the captions the image-only control averages "
                   "(one pass over the set each; a small set wants several).")
@click.option("--operating-point", default=None, metavar="NAME",
              help="Packages: decide at this named operating point of the manifest (see `fakedet info`).")
@click.option("--fit-calibration", "calibration_data", default=None, type=click.Path(exists=True),
              help="Packages: fit a probability calibration on this held-out labelled set, measure the operating "
                   "points on --data, and write both into the package (see below).")
@click.option("--calibration-method", type=click.Choice(["temperature", "platt", "isotonic"]), default="temperature",
              show_default=True, help="With --fit-calibration: the map from logit to calibrated P(fake) "
                                      "(platt: temperature plus a shift, for a class prior unlike training's).")
@click.option("--save-to", type=click.Path(path_type=Path), default=None,
              help="With --fit-calibration: write the calibrated package here (default: update it in place).")
@click.option("--splice", "splice_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              metavar="RECON_DIR", help="Also measure evidence maps on spliced images (see below).")
@click.option("--set-partial", is_flag=True, help="With --splice: write the chosen partial threshold into the package.")
@click.option("--partial-window", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="With --splice: `partial` compares the highest mean region logit over windows of this "
                   "fraction of the map's side (0: single regions).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_(model, data, out, threshold, target_fpr, robustness, sweep, batch, backend, precision, device,
          caption_shuffles, operating_point, calibration_data, calibration_method, save_to, splice_dir, set_partial,
          partial_window, quiet):
    """Evaluate CHECKPOINT_OR_PACKAGE on labelled images: AUC, AP, accuracy at the threshold, real
    and fake accuracy, per-generator rows, the threshold for a target false-positive rate, ROC
    curves, and optionally a robustness sweep."""
    import os

    from fakedet.errors import DataError
    from fakedet.runtime.dataset_index import index_dataset

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise DataError("fakedet eval is single-process: run it without torchrun (e.g. on the checkpoint that "
                        "rank 0 wrote: fakedet eval RUN/best --data TEST)")
    from .eval import evaluate, open_scorer
    from .robustness import DEFAULT_SWEEP, parse_conditions

    conditions = parse_conditions(sweep if sweep else DEFAULT_SWEEP) if (robustness or sweep) else []
    samples = index_dataset(data)  # a bad dataset stops here, before the model loads
    out = Path(out) if out else Path(f"eval-{Path(model).name.removesuffix('.fdet')}")
    if calibration_data is not None:
        model = fit_calibration_step(model, calibration_data, data, samples, out, calibration_method, save_to,
                                     backend, precision, batch, quiet)
    if threshold is not None and operating_point is not None:
        raise click.UsageError("give --threshold or --operating-point, not both")
    scorer = open_scorer(model, backend=backend, precision=precision, device=device, operating_point=operating_point)
    try:
        report = evaluate(scorer, data, out, threshold, target_fpr, conditions, batch, progress=not quiet,
                          samples=samples, caption_shuffles=caption_shuffles)
    finally:
        scorer.close()
    o, t = report["overall"], report["threshold_for_target_fpr"]
    line = {k: (round(v, 6) if isinstance(v, float) else v)
            for k, v in o.items() if k in ("images", "auc", "ap", "accuracy", "real_accuracy", "fake_accuracy")}
    click.echo(json.dumps(line))
    if "captions" in report:
        c = report["captions"]
        click.echo(f"captions: AUC {c['image_and_caption']['auc']:.4f} with each image's own caption, "
                   f"{c['shuffled_captions']['auc']:.4f} with the captions shuffled (image only): "
                   f"{c['auc_from_captions']:+.4f} AUC comes from the text", err=True)
    click.echo(f"threshold {report['threshold']['value']:g}; for FPR <= {target_fpr:g}: threshold {t['threshold']:.6g} "
               f"(TPR {t['tpr']:.4f}); report in {out / 'metrics.json'}", err=True)
    if splice_dir is not None:
        from .splice_run import run_splice

        sp = run_splice(Path(model), Path(data), splice_dir, out, backend, precision, threshold, batch, set_partial,
                        partial_window)
        caught = sp["partial_caught_of_missed"]
        click.echo(f"splice: pixel AUC {sp['pixel_auc']:.4f} ({sp['source']} map); whole-image score misses "
                   f"{sp['whole_image_missed']}/{sp['images']['spliced']}; partial catches "
                   f"{'-' if caught is None else f'{caught:.1%}'} of those at {sp['false_partial_on_real']:.1%} "
                   f"false partials (mean region logit >= {sp['partial_logit']:.2f} over windows of "
                   f"{sp['partial_window']:g} of the side); {out / 'splice.png'}", err=True)
    bad = report["data"]["unreadable"]
    if bad["count"]:
        names = ", ".join(Path(f["path"]).name for f in bad["first"])
        click.echo(f"fakedet eval: {bad['count']} unreadable image(s) skipped: {names}", err=True)
        return 1
    return 0


def fit_calibration_step(model, calibration_data, data, samples, out, method, save_to, backend, precision, batch, quiet):
    """--fit-calibration: fit, measure, write the package; the evaluation then runs on it."""
    from fakedet.runtime.dataset_index import index_dataset

    from .eval import is_checkpoint
    from .eval_verdict import fit_verdict

    if is_checkpoint(Path(model)):
        raise click.UsageError("--fit-calibration writes into a model package: export the checkpoint first")
    report = fit_verdict(model, index_dataset(calibration_data), samples, out, method, backend, precision, batch,
                         progress=not quiet, calibration_source=calibration_data, threshold_source=data, save_to=save_to)
    h = report["held_out"]
    click.echo(f"calibration ({method}) fitted on {report['fitted_on']['count']} images: ECE on --data "
               f"{h['ece_before']:.4f} -> {h['ece_after']:.4f}, AUC {h['auc_before']:.4f} -> {h['auc_after']:.4f}; "
               f"operating points: " + ", ".join(f"{p['name']} (threshold {p['threshold']:.4g}, TPR {p['tpr']:.3f}, "
                                                f"FPR {p['fpr']:.3f})" for p in report["operating_points"]), err=True)
    return str(save_to or model)
