"""Importers of published detector checkpoints: `fakedet import FAMILY WEIGHTS -o DIR`.

Each family is one file here (its facts, with sources, in its docstring) registering a
converter; `import_checkpoint` reads the published file safely, converts it onto one of
fakedet's models and writes a fakedet checkpoint (safetensors + config.json with the
family's preprocessing contract and threshold), which export, calibrate, build and the
runtime take as they take a training checkpoint."""

from __future__ import annotations

from pathlib import Path

from fakedet.errors import FakedetError

from .registry import Family, Imported, ImportRequest, get_family, list_families, register_family

__all__ = ["Family", "Imported", "ImportRequest", "get_family", "import_checkpoint", "list_families",
           "register_family"]


def import_checkpoint(family: str, weights: str | Path, out_dir: str | Path, backbone_weights: str | None = None,
                      clip_model: str | None = None, caption: str = "") -> tuple[Path, Imported]:
    """Convert the published `weights` of `family` into a fakedet checkpoint at `out_dir`."""
    from fakedet.atomic import sha256_file
    from fakedet.train.checkpoint import save_checkpoint

    from .published import read_published

    fam = get_family(family)
    unused = [flag for flag, given, used in (("--backbone-weights", backbone_weights, fam.needs_backbone),
                                             ("--clip-model", clip_model, fam.needs_backbone),
                                             ("--caption", caption, fam.takes_caption)) if given and not used]
    if unused:
        whole = "" if fam.needs_backbone else " (its file holds the whole detector)"
        raise FakedetError(f"{fam.name} does not take {', '.join(unused)}{whole}")
    weights = Path(weights)
    published = read_published(weights)
    request = ImportRequest(weights=str(weights), backbone_weights=backbone_weights, clip_model=clip_model,
                            caption=caption)
    result = fam.convert(published, request)
    config = {
        "arch": result.arch,
        "model_kwargs": result.model_kwargs,
        "input": result.input,
        "threshold": result.threshold,
        "backbone_weights": backbone_weights if fam.needs_backbone else f"{weights.name} (the whole detector)",
        "imported": {"family": fam.name, "summary": fam.summary, "weights_file": weights.name,
                     "weights_sha256": sha256_file(weights), **result.facts},
    }
    return save_checkpoint(out_dir, result.model, config), result
