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
    """Everything fakedet knows about one backend, in one place: how to build it and how
    `selection.choose` picks it. Adding a backend is adding one of these."""

    name: str
    target: str  # "module:Class"
    kwargs: dict = field(default_factory=dict)  # fixed constructor arguments
    install: str = "pip install fakedet"
    #: chosen from a package's artifacts by selection.choose; False: a backend that runs
    #: something else (torch runs the checkpoint) and is reached by name only
    runs_artifacts: bool = True
    #: `auto` tries the artifact backends lowest rank first (fastest first)
    speed_rank: int = 100
    #: what it runs: "plan" (a TensorRT plan built for this GPU and TensorRT version) or
    #: "onnx" (the package's ONNX of the first precision it has, in `precisions` order)
    runs: str = "onnx"
    #: ONNX Runtime execution providers, in priority order (ONNX backends)
    providers: tuple[str, ...] = ()
    #: the ONNX Runtime provider it cannot run without (None: always there, the CPU)
    needs_provider: str | None = None
    #: how to get that provider
    provider_install: str = "pip install onnxruntime-gpu"
    #: what `auto` tries, in order, when no precision is asked for
    precisions: tuple[str, ...] = ("fp32",)
    #: the INT8 QDQ flavour it runs (Artifact.int8_target): "tensorrt" or "ort-cpu"
    int8_target: str = "tensorrt"
    #: computes on a GPU (IO binding on by default)
    on_gpu: bool = False
    #: why `auto` ran it, said in the choice's reason
    reason: str = ""
    #: why it cannot run a caption-aware (two-input) package; None: it can
    no_captions: str | None = None
    #: INT8 goes behind FP32 where calibration measured it slower on the CPU, or the CPU's
    #: INT8 kernel tier is not the one the accuracy guard validated (cpu_tier)
    int8_cpu_checks: bool = False


PLUGIN_GROUP = "fakedet.backends"
PLUGIN_INSTALL = {"torch": "pip install 'fakedet[train]'"}  # the hint when a plugin's libraries are missing

_ORT = "fakedet.runtime.backends.onnxruntime_backend:OnnxRuntimeBackend"
_GPU_INSTALL = "pip install 'fakedet[gpu]'"
BUILTIN: dict[str, Entry] = {e.name: e for e in (
    Entry("ort-cpu", _ORT, {"provider_set": "ort-cpu"}, speed_rank=3, providers=("CPUExecutionProvider",),
          precisions=("int8", "fp32", "fp16"), int8_target="ort-cpu", reason="CPU execution with ONNX Runtime",
          int8_cpu_checks=True),
    Entry("ort-cuda", _ORT, {"provider_set": "ort-cuda"}, _GPU_INSTALL, speed_rank=2,
          providers=("CUDAExecutionProvider", "CPUExecutionProvider"), needs_provider="CUDAExecutionProvider",
          precisions=("fp16", "fp32"), on_gpu=True, reason="ONNX Runtime has the CUDAExecutionProvider"),
    Entry("ort-trt", _ORT, {"provider_set": "ort-trt"}, _GPU_INSTALL, speed_rank=1,
          providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
          needs_provider="TensorrtExecutionProvider", precisions=("int8", "fp16", "fp32"), on_gpu=True,
          reason="ONNX Runtime has the TensorrtExecutionProvider"),
    Entry("tensorrt", "fakedet.runtime.backends.tensorrt_backend:TensorRTBackend", install="pip install 'fakedet[trt]'",
          speed_rank=0, runs="plan", on_gpu=True,
          no_captions="the native TensorRT backend runs one-input models; a caption-aware package runs on ort-trt"),
)}  # fmt: skip


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


def fastest_first() -> list[Entry]:
    """The artifact backends in the order `auto` tries them."""
    return sorted(BUILTIN.values(), key=lambda e: e.speed_rank)


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
