"""Loading pretrained weights from local safetensors files (never pickle, never network)."""

from __future__ import annotations

from pathlib import Path

import torch

from fakedet.errors import FakedetError


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FakedetError(f"{path}: pretrained weights file not found (give a local .safetensors file, or 'none')")
    if path.suffix != ".safetensors":
        raise FakedetError(f"{path}: pretrained weights must be a .safetensors file (pickled .pt/.pth files are never loaded)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise FakedetError(f"{path}: not a readable safetensors file ({e})") from None


def strip_prefix(state: dict, prefixes=("module.", "model.")) -> dict:
    """Drop a wrapper prefix shared by every key (DDP's 'module.', Lightning's 'model.')."""
    for p in prefixes:
        if state and all(k.startswith(p) for k in state):
            state = {k[len(p):]: v for k, v in state.items()}
    return state


def state_mismatch(own: dict, state: dict, allow_missing=()) -> list[str]:
    """What keeps `state` from loading into a module whose state dict is `own`, in words."""
    missing = [k for k in own if k not in state and not k.startswith(tuple(allow_missing))]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in state if k in own and state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) e.g. {unexpected[:3]}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es) e.g. {wrong[:3]}")
    return problems


def load_into(module: torch.nn.Module, state: dict, source: str, skip=(), allow_missing=()) -> None:
    """Copy `state` into `module`, requiring every tensor to match in name and shape
    except keys starting with one of `skip` (ignored in the file) or `allow_missing`
    (left at their init: e.g. a new classification head)."""
    state = {k: v for k, v in strip_prefix(state).items() if not k.startswith(tuple(skip))}
    problems = state_mismatch(module.state_dict(), state, allow_missing)
    if problems:
        raise FakedetError(f"{source}: weights do not fit the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=False)
