"""`fakedet build`: a TensorRT plan for this GPU, added to a model package."""

from __future__ import annotations

from pathlib import Path

import click

from fakedet.artifact_kinds import TRT_CALIBRATION_CACHE, TRT_PLAN
from fakedet.errors import PackageError

from . import tensorrt_rules as rules


@click.command(
    "build",
    epilog="""\b
Examples:
  fakedet build r50.fdet --precision fp16
  fakedet build r50.fdet --precision int8 --batch 1:8:32 --workspace 2G
  fakedet build r50.fdet --precision fp16 --dla 0            # Jetson DLA, GPU fallback
  fakedet build r50.fdet --precision fp16 --image-size 256:512:1024   # whole-image models
  fakedet build r50.fdet --precision fp16 --version-compatible --hardware-compat ampere+

\b
What each TensorRT builds from:
  8.5 / 8.6 / 10.x  fp32, fp16: model.onnx (+ FP16 builder flag)
                    int8: the QDQ ONNX (preferred from 10.1) or model.onnx + the
                    package's calibration cache, with INT8 + FP16 flags
  11.x              strongly typed: fp16 from model.fp16.onnx, int8 from the QDQ ONNX
The plan is written raw into plans/ (trtexec and DeepStream load it as it is); its
TensorRT version, GPU, precision and profiles go into the manifest. Without
TensorRT installed the command says so and exits with code 2.""",
)
@click.argument("package", type=click.Path(exists=True, path_type=Path))
@click.option("--precision", type=click.Choice(rules.PRECISIONS), default="fp16", show_default=True)
@click.option("--batch", default="1:8:32", show_default=True, help="Batch sizes of the optimization profile: MIN:OPT:MAX.")
@click.option("--image-size", default=None,
              help="Whole-image models: square image sides of the profile, MIN:OPT:MAX [default: 128:512:1024].")
@click.option("--workspace", default="4G", show_default=True, help="Builder workspace limit (e.g. 512M, 4G).")
@click.option("--dla", "dla_core", type=int, default=None, help="Build for this DLA core (Jetson), with GPU fallback.")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Timing cache file, read and updated [default: ~/.cache/fakedet/trt-timing/<trt>_<sm>.cache].")
@click.option("--version-compatible", is_flag=True, help="A plan later TensorRT versions can run (8.6+, lean runtime).")
@click.option("--hardware-compat", type=click.Choice(rules.HARDWARE_COMPAT), default="none", show_default=True,
              help="ampere+: a plan any Ampere-or-newer GPU can run (8.6+, not on DLA).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write the updated package here instead of updating PACKAGE in place.")
def build(package, precision, batch, image_size, workspace, dla_core, timing_cache, version_compatible,
          hardware_compat, output):
    """Build a TensorRT plan of PACKAGE for this GPU and this TensorRT, and record it in the package."""
    from fakedet.package import ModelPackage, PackageWriter

    from .tensorrt_build import build_plan, device_facts, import_tensorrt

    batch_range = rules.parse_range(batch, "--batch")
    sizes = rules.parse_range(image_size, "--image-size") if image_size else None
    workspace_bytes = rules.parse_size_bytes(workspace)
    pkg = ModelPackage.open(package)
    if not pkg.source.is_dir() and output is None:
        raise PackageError(pkg.source, "a zipped or bare-ONNX package cannot be updated in place; give -o NAME.fdet")
    pkg.verify()
    if pkg.manifest.takes_captions:
        raise PackageError(pkg.source, "a caption-aware package (image and caption inputs): fakedet's native "
                                       "TensorRT backend runs one-input models; run it with TensorRT through "
                                       "ONNX Runtime (--backend ort-trt), which builds and caches its engine itself")

    trt = import_tensorrt()
    version = rules.TrtVersion.parse(trt.__version__)
    cc, device_name = device_facts()
    recipe = rules.choose_recipe(version, precision, {a.kind for a in pkg.manifest.artifacts})
    for w in rules.check_options(version, precision, dla_core, version_compatible, hardware_compat, cc) + recipe.notes:
        click.echo(f"note: {w}", err=True)
    profiles = rules.profile_shapes(pkg.manifest.input, batch_range, sizes)
    source = rules.source_artifact(pkg.manifest, recipe.onnx_kind)
    cache_bytes = None
    if recipe.calibration == TRT_CALIBRATION_CACHE:
        cache_art = pkg.manifest.artifact(TRT_CALIBRATION_CACHE)
        cache_bytes = pkg.path_of(cache_art).read_bytes()
        rules.check_calibration_cache(cache_bytes.decode("ascii", "replace").partition("\n")[0].rstrip("\r"), version)
    tc = timing_cache or Path(rules.default_timing_cache(None, version, cc))
    tc.parent.mkdir(parents=True, exist_ok=True)

    click.echo(f"building {precision} plan with TensorRT {version} on {device_name} (sm{rules.cc_tag(cc)}) "
               f"from {source.file}", err=True)
    plan = build_plan(pkg.path_of(source), recipe, profiles, workspace_bytes, dla_core, tc, version_compatible,
                      hardware_compat, cache_bytes)

    name = rules.plan_filename(version, cc, precision, dla_core, hardware_compat)
    attrs = rules.plan_attrs(version, cc, device_name, precision, profiles, dla_core, version_compatible,
                             hardware_compat, source.file, recipe.calibration)
    dest = output or pkg.source
    with PackageWriter(dest, pkg.manifest, base=pkg) as w:
        w.staged_path(name).write_bytes(plan)  # raw engine: no header
        w.add_file(None, name, TRT_PLAN, **attrs)
    click.echo(f"wrote {dest / name} ({len(plan) / 1e6:.1f} MB)")
    return 0
