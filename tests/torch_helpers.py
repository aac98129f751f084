"""Shared by the torch-based tests: one torch thread per test, tiny open_clip configs."""

import json
from pathlib import Path

import pytest
import torch


def tiny_clip_config(width: int = 32, image_size: int = 32, patch_size: int = 16) -> dict:
    half = width // 2
    return {
        "embed_dim": half,
        "vision_cfg": {"image_size": image_size, "layers": 1, "width": width, "patch_size": patch_size, "head_width": half},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": half, "heads": 1, "layers": 1},
    }


def register_clip_config(directory: Path, name: str, config: dict) -> str:
    """Write an open_clip model config and register it under `name` (no weights, no download)."""
    import open_clip

    path = Path(directory) / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return name


@pytest.fixture(autouse=True)
def one_thread():
    # the CPU is shared: one intra-op thread avoids oversubscription (a ResNet-50 step runs ~3x faster)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A 32 px, one-layer ViT registered with open_clip."""
    return register_clip_config(tmp_path_factory.mktemp("clipcfg"), "fakedet-tiny-clip", tiny_clip_config())


@pytest.fixture(scope="module")
def micro_clip(tmp_path_factory):
    """A 16 px, one-layer, width-16 ViT: the cheapest CLIP backbone open_clip builds."""
    return register_clip_config(tmp_path_factory.mktemp("clipcfg"), "fakedet-micro-clip",
                                tiny_clip_config(width=16, image_size=16, patch_size=8))
