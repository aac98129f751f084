"""The CLIP backbone a head-only family needs (--backbone-weights): a local .safetensors
file, or an open_clip pretrained tag whose safetensors weights are already in this
machine's Hugging Face cache. Nothing is downloaded: a tag that is not cached gets a
message saying how to fetch it once, or to pass a file."""

from __future__ import annotations

import os
from pathlib import Path

from fakedet.errors import FakedetError

# OpenAI's CLIP ViT-L/14 (the `clip` package: UniversalFakeDetect and the robust-CLIP detector
# load it with clip.load('ViT-L/14')) uses QuickGELU (open_clip's pretrained config of the
# 'openai' tag says quick_gelu: True); open_clip's 'ViT-L-14' config uses GELU, so building
# that one around the OpenAI weights changes every activation. 'ViT-L-14-quickgelu' is right.
OPENAI_VIT_L14 = "ViT-L-14-quickgelu"


def cached_tag_file(clip_model: str, tag: str, cache_dir: str | Path | None = None) -> str | None:
    """The cached safetensors file of an open_clip tag, or None (never downloads)."""
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, get_pretrained_cfg

    hub = (get_pretrained_cfg(clip_model, tag) or {}).get("hf_hub", "")
    if not hub:
        return None
    model_id, filename = os.path.split(hub)
    names = [HF_SAFE_WEIGHTS_NAME]
    if filename and filename.endswith((".bin", ".pth", ".pt")):
        names.insert(0, filename.rsplit(".", 1)[0] + ".safetensors")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in names:
        found = try_to_load_from_cache(model_id, name, cache_dir=cache_dir)
        if isinstance(found, str) and Path(found).is_file():
            return found
    return None


def resolve_backbone(value: str | None, clip_model: str, family: str, cache_dir: str | Path | None = None) -> str:
    """A local .safetensors path holding `clip_model`'s weights, from a file or a cached tag."""
    fetch = (f"python -c \"import open_clip; open_clip.create_model('{clip_model}', pretrained='openai')\"")
    if not value:
        raise FakedetError(
            f"{family} publishes only its head: give --backbone-weights, a local .safetensors of {clip_model} "
            f"(OpenAI CLIP weights) or the open_clip tag 'openai' once it is in the Hugging Face cache ({fetch})")
    path = Path(value)
    if path.suffix or path.exists():
        if not path.is_file():
            raise FakedetError(f"{path}: backbone weights file not found")
        if path.suffix != ".safetensors":
            raise FakedetError(f"{path}: backbone weights must be a .safetensors file (a pickled backbone is never "
                               f"loaded); or give the open_clip tag 'openai'")
        return str(path)
    import open_clip

    from fakedet.train.models.clip import ensure_clip_config

    ensure_clip_config(clip_model)
    tags = open_clip.list_pretrained_tags_by_model(clip_model)
    if value not in tags:
        raise FakedetError(f"--backbone-weights '{value}' is neither a local .safetensors file nor an open_clip tag "
                           f"of {clip_model} (tags: {', '.join(tags) or 'none'})")
    found = cached_tag_file(clip_model, value, cache_dir)
    if found is None:
        raise FakedetError(
            f"open_clip tag '{value}' of {clip_model} is not in this machine's Hugging Face cache as safetensors, "
            f"and fakedet import never downloads: fetch it once ({fetch.replace('openai', value)}) or pass a local "
            f".safetensors file")
    return found
