"""Backends by name, each imported only when asked for.

An entry is a "module:Class" string plus fixed constructor arguments, resolved on
first use, so importing the runtime imports no inference library.

`torch` is an entry too, although its class lives in the training stage
(fakedet.train.torch_backend) and DESIGN's dependency direction forbids the runtime
to import train. The string is resolved only when a caller names `torch`: nothing in
the runtime imports train on any other path, and a machine without torch gets
BackendUnavailable with the install hint. The other way round (train registering
itself into the runtime on import) would make `torch` exist or not depending on
whether someone imported fakedet.train first, which is worse for `fakedet bench`.
"""

from __future__ import annotations

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


_ORT = "fakedet.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend"
ENTRIES: dict[str, Entry] = {e.name: e for e in (
    Entry("ort-cpu", _ORT, {"provider_set": "ort-cpu"}),
    Entry("ort-cuda", _ORT, {"provider_set": "ort-cuda"}, "pip install 'fakedet[gpu]'"),
    Entry("ort-trt", _ORT, {"provider_set": "ort-trt"}, "pip install 'fakedet[gpu]'"),
    Entry("tensorrt", "fakedet.runtime.backends.tensorrt_backend:TensorRTBackend", install="pip install 'fakedet[trt]'"),
    Entry("torch", "fakedet.train.torch_backend:TorchBackend", install="pip install 'fakedet[train]'",
          runs_artifacts=False),
)}


def artifact_backends() -> tuple[str, ...]:
    return tuple(n for n, e in ENTRIES.items() if e.runs_artifacts)


def other_backends() -> tuple[str, ...]:
    return tuple(n for n, e in ENTRIES.items() if not e.runs_artifacts)


def entry(name: str) -> Entry:
    if name not in ENTRIES:
        raise BackendUnavailable(f"unknown backend '{name}' (known: {', '.join(ENTRIES)})")
    return ENTRIES[name]


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
