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

from .models.evidence import EvidenceGraph, supports_evidence


def region_graph(model: nn.Module, arch: str) -> EvidenceGraph:
    """The model as (logit, map) for training; refused for an architecture without an exact map."""
    if not supports_evidence(model):
        raise DataError(f"--region-loss needs an architecture with an exact evidence map (global average "
                        f"pooling and a linear one-logit head); '{arch}' has none")
    return EvidenceGraph(model)


def region_loss(regions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE of every region's logit against its image's label."""
    target = labels.reshape(-1, 1, 1, 1).to(regions.dtype).expand_as(regions)
    return nn.functional.binary_cross_entropy_with_logits(regions, target)
