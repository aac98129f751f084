"""Real photographs without downloads: image files that installed wheels carry.

Files are located with importlib's spec lookup (the packages are not imported) and read
as plain files: scikit-image's `skimage.data` fetchers, which download on first use, are
never called. Photos are split by source photo, so no held-out crop shares a photo with
a training crop.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fakedet.errors import DataError

# (package, path inside the package, name, role). Textures and grey photos train the
# autoencoder and the detector on a wider range of detail; the held-out four match the
# split measured while planning (a cat, a flower, a portrait, a rocket on its pad).
PHOTOS = (
    ("skimage", "data/astronaut.png", "astronaut", "train"),
    ("skimage", "data/coffee.png", "coffee", "train"),
    ("skimage", "data/motorcycle_left.png", "motorcycle_left", "train"),
    ("skimage", "data/motorcycle_right.png", "motorcycle_right", "train"),
    ("skimage", "data/retina.jpg", "retina", "train"),
    ("skimage", "data/hubble_deep_field.jpg", "hubble_deep_field", "train"),
    ("skimage", "data/ihc.png", "ihc", "train"),
    ("skimage", "data/brick.png", "brick", "train"),
    ("skimage", "data/grass.png", "grass", "train"),
    ("skimage", "data/gravel.png", "gravel", "train"),
    ("skimage", "data/camera.png", "camera", "train"),
    ("skimage", "data/moon.png", "moon", "train"),
    ("skimage", "data/coins.png", "coins", "train"),
    ("skimage", "data/page.png", "page", "train"),
    ("sklearn", "datasets/images/china.jpg", "china", "train"),
    ("skimage", "data/chelsea.png", "chelsea", "heldout"),
    ("sklearn", "datasets/images/flower.jpg", "flower", "heldout"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "grace_hopper", "heldout"),
    ("skimage", "data/rocket.jpg", "rocket", "heldout"),
)
DISTRIBUTIONS = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}


@dataclass(frozen=True)
class Photo:
    name: str
    role: str  # "train" or "heldout"
    path: Path

    def load(self) -> np.ndarray:
        """HxWx3 uint8 RGB (grey photos repeated over the channels)."""
        with Image.open(self.path) as im:
            return np.asarray(im.convert("RGB"))


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the demo's photographs come from the {DISTRIBUTIONS[package]} wheel, which is not installed: "
            "pip install 'fakedet[demo]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def photos(role: str | None = None) -> list[Photo]:
    """The bundled photographs (all, or those of one role), checked to exist."""
    out = []
    for package, rel, name, photo_role in PHOTOS:
        if role is not None and photo_role != role:
            continue
        path = package_dir(package) / rel
        if not path.is_file():
            raise DataError(f"{path}: photo '{name}' is missing from the installed {DISTRIBUTIONS[package]} wheel")
        out.append(Photo(name, photo_role, path))
    return out


def grid_crops(image: np.ndarray, size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` size x size crops at random positions (photos smaller than `size` are refused)."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise DataError(f"a {w}x{h} photo is smaller than the {size}px crop")
    ys = rng.integers(0, h - size + 1, count)
    xs = rng.integers(0, w - size + 1, count)
    return [image[y:y + size, x:x + size] for y, x in zip(ys, xs)]
