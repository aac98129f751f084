"""Which TensorRT plan of a package can run here. Imports tensorrt only when asked."""

from __future__ import annotations

from fakedet.manifest import Artifact
from fakedet.package import ModelPackage


def installed_trt_version() -> str | None:
    try:
        import tensorrt as trt
    except Exception:
        return None
    return getattr(trt, "__version__", None)


def matching_plan(pkg: ModelPackage, precision: str = "auto") -> tuple[Artifact | None, str]:
    """(plan, reason) where plan is a trt-plan artifact built for this TensorRT and GPU, or None."""
    plans = pkg.manifest.artifacts_of("trt-plan")
    if not plans:
        return None, "the package has no TensorRT plan"
    version = installed_trt_version()
    if version is None:
        return None, "TensorRT is not installed here"
    return None, "no GPU check implemented yet"
