"""A narrow ResNet without early downsampling: the alignment paper's detector idea at a
size that trains from scratch in minutes on two CPU cores."""

from __future__ import annotations

from torch import nn

from fakedet.manifest import IMAGENET_MEAN, IMAGENET_STD

from .luma import LumaInput
from .registry import register_model
from .resnet import _head_init, _resnet50_nodown_spec


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        skip = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + skip)


class TinyNodown(nn.Module):
    """Stem 3x3 stride 1 (no max-pool: the pixel-level traces of the decoder survive into
    the first block), four stages of one basic block each, global average pool, Dropout,
    one logit."""

    def __init__(self, width: int = 16, dropout: float = 0.2, luma: bool = False):
        super().__init__()
        widths = [width, width * 2, width * 4, width * 8]
        first = [LumaInput(IMAGENET_MEAN, IMAGENET_STD)] if luma else []
        self.stem = nn.Sequential(*first, nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        stages, cin = [], width
        for i, w in enumerate(widths):
            stages.append(BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Dropout(dropout), _head_init(nn.Linear(cin, 1)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


# the same input as resnet50-nodown: whole image, any size, ImageNet mean/std
@register_model(name="resnet-tiny-nodown", input_spec=_resnet50_nodown_spec)
def resnet_tiny_nodown(pretrained: str = "none", width: int = 16, dropout: float = 0.2, luma: bool = False) -> nn.Module:
    """Narrow ResNet (widths 16-128, 0.3M parameters), no early downsampling, 1-logit head; trains from scratch.
    luma=true: the model sees the image's luminance only (train/models/luma.py)."""
    model = TinyNodown(width, dropout, luma)
    if pretrained != "none":
        from .weights import load_into, read_safetensors

        load_into(model, read_safetensors(pretrained), pretrained)
    return model
