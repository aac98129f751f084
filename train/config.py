"""The training configuration: defaults <- config file (YAML or TOML) <- CLI flags.
Every key is checked before any work; an unknown key stops with the list of known ones."""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from fakedet.errors import DataError

from .augment import AugmentConfig
from .losses import LOSSES

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("plateau", "cosine", "none")


@dataclass
class TrainConfig:
    arch: str = "resnet50-nodown"
    data: str = ""
    out: str = ""
    val_data: str = ""  # empty: hold out val_fraction of --data (pairs kept together)
    val_fraction: float = 0.1
    pretrained: str = "none"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 100
    batch: int = 32  # images per step (paired: batch/2 reals + their fakes)
    val_batch: int = 0  # 0: same as batch
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    sam_rho: float = 0.0  # > 0 wraps the optimiser in SAM
    loss: str = "bce"
    cvar_alpha: float = 0.8
    auc_eta: float = 0.6
    auc_p: float = 2.0
    gamma: float = 0.5
    region_loss: float = 0.0  # > 0: weight of the per-region BCE on the evidence map (train/region_loss.py)
    schedule: str = "plateau"  # plateau: early stopping on balanced accuracy, then lr/10 (alignment paper)
    patience: int = 10
    min_delta: float = 0.001
    lr_decay: float = 0.1
    min_lr: float = 1e-6
    paired: bool = True  # a real and its reconstruction side by side, same augmentation
    augment: dict = field(default_factory=dict)  # AugmentConfig overrides; {"off": true} disables
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: bool = True  # used only on GPU
    sync_bn: bool = True  # under torchrun on GPUs: BatchNorm statistics over the global batch
    cache_dir: str = ""  # feature cache for frozen backbones; default <out>/feature_cache
    threshold: float = 0.5
    resume: bool = True  # continue from <out>/last when it exists
    progress: bool = True

    def augment_config(self) -> AugmentConfig | None:
        d = dict(self.augment)
        if d.pop("off", False):
            return None
        return AugmentConfig.from_dict(d)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "TrainConfig":
        from .models import get_entry

        if not self.data:
            raise DataError("--data is required (a folder with 0_real/ and 1_fake/, or a CSV list)")
        if not self.out:
            raise DataError("--out is required (the run directory)")
        entry = get_entry(self.arch)
        params = inspect.signature(entry.builder).parameters
        bad = sorted(set(self.model_kwargs) - set(params) - {"pretrained"})
        if bad:
            known = [p for p in params if p != "pretrained"]
            raise DataError(f"model_kwargs {bad} are not options of '{self.arch}' (known: {', '.join(known)})")
        for name, value, allowed in (("optimizer", self.optimizer, OPTIMIZERS), ("loss", self.loss, LOSSES),
                                     ("schedule", self.schedule, SCHEDULES)):
            if value not in allowed:
                raise DataError(f"{name} '{value}' is not one of {', '.join(allowed)}")
        if self.epochs < 1 or self.batch < 1:
            raise DataError("epochs and batch must be >= 1")
        if self.paired and self.batch % 2:
            raise DataError(f"paired batches hold reals and their fakes: batch must be even, got {self.batch}")
        self.augment_config()
        return self


KEYS = {f.name for f in fields(TrainConfig)}

# each architecture's published recipe (alignment paper: arXiv 2410.11835; CNNDetection: arXiv 1912.11035;
# robust-CLIP: arXiv 2404.12908): the defaults under the file and the flags
RECIPES: dict[str, dict] = {
    "resnet50-nodown": {},  # the alignment paper: Adam 1e-4, BCE, paired batches, early stopping + lr/10
    "resnet50": {  # CNNDetection: unpaired, blur + JPEG (p 0.5), flip, crop at the deploy size
        "paired": False,
        "augment": {"resized_crop": 0.0, "color_jitter": 0.0, "grayscale": 0.0, "cutout": 0.0, "noise": 0.0,
                    "webp": 0.0, "rotate90": 0.0},
    },
    "clip-mlp": {  # robust CLIP: SAM(AdamW 1e-3, wd 0.01, rho 0.05), gamma CVaR + AUC, cosine, 32 epochs
        "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "sam_rho": 0.05, "loss": "cvar-auc",
        "schedule": "cosine", "epochs": 32, "batch": 2048, "paired": False,
    },
    "clip-linear": {"paired": False, "batch": 256},  # UniversalFakeDetect: linear probe, BCE, Adam 1e-4
}


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                try:
                    import tomli as tomllib
                except ImportError:
                    raise DataError(f"{path}: reading TOML on Python 3.10 needs 'pip install tomli' "
                                    "(or use a YAML config)") from None
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise DataError(f"{path}: config must be .yaml, .yml, .toml or .json")
    except DataError:
        raise
    except Exception as e:  # parser errors of three libraries
        raise DataError(f"{path}: cannot parse config ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: config must be a mapping of keys to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def make_config(file: str | Path | None = None, **overrides) -> TrainConfig:
    """Defaults, then the file, then overrides (None means 'not given'). Unknown keys stop here."""
    merged: dict = {}
    if file:  # a key set to null in the file keeps its default
        merged.update({k: v for k, v in read_config_file(file).items() if v is not None})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(merged) - KEYS)
    if unknown:
        where = f"{file}: " if file else ""
        raise DataError(f"{where}unknown config key(s) {unknown} (known: {', '.join(sorted(KEYS))})")
    for key in ("model_kwargs", "augment"):
        if not isinstance(merged.get(key, {}), dict):
            raise DataError(f"config key '{key}' must be a mapping")
    recipe = RECIPES.get(str(merged.get("arch", TrainConfig.arch)), {})
    merged = {**recipe, **merged}
    try:
        cfg = TrainConfig(**merged)
    except TypeError as e:
        raise DataError(f"bad config: {e}") from None
    for f in fields(TrainConfig):  # coerce scalar types (YAML may give "1e-4" as a string)
        v = getattr(cfg, f.name)
        default = getattr(TrainConfig(), f.name)
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise DataError(f"config key '{f.name}' must be true or false, got {v!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            try:
                setattr(cfg, f.name, type(default)(v))
            except (TypeError, ValueError):
                raise DataError(f"config key '{f.name}' must be a number, got {v!r}") from None
        elif isinstance(default, str):
            setattr(cfg, f.name, str(v))
    return cfg
