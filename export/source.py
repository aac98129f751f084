"""What an export starts from: a training checkpoint (model.safetensors + config.json)
checked before any work, and the manifest built from its config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fakedet.atomic import sha256_file
from fakedet.errors import DataError, FakedetError, ManifestError, first_line
from fakedet.manifest import InputSpec, Manifest, OutputSpec, Threshold


@dataclass
class ExportSource:
    model: object  # torch.nn.Module in eval mode
    config: dict
    checkpoint: Path | None = None


def load_source(path: str | Path, say=None) -> ExportSource:
    """The checkpoint's model and config; its layout and config (train.checkpoint's checks:
    pickled files, missing files, unknown architecture) are checked before the weights load.
    `say(line)` hears when the (possibly long) loading starts."""
    from fakedet.train.checkpoint import checkpoint_dir, load_checkpoint, read_config

    path = checkpoint_dir(path)
    if say is not None:
        say(f"loading {path} ({read_config(path)['arch']}) ...")
    try:
        model, config = load_checkpoint(path)
    except FakedetError:
        raise
    except Exception as e:  # safetensors / state-dict mismatch: name the file
        raise DataError(f"{path}: cannot load the checkpoint ({type(e).__name__}: {first_line(e)})") from None
    model.eval()
    return ExportSource(model, config, path)


def _find(config: dict, key: str):
    """A provenance field at the top level or one level down (training / data sections)."""
    if key in config:
        return config[key]
    for v in config.values():
        if isinstance(v, dict) and key in v:
            return v[key]
    return None


def backbone_weights(config: dict) -> str | None:
    """What the backbone started from: 'none' (random), a tag or a file; None when unrecorded."""
    value = config.get("backbone_weights")
    if value is None:
        value = _find(config, "pretrained_init")  # checkpoints from before backbone_weights
    return None if value is None else str(value)


def _threshold(value) -> Threshold:
    if value is None:
        return Threshold()
    if isinstance(value, (int, float)):
        return Threshold(value=float(value), method="checkpoint")
    if isinstance(value, dict):
        return Threshold.from_dict(value, "checkpoint config threshold")
    raise ManifestError(f"checkpoint config: threshold must be a number or an object, got {value!r}")


def checkpoint_digest(path: Path | None) -> dict:
    if path is None:
        return {}
    from fakedet.train.checkpoint import CONFIG, WEIGHTS

    out = {"checkpoint": str(Path(path).resolve())}
    if (Path(path) / WEIGHTS).is_file():
        out["checkpoint_sha256"] = sha256_file(Path(path) / WEIGHTS)
        out["checkpoint_config_sha256"] = sha256_file(Path(path) / CONFIG)
    return out


def manifest_from_config(config: dict, name: str, checkpoint: Path | None = None) -> Manifest:
    """The package manifest from a checkpoint config: the input spec the model was trained
    with, a logit output, the threshold and the provenance of the weights."""
    where = "checkpoint config"
    if "input" in config:
        spec = InputSpec.from_dict(config["input"], f"{where} input")
    else:
        from fakedet.train.models import model_input_spec

        spec = model_input_spec(config["arch"], **config.get("model_kwargs", {}))
    provenance = {
        "exporter": "fakedet export",
        "training_config": config,
        "data_digest": _find(config, "data_digest"),
        "metrics": _find(config, "metrics"),
        **checkpoint_digest(checkpoint),
    }
    backbone = backbone_weights(config)
    if backbone is not None:
        provenance["backbone_weights"] = backbone
    return Manifest(
        name=name,
        architecture=str(config.get("arch", "unknown")),
        input=spec,
        output=OutputSpec(name="logit", kind="logit"),
        threshold=_threshold(config.get("threshold")),
        provenance=provenance,
    )
