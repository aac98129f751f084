"""Strict key mapping from a published state dict onto a fakedet module: every published
tensor is used, every target tensor is filled, every shape matches; otherwise one error
names the leftovers, the missing tensors and the mismatched shapes."""

from __future__ import annotations

from typing import Callable

import torch

from fakedet.errors import PackageError

# buffers a published file may lack without changing a forward in eval mode
OPTIONAL_BUFFERS = ("num_batches_tracked",)
SHOWN = 6


def _names(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def state_dict_in(obj: object, where: str, containers: tuple[str, ...] = ("model",),
                  training_extras: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """The tensor dict inside a published object: the object itself when it is one, else the
    entry under the first of `containers` it has. Other top-level entries must be known
    `training_extras` (optimizer state and the like: not model weights). Returns (state,
    ignored top-level keys)."""
    if not isinstance(obj, dict):
        raise PackageError(where, f"expected a dict of tensors, found a {type(obj).__name__}")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), []
    for key in containers:
        if key in obj and isinstance(obj[key], dict):
            others = [k for k in obj if k != key]
            unknown = [str(k) for k in others if k not in training_extras]
            if unknown:
                raise PackageError(where, f"unexpected top-level entries beside '{key}': {_names(unknown)}")
            return dict(obj[key]), [str(k) for k in others]
    top = [str(k) for k in obj]
    raise PackageError(where, f"no state dict found (top-level keys: {_names(top) or 'none'}; "
                              f"expected tensors, or a dict under {' or '.join(repr(c) for c in containers)})")


def strip_prefix(state: dict, prefix: str = "module.") -> tuple[dict, bool]:
    """Drop a wrapper prefix (DataParallel's 'module.') when every key has it."""
    if state and all(str(k).startswith(prefix) for k in state):
        return {str(k)[len(prefix):]: v for k, v in state.items()}, True
    return state, False


def map_onto(source: dict, target: dict[str, torch.Tensor], rename: Callable[[str], str | None],
             where: str, what: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename `source` keys onto `target` (a module's state dict), strictly.

    Returns (mapped tensors in the target's dtypes, notes). Raises one PackageError naming
    every problem: published keys nothing uses, target tensors nothing fills (except
    OPTIONAL_BUFFERS, kept at their initial value), shape mismatches, non-tensor values."""
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    leftovers, wrong, duplicate = [], [], []
    claimed: set[str] = set()  # targets a published tensor was named for (misshapen or duplicated)
    converted: set[str] = set()
    for key, value in source.items():
        new = rename(str(key))
        if not isinstance(value, torch.Tensor):
            leftovers.append(f"{key} (a {type(value).__name__}, not a tensor)")
            continue
        if new is None or new not in target:
            leftovers.append(str(key))
            continue
        claimed.add(new)
        if new in mapped:
            duplicate.append(f"{origin[new]} and {key} -> {new}")
            continue
        want = target[new]
        if tuple(value.shape) != tuple(want.shape):
            wrong.append(f"{key} {tuple(value.shape)} vs {new} {tuple(want.shape)}")
            continue
        if value.dtype != want.dtype:
            if value.is_floating_point() != want.is_floating_point():
                wrong.append(f"{key} dtype {value.dtype} vs {new} {want.dtype}")
                continue
            converted.add(f"{value.dtype}->{want.dtype}")
        mapped[new] = value.detach().to(want.dtype).contiguous().clone()
        origin[new] = str(key)
    missing = [k for k in target if k not in mapped and k not in claimed and not k.endswith(OPTIONAL_BUFFERS)]
    groups = (("published tensor(s) nothing uses", leftovers), ("model tensor(s) not in the file", missing),
              ("shape/dtype mismatch(es)", wrong), ("pair(s) of published tensors for one target", duplicate))
    problems = [f"{len(items)} {label}: {_names(items)}" for label, items in groups if items]
    if problems:
        raise PackageError(where, f"does not fit {what}: " + "; ".join(problems))
    notes = []
    kept = [k for k in target if k not in mapped]
    for k in kept:
        mapped[k] = target[k].detach().clone()
    if kept:
        notes.append(f"{len(kept)} buffer(s) absent from the file kept at their initial value "
                     f"(unused in eval mode): {_names(kept)}")
    if converted:
        notes.append("converted " + ", ".join(sorted(converted)))
    return mapped, notes
