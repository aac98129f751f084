"""A tiny caption-aware detector (clip-mlp with use_text, random weights, text tower
included) as a checkpoint and as an exported package, shared by the caption tests."""

from pathlib import Path

import pytest

from torch_helpers import micro_clip, one_thread  # noqa: F401  (pytest fixtures)


def caption_checkpoint(directory: Path, clip_name: str, seed: int = 0) -> Path:
    import torch

    from fakedet.train.checkpoint import save_checkpoint
    from fakedet.train.models import create_model

    torch.manual_seed(seed)
    model = create_model("clip-mlp", pretrained="none", clip_model=clip_name, use_text=True, hidden=8).eval()
    return save_checkpoint(directory, model, {"arch": "clip-mlp", "model_kwargs": {"clip_model": clip_name,
                                                                                  "use_text": True, "hidden": 8}})


def export_caption_package(checkpoint: Path, dest: Path, precision: str = "fp32", **opts) -> Path:
    from fakedet.export.pipeline import ExportOptions, export_package
    from fakedet.export.source import load_source

    export_package(load_source(checkpoint), dest, ExportOptions(precision=precision, **opts), echo=lambda _m: None)
    return dest


@pytest.fixture(scope="module")
def caption_package(tmp_path_factory, micro_clip):  # noqa: F811
    """(package, checkpoint) of a random-weight caption-aware detector on a 16 px micro CLIP."""
    root = tmp_path_factory.mktemp("caption-pkg")
    ckpt = caption_checkpoint(root / "ckpt", micro_clip)
    return export_caption_package(ckpt, root / "cap.fdet"), ckpt
