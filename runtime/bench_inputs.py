"""What the benchmark feeds a model: the shape of one synthetic input."""

from __future__ import annotations

WHOLE_IMAGE_HW = (224, 224)  # whole-image models take any size; the benchmark picks this one


def sample_shape(manifest) -> tuple[tuple, list[str]]:
    """Shape of one input tensor (no batch axis) from the manifest's input spec, and notes."""
    spec = manifest.input
    if spec.preprocess.size is None:
        h, w = WHOLE_IMAGE_HW
        return spec.tensor_shape(hw=WHOLE_IMAGE_HW), [f"whole-image model: synthetic inputs are {h}x{w}"]
    return spec.tensor_shape(), []
