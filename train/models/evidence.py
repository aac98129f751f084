"""The evidence map of a fully convolutional detector: its pre-pooling features passed
through the same linear head, one logit per region.

For a head that is linear after global average pooling the map is exact: the mean of
the map equals the pooled logit (mean(W f + b) = W mean(f) + b), so the map splits the
image's score over its regions without changing it. `EvidenceGraph` wraps such a model
so that the ONNX export has two outputs, `logit` (N x 1) and `evidence` (N x 1 x h x w).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

EVIDENCE_OUTPUT = "evidence"


def _linear_of(head: nn.Module) -> nn.Linear | None:
    """The one-logit nn.Linear of a head that is `Linear` or `Sequential(Dropout..., Linear)`."""
    layers = list(head) if isinstance(head, nn.Sequential) else [head]
    if not layers or not isinstance(layers[-1], nn.Linear) or layers[-1].out_features != 1:
        return None
    if any(not isinstance(m, nn.Dropout) for m in layers[:-1]):
        return None
    return layers[-1]


def _features_fn(model: nn.Module) -> Callable | None:
    """x -> the feature map the model pools, for the architectures we know; None otherwise."""
    from .tiny import TinyNodown

    if isinstance(model, TinyNodown) and isinstance(model.pool, nn.AdaptiveAvgPool2d):
        return lambda x: model.stages(model.stem(x))
    from torchvision.models import ResNet

    if isinstance(model, ResNet) and isinstance(model.avgpool, nn.AdaptiveAvgPool2d):
        def feats(x):
            x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
            return model.layer4(model.layer3(model.layer2(model.layer1(x))))
        return feats
    return None


def supports_evidence(model: nn.Module) -> bool:
    """True when the model's logit is a linear head on globally averaged features (exact map)."""
    return _features_fn(model) is not None and _linear_of(model.fc) is not None


class EvidenceGraph(nn.Module):
    """(N, 3, H, W) -> (logit (N, 1), evidence (N, 1, h, w)); the logit is the model's own."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not supports_evidence(model):
            raise ValueError(f"{type(model).__name__} has no exact evidence map (needs conv features, global "
                             "average pooling and a linear one-logit head)")
        self.model = model
        self._features = _features_fn(model)
        self._linear = _linear_of(model.fc)

    def forward(self, x):
        f = self._features(x)
        weight = self._linear.weight.reshape(1, -1, 1, 1)
        evidence = nn.functional.conv2d(f, weight, self._linear.bias)  # the head as a 1x1 convolution
        logit = self.model.fc(f.mean(dim=(2, 3)))  # the model's own head (its Dropout acts in training)
        return logit, evidence


def evidence_maps(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logit, evidence) of a supported model in eval mode, without gradients."""
    with torch.no_grad():
        return EvidenceGraph(model).eval()(x)
