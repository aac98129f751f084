"""`luma=true`: the detector reads the image's luminance only, by a fixed first layer."""

import numpy as np
import torch
from PIL import Image

from fakedet.manifest import IMAGENET_MEAN, IMAGENET_STD
from fakedet.train.models import create_model
from fakedet.train.models.evidence import evidence_maps
from fakedet.train.models.luma import LumaInput


def _normalise(rgb: np.ndarray) -> torch.Tensor:
    x = (rgb.astype(np.float64) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))


def test_the_layer_gives_the_normalised_grey_image():
    rgb = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, independent of the layer
    want = _normalise(np.repeat(grey[..., None], 3, axis=2))
    got = LumaInput(IMAGENET_MEAN, IMAGENET_STD)(_normalise(rgb))
    assert torch.allclose(got, want, atol=1e-5)
    # and Pillow's own grey conversion (rounded to 8 bits) agrees to half a grey level
    pil = np.asarray(Image.fromarray(rgb).convert("L").convert("RGB"))
    assert torch.allclose(got, _normalise(pil), atol=0.6 / 255 / min(IMAGENET_STD))


def test_a_luma_model_cannot_see_colour_and_keeps_its_exact_map():
    torch.manual_seed(0)
    model = create_model("resnet-tiny-nodown", width=4, luma=True).eval()
    assert not any(n.startswith("stem.0.") for n, _ in model.named_parameters())  # fixed, never trained
    rgb = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    grey = np.asarray(Image.fromarray(rgb).convert("L").convert("RGB"))
    swapped = rgb[..., ::-1].copy()  # red and blue swapped: another luminance, other logits (not a constant model)
    with torch.no_grad():
        a, b = model(_normalise(rgb)), model(_normalise(swapped))
        assert torch.allclose(model(_normalise(grey)), a, atol=0.05)
    assert not torch.allclose(a, b, atol=1e-4)
    logit, regions = evidence_maps(model, _normalise(rgb))
    assert torch.allclose(regions.mean(dim=(2, 3)), logit, atol=1e-5)
    plain = create_model("resnet-tiny-nodown", width=4)
    with torch.no_grad():
        assert not torch.allclose(plain(_normalise(grey)), plain(_normalise(rgb)), atol=1e-3)


def test_resnet50_nodown_takes_the_option_too():
    model = create_model("resnet50-nodown", luma=True).eval()
    rgb = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    with torch.no_grad():
        a = model(_normalise(rgb))
        b = model(_normalise(np.repeat(grey[..., None], 3, axis=2)))
    assert torch.allclose(a, b, atol=1e-4)
    logit, regions = evidence_maps(model, _normalise(rgb))
    assert torch.allclose(regions.mean(dim=(2, 3)), logit, atol=5e-5)
