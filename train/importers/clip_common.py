"""What the two CLIP-head families share: the backbone architecture they name and the
OpenAI CLIP preprocessing constants their code uses."""

from __future__ import annotations

from fakedet.manifest import CLIP_MEAN, CLIP_STD, InputSpec, Preprocess

from .backbone import OPENAI_VIT_L14, resolve_backbone
from .registry import ImportRequest


def clip_image_size(clip_model: str) -> int:
    from fakedet.train.models.clip import ensure_clip_config

    size = ensure_clip_config(clip_model)["vision_cfg"].get("image_size", 224)
    return int(size if isinstance(size, int) else size[0])


def clip_contract(clip_model: str, resize: bool) -> InputSpec:
    """CLIP mean/std at the backbone's input size: centre crop at native resolution
    (resize=False, black padding below the crop, as torchvision's CenterCrop does), or
    OpenAI CLIP's own preprocess (resize the shorter side, bicubic, then centre crop)."""
    n = clip_image_size(clip_model)
    if resize:
        pre = Preprocess(policy="resize-center-crop", size=(n, n), interpolation="bicubic", resize_shorter=n)
    else:
        pre = Preprocess(policy="center-crop", size=(n, n), interpolation="bicubic", small_images="pad", pad_value=0)
    return InputSpec(mean=CLIP_MEAN, std=CLIP_STD, dynamic_axes=("batch",), preprocess=pre).validate()


def backbone_for(request: ImportRequest, family: str) -> tuple[str, str]:
    """(clip_model, local safetensors path of its weights)."""
    clip_model = request.clip_model or OPENAI_VIT_L14
    return clip_model, resolve_backbone(request.backbone_weights, clip_model, family)


def backbone_facts(request: ImportRequest, clip_model: str, path: str) -> dict:
    """Provenance of the backbone: what was asked, which file it resolved to, its hash."""
    from fakedet.atomic import sha256_file

    return {"clip_model": clip_model, "given": str(request.backbone_weights), "file": path,
            "sha256": sha256_file(path)}
