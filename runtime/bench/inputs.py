"""What the benchmark feeds a model: synthetic tensors of the input's shape, or real
images decoded and preprocessed each iteration (`--images`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fakedet.errors import FakedetError, ImageError
from fakedet.package import ModelPackage

WHOLE_IMAGE_HW = (224, 224)  # whole-image models take any size; the benchmark picks this one


def sample_shape(manifest) -> tuple[tuple, list[str]]:
    """Shape of one input tensor (no batch axis) from the manifest's input spec, and notes."""
    spec = manifest.input
    if spec.preprocess.size is None:
        h, w = WHOLE_IMAGE_HW
        return spec.tensor_shape(hw=WHOLE_IMAGE_HW), [f"whole-image model: synthetic inputs are {h}x{w}"]
    return spec.tensor_shape(), []


class BenchInputs:
    """Batches to feed: synthetic tensors, or real images decoded and preprocessed each iteration."""

    def __init__(self, pkg: ModelPackage, settings):  # a run.BenchSettings
        self.spec = pkg.manifest.input
        self.shape, self.notes = sample_shape(pkg.manifest)
        self.rng = np.random.default_rng(settings.seed)
        self.files = []
        self.failed = 0
        if settings.e2e_dir:
            from ..imageio import expand_paths

            self.files = expand_paths([Path(settings.e2e_dir)])
            if not self.files:
                raise FakedetError(f"{settings.e2e_dir}: no images found for --e2e")
        self._next = 0
        self._cache: dict[int, np.ndarray] = {}

    def synthetic(self, b: int) -> np.ndarray:
        if b not in self._cache:
            self._cache[b] = self.rng.standard_normal((b,) + tuple(self.shape)).astype(np.float32)
        return self._cache[b]

    def real(self, b: int) -> tuple[np.ndarray, float]:
        """Decode + preprocess b images (cycling through the folder); (batch, ms)."""
        from ..imageio import load_image
        from ..preprocess import preprocess_image

        t0 = time.perf_counter()
        tensors, tries = [], 0
        while len(tensors) < b:
            if tries > 2 * len(self.files) + b:
                raise FakedetError(f"{len(self.files)} images in the --e2e folder; too few decode")
            path = self.files[self._next % len(self.files)]
            self._next += 1
            tries += 1
            try:
                tensors.append(preprocess_image(load_image(path, self.spec.preprocess.max_pixels), self.spec, str(path)))
            except ImageError:
                self.failed += 1  # one bad image costs only itself
        shapes = {t.shape for t in tensors}
        if len(shapes) > 1:
            raise FakedetError("the --e2e images preprocess to different sizes (whole-image policy); "
                               "use same-size images to batch them")
        return np.stack(tensors), (time.perf_counter() - t0) * 1e3
