"""`fakedet calibrate`: INT8 calibration with an accuracy guard."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from fakedet.click_params import parsed_by
from fakedet.runtime.tensorrt_version import known_cache_tag_number

from .normalise import DEFAULT_METHOD as DEFAULT_NORMALISE
from .normalise import METHOD_HELP as NORMALISE_HELP
from .normalise import METHODS as NORMALISE_METHODS
from .ranges import METHODS
from .tensorrt_cache import ALGORITHMS, DEFAULT_TRT_VERSION
from .text_tower import DEFAULT_TEXT_TOWER, TEXT_TOWER_CHOICES


_trt_version = parsed_by(known_cache_tag_number)


@click.command(
    "calibrate",
    epilog="""\b
Examples:
  fakedet calibrate r50.fdet --data calib/ --eval-data heldout/
  fakedet calibrate r50.fdet --data calib/ --method percentile --samples 512 --seed 1
  fakedet calibrate r50.fdet --data calib/ --eval-data heldout/ --max-auc-drop 0.002 --trt-version 8.6.1
  fakedet calibrate other.onnx --input-spec spec.json --data calib/ --eval-data heldout/ -o other.fdet
  fakedet calibrate other.onnx --input-spec spec.json --data calib/ --normalise onnxslim -o other.fdet
  fakedet calibrate clip-cap.fdet --data calib.csv --eval-data heldout.csv
  fakedet calibrate clip-cap.fdet --data calib.csv --eval-data heldout.csv --text-tower int8

\b
Adds to the package (atomically): model.int8.onnx (QDQ INT8 for TensorRT >= 8: symmetric
int8, attrs target=tensorrt), model.int8-cpu.onnx (QDQ INT8 for ONNX Runtime on CPUs: uint8
activations from the same ranges, 7-bit weights so that every CPU tier computes the same
INT8, target=ort-cpu, with the measured cpu_speedup and the CPU the guard validated on),
calibration.cache (TensorRT native cache for implicit INT8, TensorRT <= 10),
calibration.json + calibration.png (ranges, data digest, accuracy guard, score shift).
Data folders: 0_real/ and 1_fake/ (optionally under generator folders) or a CSV;
calibration data may also be a plain folder of images. Results are keyed by model hash,
data digest, method and options: an unchanged run reuses them, any change recalibrates.

