"""The importer registry (timm-style): each published family registers one converter
under its name; `fakedet import FAMILY ...` looks it up. A new family is one small file
in this folder that calls `register_family`: the registry finds it by itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fakedet.errors import FakedetError


@dataclass(frozen=True)
class Family:
    name: str
    convert: Callable  # (published: object, request: ImportRequest) -> Imported
    summary: str
    repository: str  # where its facts were read (owner/name on GitHub)
    weights: str  # the file people hold, e.g. "blur_jpg_prob0.5.pth"
    needs_backbone: bool = False  # True: --backbone-weights is required (the file holds only a head)
    aliases: tuple[str, ...] = ()
    takes_caption: bool = False  # --caption means something to this family


@dataclass
class ImportRequest:
    """What the user asked for, as the converters see it."""

    weights: str  # the published file (for messages)
    backbone_weights: str | None = None
    clip_model: str | None = None  # None: the family's own backbone architecture
    caption: str = ""  # robust-clip: the fixed caption folded into the head


@dataclass
class Imported:
    """A converter's result: a fakedet model holding the published weights, and the
    checkpoint config pieces that describe it."""

    model: object  # torch.nn.Module, eval mode
    arch: str
    model_kwargs: dict
    input: dict  # InputSpec.to_dict(): the family's preprocessing contract
    threshold: float
    facts: dict  # provenance: repository, sources, conventions, what was mapped/ignored


_FAMILIES: dict[str, Family] = {}


def register_family(*, name: str, summary: str, repository: str, weights: str,
                    needs_backbone: bool = False, aliases: tuple[str, ...] = (), takes_caption: bool = False):
    """Register `convert(published, request) -> Imported` as the importer of `name`."""

    def wrap(convert: Callable) -> Callable:
        for key in (name, *aliases):
            if key.lower() in _FAMILIES:
                raise ValueError(f"importer '{key}' is already registered")
        family = Family(name, convert, summary, repository, weights, needs_backbone, tuple(aliases), takes_caption)
        for key in (name, *aliases):
            _FAMILIES[key.lower()] = family
        return convert

    return wrap


def list_families() -> list[Family]:
    _ensure_builtin()
    seen: dict[str, Family] = {}
    for fam in _FAMILIES.values():
        seen.setdefault(fam.name, fam)
    return [seen[k] for k in sorted(seen)]


def get_family(name: str) -> Family:
    _ensure_builtin()
    fam = _FAMILIES.get(str(name).lower())
    if fam is None:
        known = ", ".join(f.name for f in list_families())
        raise FakedetError(f"unknown detector family '{name}' (known: {known})")
    return fam


def _ensure_builtin() -> None:
    """Import every module of this package: each family file registers itself, so a new
    family is one new file and nothing else changes."""
    import importlib
    import pkgutil

    package = __name__.rsplit(".", 1)[0]
    for mod in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{mod.name}")
