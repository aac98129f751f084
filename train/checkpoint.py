"""Checkpoints: a directory holding `model.safetensors` (every tensor, backbone included)
and `config.json` (what rebuilds the model: arch, model_kwargs, input spec, threshold,
training info). Written atomically: a checkpoint directory is whole or absent.
Never pickled, so opening one never runs code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from fakedet import __version__
from fakedet.atomic import ordinary_file_modes, staged_dir
from fakedet.errors import FakedetError, PackageError

from .models.weights import state_mismatch

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATE_TENSORS = "training_state.safetensors"
STATE_JSON = "training_state.json"
REQUIRED = ("arch", "model_kwargs", "input", "threshold")


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as standalone contiguous CPU tensors (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def full_config(model: torch.nn.Module, config: dict) -> dict:
    """`config` completed with what reload needs: model_kwargs merged with the model's own
    rebuild kwargs, pretrained forced to "none", input spec, threshold, version."""
    from .models import model_input_spec

    cfg = json.loads(json.dumps(config))  # a deep, JSON-safe copy (fails early on odd values)
    if "arch" not in cfg:
        raise FakedetError("checkpoint config needs 'arch'")
    kwargs = dict(cfg.get("model_kwargs") or {})
    kwargs.update(json.loads(json.dumps(getattr(model, "rebuild_kwargs", {}))))
    kwargs.pop("pretrained", None)
    cfg["model_kwargs"] = kwargs
    cfg.setdefault("input", model_input_spec(cfg["arch"], **kwargs).to_dict())
    cfg["threshold"] = float(cfg.get("threshold", 0.5))
    cfg.setdefault("fakedet_version", __version__)
    return cfg


def save_checkpoint(out_dir: str | Path, model: torch.nn.Module, config: dict,
                    extra_tensors: dict | None = None, extra_json: dict | None = None) -> Path:
    """Write `out_dir/` = model.safetensors + config.json, replacing any old one atomically.

    extra_tensors / extra_json (the trainer's resume state: optimiser, RNG, epoch) go to
    training_state.safetensors / training_state.json in the same atomic directory."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    cfg = full_config(model, config)
    with staged_dir(out_dir) as stage:
        save_file(state_tensors(model), str(stage / WEIGHTS), metadata={"format": "pt", "arch": cfg["arch"]})
        (stage / CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        if extra_tensors is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()},
                      str(stage / STATE_TENSORS))
        if extra_json is not None:
            (stage / STATE_JSON).write_text(json.dumps(extra_json, indent=1) + "\n")
        ordinary_file_modes(stage)
    return out_dir


def checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint directory from itself or either of its files."""
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS, CONFIG):
        path = path.parent
    if not path.exists():
        raise PackageError(path, "no such checkpoint")
    if not path.is_dir():
        if path.suffix in (".pt", ".pth", ".ckpt", ".bin"):
            raise PackageError(path, "a pickled checkpoint; fakedet reads only safetensors checkpoints "
                                     f"(a directory with {WEIGHTS} + {CONFIG})")
        raise PackageError(path, f"not a fakedet checkpoint (expected a directory with {WEIGHTS} and {CONFIG})")
    missing = [f for f in (WEIGHTS, CONFIG) if not (path / f).is_file()]
    if missing:
        inside = run_checkpoints(path)
        if inside:
            raise PackageError(path, f"a training run, not a checkpoint; give one of its checkpoints: {', '.join(map(str, inside))}")
        raise PackageError(path, f"not a fakedet checkpoint, missing {', '.join(missing)}")
    return path


def run_checkpoints(run: str | Path) -> list[Path]:
    """The checkpoints inside a training run directory (best first, then last, then others)."""
    run = Path(run)
    try:
        subdirs = sorted((p for p in run.iterdir() if p.is_dir()), key=lambda p: ({"best": 0, "last": 1}.get(p.name, 2), p.name))
    except OSError:
        return []
    return [p for p in subdirs if (p / WEIGHTS).is_file() and (p / CONFIG).is_file()]


def read_config(path: str | Path) -> dict:
    """The checkpoint's config.json, checked: a JSON object naming a known architecture,
    with every REQUIRED field."""
    from .models import list_models

    path = checkpoint_dir(path)
    try:
        cfg = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackageError(path / CONFIG, f"not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise PackageError(path / CONFIG, "expected a JSON object")
    if "arch" not in cfg:
        raise PackageError(path / CONFIG, "no 'arch' field (which architecture the weights belong to)")
    known = list(list_models())
    if cfg["arch"] not in known:
        raise PackageError(path / CONFIG, f"unknown architecture '{cfg['arch']}' (known: {', '.join(known)})")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise PackageError(path / CONFIG, f"missing field(s) {missing}")
    return cfg


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint (no network: pretrained is "none", every tensor
    comes from the file), in eval mode. Returns (model, config)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .models import create_model

    path = checkpoint_dir(path)
    cfg = read_config(path)
    arch = cfg["arch"]
    kwargs = {k: v for k, v in dict(cfg["model_kwargs"]).items() if k != "pretrained"}
    try:
        model = create_model(arch, pretrained="none", **kwargs)
    except TypeError as e:
        raise PackageError(path / CONFIG, f"model_kwargs do not fit '{arch}': {e}") from None
    try:
        state = load_file(str(path / WEIGHTS), device=map_location)
    except (SafetensorError, OSError, ValueError) as e:
        raise PackageError(path / WEIGHTS, f"not a readable safetensors file ({e})") from None
    parts = state_mismatch(model.state_dict(), state)
    if parts:
        raise PackageError(path / WEIGHTS, f"tensors do not match architecture '{arch}': " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, cfg


def flatten_optimizer(state: dict) -> tuple[dict, dict]:
    """An optimiser state_dict as (tensors for safetensors, JSON for the rest): never pickled."""
    tensors, plain = {}, {}
    for idx, entry in state["state"].items():
        for k, v in entry.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                plain[f"{idx}.{k}"] = v
    return tensors, {"scalars": plain, "param_groups": state["param_groups"]}


def unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def load_resume_state(last: str | Path):
    """A run's `last` checkpoint as (its directory, weights, optimiser tensors, training
    state JSON, the training config it ran with), or None when there is nothing to resume."""
    try:
        last = checkpoint_dir(last)
    except Exception:
        return None
    if not (last / STATE_TENSORS).is_file():
        return None
    from safetensors.torch import load_file

    meta = json.loads((last / STATE_JSON).read_text())
    old = json.loads((last / "config.json").read_text()).get("training", {}).get("config", {})
    return last, load_file(str(last / WEIGHTS)), load_file(str(last / STATE_TENSORS)), meta, old


def remove_stale_staging(out: Path) -> None:
    """Hidden half-built checkpoints and logs of a run that was killed mid-write (never read)."""
    for name in ("best", "last"):
        for stale in out.glob(f".{name}.*.staging"):
            shutil.rmtree(stale, ignore_errors=True)
    for name in ("metrics.jsonl", "summary.json"):
        for stale in out.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