\b
A caption-aware package (image + caption, e.g. clip-mlp trained with use_text=true) reads
each image with its caption: --data and --eval-data are then CSVs with columns
path,label,caption; every caption is tokenized with the
package's tokenizer and fed beside its image wherever the graph runs (ranges, guard,
sensitivity, CPU check). A set without captions is refused unless the package scores
empty captions; a row whose caption the package refuses is skipped and counted.""",
)
@click.argument("package", type=click.Path(exists=True, path_type=Path))
@click.option("--data", required=True, type=click.Path(exists=True, path_type=Path), help="Calibration images.")
@click.option("--method", type=click.Choice(METHODS), default="percentile", show_default=True,
              help="Range method: percentile (99.999th of |x|), entropy (KL, 2048 bins), minmax, or mse (least "
                   "quantization error). Percentile is the default: on a ResNet-50 detector (benchmarks/results/"
                   "calibration_*.md) entropy kept AUC but moved P(fake) by 0.29 on average (55% of decisions "
                   "agreeing), percentile by ~0.1 with ~0.9 agreement.")
@click.option("--samples", type=click.IntRange(1), default=256, show_default=True,
              help="Calibration images to use (stratified over real/fake and generators).")
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="Weight scales per output channel.")
@click.option("--eval-data", type=click.Path(exists=True, path_type=Path),
              help="Held-out labelled images for the accuracy guard (both classes).")
@click.option("--eval-samples", type=click.IntRange(2), default=None, help="Cap on held-out images [default: all].")
@click.option("--max-auc-drop", type=click.FloatRange(0, 1), default=0.005, show_default=True,
              help="Largest FP32 -> INT8 AUC drop accepted; above it layers fall back to float.")
@click.option("--max-score-shift", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Largest mean |P_int8 - P_fp32| on the held-out data; above it the fallback engages too, and "
                   "if it stays above, calibration warns (or fails with --strict).")
@click.option("--max-map-shift", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="Packages with an evidence map: largest mean |delta P| per map region, INT8 against FP32; "
                   "judged with --max-score-shift.")
@click.option("--strict", is_flag=True,
              help="A missed --max-score-shift or --max-map-shift fails (exit 1, nothing written) instead of warning.")
@click.option("--max-float-layers", type=click.IntRange(0), default=8, show_default=True,
              help="Most layer groups the fallback may keep in float.")
@click.option("--sensitivity", is_flag=True, help="Run the per-layer sensitivity analysis even when the guard passes.")
@click.option("--sensitivity-budget", type=click.FloatRange(0), default=30.0, show_default=True, metavar="SECONDS",
              help="Time for measuring layer groups one by one (per INT8 flavour), most suspicious first by a cheap "
                   "error signal; the rest are ranked by that signal alone. The report says when it was cut short; "
                   "the fallback still checks every step on all held-out images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for choosing calibration images.")
@click.option("--num-bins", type=click.IntRange(128), default=2048, show_default=True,
              help="Histogram bins (entropy, percentile, mse).")
@click.option("--percentile", type=click.FloatRange(50, 100), default=99.999, show_default=True,
              help="Percentile for --method percentile.")
@click.option("--trt-version", callback=_trt_version, default=str(DEFAULT_TRT_VERSION), show_default=True,
              help="TensorRT version in the cache header: 100300, 10.3, 8.6.1 ...")
@click.option("--trt-calibrator", type=click.Choice(list(ALGORITHMS)), default="entropy2", show_default=True,
              help="Calibrator named in the cache header (trtexec and DeepStream use entropy2).")
@click.option("--input-spec", type=click.Path(exists=True, path_type=Path),
              help="For a bare ONNX classifier: the preprocessing/output spec (as for `fakedet package`).")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path),
              help="Write the calibrated package here [default: update PACKAGE in place].")
@click.option("--text-tower", type=click.Choice(TEXT_TOWER_CHOICES), default=DEFAULT_TEXT_TOWER, show_default=True,
              help="Caption-aware packages: fp32 keeps the text tower's nodes in float and makes the image tower and "
                   "the head INT8, so the caption's features are FP32's exactly: the text tower runs once per "
                   "caption, is small next to a large image tower (8% of ViT-L/14's multiply-adds) and its path "
                   "from the token ids (embedding gather, end-of-text argmax and gather) is integer indexing. int8 "
                   "quantizes it like the rest: faster where it is a large share (40% of ViT-B/32's: 1.87x FP32 on "
                   "a CPU against 1.36x, benchmarks/results/calibration_text_tower-*.md). Either way the guard "
                   "judges image+caption scores; the report and the artifacts' attrs record the choice and how "
                   "many of its nodes stay float.")
@click.option("--normalise", "normalise_method", type=click.Choice(NORMALISE_METHODS), default=DEFAULT_NORMALISE,
              show_default=True, help="With --input-spec: " + NORMALISE_HELP)
@click.option("--force", is_flag=True, help="Recalibrate even if an identical calibration is in the package.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def calibrate(package, data, method, samples, per_channel, eval_data, eval_samples, max_auc_drop, max_score_shift,
              max_map_shift, strict, max_float_layers,
              sensitivity, sensitivity_budget, seed, num_bins, percentile, trt_version, trt_calibrator, input_spec, out, text_tower,
              normalise_method, force, quiet):  # fmt: skip
    """Calibrate INT8 for PACKAGE (or a bare ONNX with --input-spec): QDQ ONNX, TensorRT
    calibration cache and a report, guarded against accuracy loss."""
    from fakedet.extras import require

    require("calibrate", ("onnx",))
    from .cpu_speed import verdict
    from .pipeline import Options
    from .pipeline import calibrate as run

    logging.basicConfig(level=logging.WARNING, format="fakedet: %(message)s")
    opts = Options(
        data=data, method=method, samples=samples, per_channel=per_channel, eval_data=eval_data,
        eval_samples=eval_samples, max_auc_drop=max_auc_drop, max_score_shift=max_score_shift, max_map_shift=max_map_shift, strict=strict, max_float_layers=max_float_layers,
        sensitivity=sensitivity, sensitivity_budget=sensitivity_budget, seed=seed, num_bins=num_bins, percentile=percentile, trt_version=trt_version,
        trt_calibrator=trt_calibrator, force=force, progress=not quiet, text_tower=text_tower, normalise=normalise_method,
    )  # fmt: skip
    res = run(package, opts, input_spec=input_spec, out=out)
    if res.reused:
        click.echo(f"reusing calibration in {res.dest} (key {res.key[:16]})")
        return 0
    rep = res.report
    if rep["ranges_reused"]:
        click.echo(f"reusing calibration ranges (key {rep['ranges_key'][:16]}); recomputing QDQ model and guard")
    click.echo(f"calibrated {res.dest}: {rep['method']}, {rep['samples']} images, data {rep['data_digest'][:12]}, key {res.key[:16]}")
    for file, a in rep["artifacts"].items():
        click.echo(summary_line(file, a, max_auc_drop, max_score_shift))
    tt = rep.get("text_tower")
    if tt:
        click.echo(f"text tower: {tt['precision']}, {tt['float_nodes']} of its {tt['nodes']} nodes in float "
                   f"({tt['quantized_nodes']} quantized in {next(iter(rep['artifacts']))})")  # fmt: skip
    sp = rep.get("cpu_speed")
    if sp:
        click.echo(f"CPU check (batch {sp['batch']}, {sp['measured_on']}): FP32 {sp['fp32_img_s']:.1f} img/s, "
                   f"model.int8-cpu.onnx {sp['int8_img_s']:.1f} img/s = {sp['speedup']:.2f}x")  # fmt: skip
        click.echo(verdict(sp["speedup"]))
    cpu_art = next((a for a in rep["artifacts"].values() if a["target"] == "ort-cpu"), None)
    if cpu_art and "tier_proof" in cpu_art:
        from fakedet.runtime.cpu_tier import describe

        click.echo(f"guard validated on {describe(rep['validated_cpu'])}; CPU artifact: {cpu_art['weights']} weights "
                   f"({'cannot saturate on any CPU tier' if cpu_art['tier_proof'] else 'results may differ on other CPU tiers'}"
                   f"; its kernels vs the exact quantization arithmetic here: max |dlogit| {cpu_art['kernels_vs_exact']:.2g})")  # fmt: skip
    return 0


def summary_line(file: str, a: dict, max_auc_drop: float, max_score_shift: float) -> str:
    """One line per artifact: AUC fp32 -> int8, decision agreement, mean |dP|, kept float."""
    g = a["guard"]
    kept = f"; kept in float: {', '.join(a['kept_float'])}" if a["kept_float"] else ""
    search = g.get("sensitivity_search")
    if search:
        kept += (f"; sensitivity: {search['measured']} of {search['groups']} layer groups measured in "
                 f"{search['seconds']:.0f} s" + (" (budget cut it short)" if search["budget_cut_short"] else ""))
    if "final" in g:
        f = g["final"]
        warn = "  <-- SCORE SHIFT OVER BUDGET" if g.get("shift_passed") is False else ""
        return (f"{file} ({a['target']}, {a['activations']}): AUC fp32 {f['fp32']['auc']:.4f} -> int8 "
                f"{f['int8']['auc']:.4f} (drop {f['auc_drop']:+.4f}, budget {max_auc_drop}); agreement "
                f"{f['shift']['decision_agreement']:.3f}; mean |dP| {f['shift']['mean_abs_dp']:.4f} "
                f"(budget {max_score_shift}){kept}{warn}")  # fmt: skip
    s = g["fidelity_on_calibration_set"]["shift"]
    return (f"{file} ({a['target']}, {a['activations']}): guard skipped (no --eval-data); on calibration images: "
            f"agreement {s['decision_agreement']:.3f}; mean |dP| {s['mean_abs_dp']:.4f}")
