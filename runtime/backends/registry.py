"""Backends by name, each imported only when asked for.

An entry is a "module:Class" string plus fixed constructor arguments, resolved on
first use, so importing the runtime imports no inference library.

Backends outside the runtime (`torch`, whose class lives in the training stage) are
plugins: a distribution declares them as entry points of the group `fakedet.backends`
(fakedet's own pyproject.toml declares `torch`), so the runtime never names a module of
another stage (DESIGN's dependency direction) and a plugin exists whether or not
anybody imported its stage first. A plugin runs what it finds itself (torch runs the
checkpoint), not the package's artifacts; its class is imported only when named, and a
machine without its libraries gets BackendUnavailable with the install hint.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field

from fakedet.errors import BackendError, BackendUnavailable


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "module:Class"
    kwargs: dict = field(default_factory=dict)  # fixed constructor arguments
    install: str = "pip install fakedet"
    #: chosen from a package's artifacts by selection.choose; False: a backend that runs
    #: something else (torch runs the checkpoint) and is reached by name only
    runs_artifacts: bool = True


PLUGIN_GROUP = "fakedet.backends"
PLUGIN_INSTALL = {"torch": "pip install 'fakedet[train]'"}  # the hint when a plugin's libraries are missing

_ORT = "fakedet.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend"
BUILTIN: dict[str, Entry] = {e.name: e for e in (
    Entry("ort-cpu", _ORT, {"provider_set": "ort-cpu"}),
    Entry("ort-cuda", _ORT, {"provider_set": "ort-cuda"}, "pip install 'fakedet[gpu]'"),
    Entry("ort-trt", _ORT, {"provider_set": "ort-trt"}, "pip install 'fakedet[gpu]'"),
    Entry("tensorrt", "fakedet.runtime.backends.tensorrt_backend:TensorRTBackend", install="pip install 'fakedet[trt]'"),
)}


@functools.lru_cache(maxsize=1)
def entries() -> dict[str, Entry]:
    """The built-in backends and the installed plugins (a plugin cannot replace a built-in).
    Reading the installed distributions' metadata costs milliseconds: only when a plugin is named."""
    from importlib.metadata import entry_points

    plugins = {ep.name: Entry(ep.name, ep.value, install=PLUGIN_INSTALL.get(ep.name, "install its package"),
                              runs_artifacts=False)
               for ep in entry_points(group=PLUGIN_GROUP) if ep.name not in BUILTIN}
    return {**BUILTIN, **dict(sorted(plugins.items()))}


def artifact_backends() -> tuple[str, ...]:
    return tuple(BUILTIN)  # plugins run what they find themselves


def other_backends() -> tuple[str, ...]:
    return tuple(n for n, e in entries().items() if not e.runs_artifacts)


def entry(name: str) -> Entry:
    known = entries()
    if name not in known:
        raise BackendUnavailable(f"unknown backend '{name}' (known: {', '.join(known)})")
    return known[name]


def backend_class(name: str):
    """The class registered under `name`, imported now."""
    e = entry(name)
    module, attr = e.target.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as err:
        raise BackendUnavailable(f"{name}: needs {err.name or err}, which is not installed here ({e.install})") from None


def create(name: str, model_path, **options):
    """A backend `name` for `model_path` (not loaded yet); unknown options are refused."""
    return backend_class(name)(model_path, **entry(name).kwargs, **options)


def split_options(name: str, options: dict) -> tuple[dict, dict]:
    """(the options backend `name` takes, those it does not) for settings meant for
    whichever backend runs (`auto`, or one `--threads` for every row of a bench). An
    option that no runtime backend takes is a mistake and is refused."""
    takes = backend_class(name).OPTIONS
    kept = {k: v for k, v in options.items() if k in takes}
    rest = {k: v for k, v in options.items() if k not in takes}
    if rest:
        known = set().union(*(backend_class(n).OPTIONS for n in artifact_backends()), takes)
        typos = sorted(set(rest) - known)
        if typos:
            raise BackendError(f"unknown backend option{'s' if len(typos) > 1 else ''} {', '.join(typos)} "
                               f"(known: {', '.join(sorted(known))})")
    return kept, rest
