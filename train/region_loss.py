"""Per-region supervision of the evidence map (`fakedet train --region-loss W`).

The image loss trains only the mean of the map (the pooled logit), so a model can reach a
good image score with a map that is noise region by region: the evidence map then finds
spliced regions poorly. Aligned pairs give region labels for free: every region of a real
photo is real and every region of its reconstruction is generated. The region loss is the
binary cross-entropy of each region's logit against its image's label, averaged over the
regions, added to the image loss with weight W. The image score stays the mean of the map,
so inference, export and the package contract do not change.
"""

from __future__ import annotations

import torch
from torch import nn

from fakedet.errors import DataError

from .models.evidence import _features_fn, _linear_of


class RegionGraph(nn.Module):
    """(N,3,H,W) -> (logit (N,1) through the model's own head, Dropout included; map (N,1,h,w))."""

    def __init__(self, model: nn.Module, arch: str):
        super().__init__()
        features, linear = _features_fn(model), _linear_of(getattr(model, "fc", None) or nn.Identity())
        if features is None or linear is None:
            raise DataError(f"--region-loss needs an architecture with an exact evidence map (global average "
                            f"pooling and a linear one-logit head); '{arch}' has none")
        self.model = model
        self._features, self._linear = features, linear

    def forward(self, x):
        f = self._features(x)
        logit = self.model.fc(f.mean(dim=(2, 3)))
        regions = nn.functional.conv2d(f, self._linear.weight.reshape(1, -1, 1, 1), self._linear.bias)
        return logit, regions


def region_loss(regions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE of every region's logit against its image's label."""
    target = labels.reshape(-1, 1, 1, 1).to(regions.dtype).expand_as(regions)
    return nn.functional.binary_cross_entropy_with_logits(regions, target)
