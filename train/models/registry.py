"""A timm-style model registry: architectures register a builder under a name;
`create_model(name, ...)` builds one, `model_input_spec(name, ...)` says what
tensor it eats, without building it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fakedet.errors import FakedetError
from fakedet.manifest import InputSpec


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable  # (pretrained: str, **kwargs) -> nn.Module
    input_spec: Callable  # (**kwargs) -> InputSpec
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(fn: Callable | None = None, *, name: str | None = None,
                   input_spec: Callable | None = None, description: str = ""):
    """Register a model builder. Use bare (`@register_model`: the name is the function
    name with '_' -> '-') or with arguments (`@register_model(name=..., input_spec=...)`).

    A builder takes `pretrained` plus its own keyword arguments and returns an
    nn.Module whose forward maps a normalized float32 NCHW batch to (N, 1) logits."""

    def wrap(f: Callable) -> Callable:
        key = name or f.__name__.replace("_", "-")
        if key in _REGISTRY:
            raise ValueError(f"model '{key}' is already registered")
        spec_fn = input_spec or getattr(f, "input_spec", None)
        if spec_fn is None:
            raise ValueError(f"model '{key}' needs an input_spec function")
        _REGISTRY[key] = ModelEntry(key, f, spec_fn, description or (f.__doc__ or "").strip().split("\n")[0])
        return f

    return wrap(fn) if fn is not None else wrap


def list_models() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_entry(arch: str) -> ModelEntry:
    _ensure_builtin()
    if arch not in _REGISTRY:
        raise FakedetError(f"unknown architecture '{arch}' (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[arch]


def create_model(arch: str, pretrained: str = "none", **kwargs):
    """Build `arch`. `pretrained`: "none" (random init), a local weights file, or a
    name the architecture understands (an open_clip tag; "imagenet" for resnets)."""
    return get_entry(arch).builder(pretrained=str(pretrained or "none"), **kwargs)


def model_input_spec(arch: str, **kwargs) -> InputSpec:
    """The input tensor `arch` expects (preprocessing policy, mean/std, axes), built
    without instantiating the model. Accepts the same kwargs as create_model."""
    kwargs.pop("pretrained", None)
    return get_entry(arch).input_spec(**kwargs)


def _ensure_builtin() -> None:
    # the built-in architectures register themselves on import
    from . import clip, resnet, tiny  # noqa: F401
