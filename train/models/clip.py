"""CLIP-feature detectors on any open_clip architecture: `clip-mlp` (robust-CLIP paper:
image [+ caption] features -> 3 x [Linear, BatchNorm1d, LeakyReLU, Dropout] -> 1 logit) and
`clip-linear` (UniversalFakeDetect: frozen image features -> one Linear).

The CLIP backbone is frozen: the trainer extracts features once, caches them and
trains only `head`. The deployed forward takes the image alone; caption text
features are an extra input only for a model trained with `use_text=True`
(the robust-CLIP paper's data, arXiv 2404.12908, gives reals and fakes captions from different
sources, so captions can leak the label: they are off by default)."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path

import torch
from torch import nn

from fakedet.errors import FakedetError
from fakedet.manifest import CLIP_MEAN, CLIP_STD, InputSpec, Preprocess

from .registry import register_model
from .weights import load_into, read_safetensors

DEFAULT_CLIP = "ViT-L-14"


def ensure_clip_config(clip_model: str, clip_config: dict | None = None) -> dict:
    """The open_clip config for `clip_model`; registers `clip_config` under that name
    first when open_clip does not know it (so a checkpoint of a custom config reloads)."""
    import open_clip

    cfg = open_clip.get_model_config(clip_model)
    if cfg is None and clip_config is not None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / f"{clip_model}.json"
            path.write_text(json.dumps(clip_config))
            open_clip.add_model_config(path)
        cfg = open_clip.get_model_config(clip_model)
    if cfg is None:
        raise FakedetError(
            f"unknown open_clip architecture '{clip_model}' (e.g. ViT-B-32, ViT-L-14; "
            f"open_clip.list_models() has all {len(open_clip.list_models())})"
        )
    return cfg


def clip_input_spec(clip_model: str = DEFAULT_CLIP, clip_config: dict | None = None,
                    policy: str = "resize-center-crop") -> InputSpec:
    cfg = ensure_clip_config(clip_model, clip_config)
    size = cfg["vision_cfg"].get("image_size", 224)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    pre_cfg = cfg.get("preprocess_cfg", {})
    mean = tuple(pre_cfg.get("mean", CLIP_MEAN))
    std = tuple(pre_cfg.get("std", CLIP_STD))
    interp = pre_cfg.get("interpolation", "bicubic")
    if policy == "resize-center-crop":
        pre = Preprocess(policy=policy, size=(h, w), interpolation=interp, resize_shorter=min(h, w))
    elif policy == "center-crop":
        pre = Preprocess(policy=policy, size=(h, w), interpolation=interp, small_images="pad")
    else:
        raise FakedetError(f"CLIP detectors take policy 'resize-center-crop' or 'center-crop', not '{policy}'")
    return InputSpec(mean=mean, std=std, dynamic_axes=("batch",), preprocess=pre).validate()


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _no_random_init_warning():
    """open_clip logs 'Model initialized randomly' whenever it builds without a tag, also
    when weights are loaded right after; fakedet says itself when a backbone stays random
    (random_backbone_note)."""
    drop = _DropRandomInitWarning()
    root = logging.getLogger()  # open_clip logs with logging.warning(): the root logger
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _bare_clip(clip_model: str) -> nn.Module:
    import open_clip

    with _no_random_init_warning():
        return open_clip.create_model(clip_model, pretrained=None)


def is_clip_arch(arch: str) -> bool:
    return arch in ("clip-mlp", "clip-linear")


def random_backbone_note(arch: str, backbone_weights: str | None, clip_model: str | None = None,
                         flag: str = "--pretrained") -> str | None:
    """The one line said when a CLIP architecture has no pretrained backbone weights, else None."""
    if not is_clip_arch(arch) or (backbone_weights not in (None, "", "none")):
        return None
    return (f"fakedet: WARNING: {arch} on a random {clip_model or DEFAULT_CLIP} backbone ({flag} none): "
            f"its features are noise and the detector will score near chance; give {flag} with an open_clip "
            f"tag (e.g. openai) or a local .safetensors of the backbone")


def build_clip(clip_model: str, pretrained: str, clip_config: dict | None = None) -> nn.Module:
    """An open_clip model: random ("none"), from an open_clip pretrained tag, or from a
    local .safetensors file of its state dict."""
    import open_clip

    ensure_clip_config(clip_model, clip_config)
    if pretrained == "none":
        return _bare_clip(clip_model)
    if Path(pretrained).suffix or Path(pretrained).exists():
        model = _bare_clip(clip_model)
        load_into(model, read_safetensors(pretrained), pretrained, allow_missing=("logit_bias", "logit_scale"))
        return model
    tags = open_clip.list_pretrained_tags_by_model(clip_model)
    if pretrained not in tags:
        raise FakedetError(
            f"'{pretrained}' is neither a local weights file nor an open_clip tag for {clip_model} "
            f"(tags: {', '.join(tags) or 'none'}; or use 'none')"
        )
    from fakedet.train.hub import fetching

    with fetching(f"--pretrained {pretrained} ({clip_model})",
                  "download them where the hub is reachable and pass the file: --pretrained PATH/weights.safetensors"):
        open_clip.pretrained.download_pretrained(open_clip.get_pretrained_cfg(clip_model, pretrained))  # before building
    return open_clip.create_model(clip_model, pretrained=pretrained)


@contextlib.contextmanager
def _mha_fastpath(enabled: bool):
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled and before)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


class CLIPDetector(nn.Module):
    """Frozen CLIP image encoder (+ text encoder when use_text) and a trainable head."""

    frozen_backbone = True

    def __init__(self, clip: nn.Module, head: nn.Module, feature_dim: int, use_text: bool, rebuild_kwargs: dict):
        super().__init__()
        self.use_text = bool(use_text)
        # keep only what is used: the image tower, or the whole CLIP when captions are encoded too
        self.encoder = clip if self.use_text else clip.visual
        self.encoder.requires_grad_(False)
        self.head = head
        self.feature_dim = feature_dim
        self.rebuild_kwargs = rebuild_kwargs  # recorded in checkpoints so reload needs no registry state

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout, fixed statistics
        return self

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        # the legacy ONNX exporter cannot express nn.MultiheadAttention's fused inference
        # kernel (aten::_native_multi_head_attention): trace the plain ops instead
        tracing = torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
        with _mha_fastpath(not tracing):
            if self.use_text:
                return self.encoder.encode_image(x)
            return self.encoder(x)

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.use_text:
            raise FakedetError("this model was built without use_text; it has no text encoder")
        return self.encoder.encode_text(tokens)

    def tokenize(self, captions: list[str]) -> torch.Tensor:
        return self.caption_tokenizer()(captions)

    def caption_tokenizer(self):
        """open_clip's tokenizer for this CLIP, refused unless it is CLIP's BPE (the one a
        package's runtime reproduces without torch). Built once per model: open_clip reads its
        vocabulary file each time it makes one."""
        if getattr(self, "_tokenizer", None) is None:
            import open_clip

            name = self.rebuild_kwargs["clip_model"]
            tokenizer = open_clip.get_tokenizer(name)
            if type(tokenizer).__name__ != "SimpleTokenizer":
                raise FakedetError(f"{name} tokenizes captions with {type(tokenizer).__name__}; caption-aware "
                                   "packages support CLIP's BPE tokenizer (open_clip SimpleTokenizer) only")
            self._tokenizer = tokenizer
        return self._tokenizer

    def token_ids(self, captions, context_length: int | None = None):
        """Captions (None: no caption, read as "") -> int32 numpy token ids, as a package takes them."""
        import numpy as np

        caps = ["" if c is None else c for c in captions]
        ids = self.caption_tokenizer()(caps, context_length=context_length or self.context_length)
        return ids.numpy().astype(np.int32)

    def features(self, x: torch.Tensor, text_features: torch.Tensor | None = None) -> torch.Tensor:
        """What the head reads: image features, concatenated with caption features when use_text."""
        f = self.image_features(x)
        if self.use_text:
            if text_features is None:
                raise FakedetError("this model was trained with caption text features; pass text_features")
            f = torch.cat([f, text_features.to(f.dtype)], dim=1)
        return f

    def forward(self, x: torch.Tensor, text_features: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, text_features))

    @property
    def context_length(self) -> int:
        return int(self.rebuild_kwargs["clip_config"].get("text_cfg", {}).get("context_length", 77))

    def score_tokens(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits from images and their captions' token ids: the deployed caption-aware graph."""
        with _mha_fastpath(not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())):
            return self.forward(x, self.text_features(tokens))


