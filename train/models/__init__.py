"""Detector architectures behind one registry (`--arch`).

    create_model("resnet50-nodown", pretrained="none")
    model_input_spec("clip-mlp", clip_model="ViT-B-32")
"""

from .registry import create_model, get_entry, list_models, model_input_spec, register_model

# The built-in architectures register themselves when imported (the registry imports none of them).
from . import clip, resnet, tiny  # noqa: E402, F401  isort: skip

__all__ = ["create_model", "get_entry", "list_models", "model_input_spec", "register_model"]
