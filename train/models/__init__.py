"""Detector architectures behind one registry (`--arch`).

    create_model("resnet50-nodown", pretrained="none")
    model_input_spec("clip-mlp", clip_model="ViT-B-32")
"""

from .registry import create_model, get_entry, list_models, model_input_spec, register_model

__all__ = ["create_model", "get_entry", "list_models", "model_input_spec", "register_model"]