class CaptionAwareGraph(nn.Module):
    """(image, token ids) -> logit: what a caption-aware package's ONNX computes, and what
    the PyTorch reference runs."""

    def __init__(self, detector: CLIPDetector):
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.detector.score_tokens(image, text)


def takes_captions(model) -> bool:
    return bool(getattr(model, "use_text", False))


def _embed_dim(cfg: dict) -> int:
    return int(cfg["embed_dim"])


def mlp_head(in_dim: int, hidden: int, layers: int = 3, dropout: float = 0.335) -> nn.Sequential:
    blocks: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        blocks += [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.01), nn.Dropout(dropout)]
        d = hidden
    blocks.append(nn.Linear(d, 1))
    head = nn.Sequential(*blocks)
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=0.01, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)
    return head


def _clip_mlp_spec(clip_model: str = DEFAULT_CLIP, clip_config: dict | None = None, **_) -> InputSpec:
    return clip_input_spec(clip_model, clip_config, "resize-center-crop")


@register_model(name="clip-mlp", input_spec=_clip_mlp_spec)
def clip_mlp(pretrained: str = "none", clip_model: str = DEFAULT_CLIP, clip_config: dict | None = None,
             use_text: bool = False, hidden: int | None = None, layers: int = 3,
             dropout: float = 0.335) -> nn.Module:
    """Frozen CLIP features [+ caption features] -> 3 x [Linear, BN, LeakyReLU, Dropout] -> 1 logit (robust CLIP)."""
    clip = build_clip(clip_model, pretrained, clip_config)
    cfg = ensure_clip_config(clip_model, clip_config)
    dim = _embed_dim(cfg) * (2 if use_text else 1)
    head = mlp_head(dim, hidden or dim, layers, dropout)
    rebuild = {"clip_model": clip_model, "clip_config": cfg, "use_text": bool(use_text),
               "hidden": hidden or dim, "layers": layers, "dropout": dropout}
    return CLIPDetector(clip, head, dim, use_text, rebuild)


def _clip_linear_spec(clip_model: str = DEFAULT_CLIP, clip_config: dict | None = None, **_) -> InputSpec:
    return clip_input_spec(clip_model, clip_config, "center-crop")


@register_model(name="clip-linear", input_spec=_clip_linear_spec)
def clip_linear(pretrained: str = "none", clip_model: str = DEFAULT_CLIP, clip_config: dict | None = None) -> nn.Module:
    """Frozen CLIP image features -> one Linear (UniversalFakeDetect); centre crop without resize."""
    clip = build_clip(clip_model, pretrained, clip_config)
    cfg = ensure_clip_config(clip_model, clip_config)
    dim = _embed_dim(cfg)
    head = nn.Linear(dim, 1)
    nn.init.normal_(head.weight, 0.0, 0.02)
    nn.init.zeros_(head.bias)
    return CLIPDetector(clip, head, dim, False, {"clip_model": clip_model, "clip_config": cfg})
