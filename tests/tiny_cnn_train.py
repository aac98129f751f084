"""`fakedet train` with two tiny test architectures registered first, for torchrun to launch as a
script (a registered test model cannot reach `-m fakedet`): `tiny-cnn-nobn` (conv, ReLU, pool,
linear: nothing that depends on how the batch is split) and `tiny-cnn-bn` (with BatchNorm)."""

import sys

from torch import nn

from fakedet.cli import main
from fakedet.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec, Preprocess
from fakedet.train.models import list_models, register_model


def _spec(**_):
    return InputSpec(mean=IMAGENET_MEAN, std=IMAGENET_STD, dynamic_axes=("batch", "height", "width"),
                     preprocess=Preprocess(policy="whole-image", size=None)).validate()


def register() -> None:
    if "tiny-cnn-nobn" in list_models():
        return

    @register_model(name="tiny-cnn-nobn", input_spec=_spec)
    def _nobn(pretrained="none", width=6):
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, 1))

    @register_model(name="tiny-cnn-bn", input_spec=_spec)
    def _bn(pretrained="none", width=6):
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 1))


if __name__ == "__main__":
    register()
    sys.exit(main(sys.argv[1:]))
