"""What a calibration starts from: the package's FP32 model (or a bare ONNX wrapped with an
input spec), where the result goes, and a caption-aware package's captions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fakedet.artifact_kinds import ONNX_FP32
from fakedet.atomic import sha256_file
from fakedet.errors import FakedetError, PackageError
from fakedet.package import ModelPackage
from fakedet.runtime.captions import IMAGE_ONLY, CaptionInput

from .files import FP32_FILE
from .normalise import DEFAULT_METHOD
from .wrap import smoke_test, wrap_onnx

log = logging.getLogger("fakedet.calibration")


@dataclass
class Source:
    manifest: object  # fakedet.manifest.Manifest
    fp32: Path
    sha256: str
    base: ModelPackage | None
    dest: Path
    captions: object = IMAGE_ONLY  # the package's CaptionInput, or IMAGE_ONLY (its null twin)


def open_source(source: Path, input_spec: Path | None, out: Path | None, work: Path,
                normalise_method: str = DEFAULT_METHOD) -> Source:
    """The model to calibrate, where its result goes, and (caption-aware packages) its captions' tokenizer."""
    if input_spec is not None:
        import onnx

        if source.suffix.lower() != ".onnx" or not source.is_file():
            raise PackageError(source, "--input-spec wraps a bare .onnx file; this is not one")
        model, manifest, notes = wrap_onnx(
            source, input_spec, architecture="unknown",
            provenance={"source_onnx": source.name, "wrapped_by": "fakedet calibrate --input-spec"},
            normalise_method=normalise_method)
        for note in notes:
            log.warning("note: %s", note)
        fp32 = work / FP32_FILE
        onnx.save(model, str(fp32))
        smoke_test(fp32, manifest)
        return Source(manifest, fp32, sha256_file(fp32), None, out or source.with_suffix(".fdet"))
    pkg = ModelPackage.open(source)
    art = pkg.manifest.artifact(ONNX_FP32)
    if art is None:
        raise PackageError(source, f"has no {ONNX_FP32} artifact to calibrate (fakedet export writes one)")
    fp32 = pkg.path_of(art)  # verifies its sha256: the recorded one is the file's
    if out is None:
        if not pkg.source.is_dir():
            raise PackageError(source, "is not a package directory; give -o NAME.fdet for the calibrated package")
        out = pkg.source
    return Source(pkg.manifest, fp32, art.sha256, pkg, out, CaptionInput.for_package(pkg))


def existing_package(dest: Path) -> ModelPackage | None:
    try:
        return ModelPackage.open(dest) if dest.is_dir() else None
    except FakedetError:
        return None
