"""ResNet-50 detectors: the alignment paper's `resnet50-nodown` and CNNDetection's `resnet50`."""

from __future__ import annotations

from torch import nn
from torchvision.models import resnet50 as tv_resnet50

from fakedet.errors import FakedetError
from fakedet.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec, Preprocess

from .luma import LumaInput
from .registry import register_model
from .weights import load_into, read_safetensors


def _imagenet_backbone(pretrained: str) -> nn.Module:
    """torchvision ResNet-50, ImageNet weights from a local safetensors file (torchvision
    or timm key names: they agree) or none. The ImageNet fc is dropped."""
    model = tv_resnet50(weights=None)
    if pretrained == "none":
        return model
    if pretrained == "imagenet":
        raise FakedetError(
            "pretrained 'imagenet' needs the weights as a local file: fakedet never downloads. Save torchvision's "
            "or timm's resnet50 state dict as .safetensors and pass its path (or use --pretrained none)"
        )
    load_into(model, read_safetensors(pretrained), pretrained, skip=("fc.",), allow_missing=("fc.",))
    return model


def _head_init(linear: nn.Linear) -> nn.Linear:
    nn.init.normal_(linear.weight, 0.0, 0.02)
    nn.init.zeros_(linear.bias)
    return linear


def _resnet50_nodown_spec(**_) -> InputSpec:
    return InputSpec(
        mean=IMAGENET_MEAN, std=IMAGENET_STD, dynamic_axes=("batch", "height", "width"),
        preprocess=Preprocess(policy="whole-image", size=None),
    ).validate()


@register_model(name="resnet50-nodown", input_spec=_resnet50_nodown_spec)
def resnet50_nodown(pretrained: str = "none", dropout: float = 0.5, luma: bool = False) -> nn.Module:
    """ResNet-50 without early downsampling (conv1 and max-pool stride 1), Dropout + 1-logit head (alignment paper).
    luma=true: the model sees the image's luminance only (train/models/luma.py)."""
    model = _imagenet_backbone(pretrained)
    model.conv1.stride = (1, 1)
    if luma:  # after the ImageNet weights are in: they know conv1 by its own name
        model.conv1 = nn.Sequential(LumaInput(IMAGENET_MEAN, IMAGENET_STD), model.conv1)
    model.maxpool.stride = 1
    model.fc = nn.Sequential(nn.Dropout(dropout), _head_init(nn.Linear(2048, 1)))
    return model


def _resnet50_spec(crop_size: int = 224, **_) -> InputSpec:
    return InputSpec(
        mean=IMAGENET_MEAN, std=IMAGENET_STD, dynamic_axes=("batch",),
        preprocess=Preprocess(policy="center-crop", size=(crop_size, crop_size), small_images="pad"),
    ).validate()


@register_model(name="resnet50", input_spec=_resnet50_spec)
def resnet50(pretrained: str = "none", crop_size: int = 224) -> nn.Module:
    """ImageNet ResNet-50 with a 1-logit fc (CNNDetection); centre crop at native resolution."""
    model = _imagenet_backbone(pretrained)
    model.fc = _head_init(nn.Linear(2048, 1))
    return model

