"""A fixed first layer that keeps only an image's luminance (`--model-opt luma=true`).

A detector of generation traces that reads colour learns the colours of its training photos:
the demo's detector called saturated real photos (a pink flower, a rocket under a blue sky)
generated, while the same crops converted to grey were ranked perfectly (held-out AUC of
reconstructions 0.708 -> 1.000 on the flower, 0.910 -> 1.000 on the rocket, the same weights).
With this layer the model sees grey by construction, in training, in the exported graph and
in every runtime, and the input contract (normalised RGB) does not change.

The layer maps the normalised RGB tensor to the normalised tensor of the grey image
(ITU-R 601 luma, Pillow's `convert("L")`, repeated over the three channels): a 1x1
convolution with fixed weights, held as buffers so that training never moves them.
"""

from __future__ import annotations

import torch
from torch import nn

LUMA_WEIGHTS = (0.299, 0.587, 0.114)


class LumaInput(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        m, s, w = (torch.tensor(v, dtype=torch.float32) for v in (mean, std, LUMA_WEIGHTS))
        # y = sum_c w_c (x_c s_c + m_c); out_o = (y - m_o) / s_o
        self.register_buffer("weight", ((w * s)[None, :] / s[:, None])[:, :, None, None])
        self.register_buffer("bias", (float((w * m).sum()) - m) / s)

    def forward(self, x):
        return nn.functional.conv2d(x, self.weight, self.bias)
