"""The backend contract: a loaded model that turns a preprocessed batch into logits.

The public methods do every check once, for all backends; a backend implements the
hooks only (the shape of Polygraphy's runners):

    public (here)                      hooks (each backend)
    open() / close(), `with`           _open(), _close()
    infer(batch) -> outputs            _run(batch) -> outputs, or (outputs, stage ms)
    infer_timed(batch) -> (out, ms)
    input_spec / output_spec           _input_spec(), _output_spec()
    input_specs (every input)          _input_specs()   default: [_input_spec()]
    (batch sizes the engine runs)      _batch_ranges(sample_shape)   default: from input_spec
    options checked at construction    OPTIONS: {name: what it does}

What the public methods guarantee:
- Options a backend does not declare are refused at construction, with the known ones.
- Construction is free; the model loads on `open()` (or lazily on first use). A failing
  `_open` is followed by `_close`, so a half-opened backend releases what it got, and
  the backend stays unopened (the next use tries again and reports the same error).
- `infer` takes any number of images: batches are split and padded to the sizes the
  engine runs (batching.plan_runs), the padding's outputs dropped; the input's rank and
  fixed axes are checked against `input_spec`, its dtype converted to the model's.
- A model with several inputs (a caption-aware model: image and token ids) takes a dict
  {input name: array}, every array one row per image; each is checked against its spec,
  split and padded alike, and `_run` gets the dict. A one-input model takes the array
  (or a one-entry dict) and `_run` gets the array.
- Outputs are float32 numpy with one row per image.
- Every error is a fakedet error (BackendError, BackendUnavailable or PackageError)
  naming the backend; the inference library's exception is its `__cause__`.

Thread safety: an open backend takes `infer` / `infer_timed` / the specs from any
number of threads at once (hooks must allow that: ONNX Runtime sessions and torch
modules in inference mode do; the TensorRT backend keeps a pool of execution
contexts: `contexts` calls run at once, the others wait for a free one). This is the one
layer that decides inference concurrency: the Detector and the service add no lock.
`open` and `close` are serialized; `close` waits for the calls in flight, and calls
after it are refused until `open()` is called again.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fakedet.errors import BackendError, FakedetError, first_line

from .batching import Range, plan_runs

STAGES = ("h2d", "compute", "d2h")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints for fixed axes, None for dynamic ones
    dtype: str  # numpy dtype name

    def fixed_batch(self) -> int | None:
        return self.shape[0] if self.shape and isinstance(self.shape[0], int) and self.shape[0] > 0 else None

    def values_per_item(self) -> int | None:
        """Values per image (the product of the non-batch axes), None while any is dynamic."""
        n = 1
        for d in self.shape[1:]:
            if not isinstance(d, int) or d < 0:
                return None
            n *= d
        return n



class Backend(ABC):
    """One model on one device. See the module's docstring for the contract."""

    #: registry name, e.g. "ort-cpu", "tensorrt"
    name: str = ""
    #: the options a backend takes: name -> one line saying what it does
    OPTIONS: dict[str, str] = {}

    def __init__(self, model_path, **options):
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(sorted(self.OPTIONS)) or "none"
            raise BackendError(f"{self.name}: unknown option{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(unknown)} (known: {known})")
        self.model_path = model_path
        self.options = options
        self._state = "new"  # new -> open -> closing -> closed (-> open again)
        self._cond = threading.Condition()  # guards _state and _in_flight; re-entrant
        self._in_flight = 0

    # ---- lifecycle -------------------------------------------------------
    def open(self) -> "Backend":
        with self._cond:
            self._cond.wait_for(lambda: self._state != "closing")
            if self._state == "open":
                return self
            try:
                self._open()
                self._in_specs = list(self._input_specs())  # read once: checked against every batch
                self._in_spec = self._in_specs[0]
            except BaseException as e:
                try:
                    self._close()  # release what a partial open got
                except Exception:
                    pass  # the open's error is the one to report
                if isinstance(e, FakedetError) or not isinstance(e, Exception):
                    raise
                raise BackendError(f"{self.name}: cannot load {self.model_path}: {first_line(e, 300)}") from e
            self._state = "open"
        return self

    def close(self) -> None:
        with self._cond:
            if self._state != "open":
                return
            self._state = "closing"  # refuse new calls, let those in flight finish
            self._cond.wait_for(lambda: self._in_flight == 0)
            try:
                self._close()
            except FakedetError:
                raise
            except Exception as e:
                raise BackendError(f"{self.name}: closing failed: {first_line(e, 300)}") from e
            finally:
                self._state = "closed"

    @property
    def is_open(self) -> bool:
        return self._state == "open"

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _enter_call(self) -> None:
        """Opens a new backend; refuses a closed one; counts the call in flight."""
        with self._cond:
            if self._state == "new":
                self.open()
            if self._state != "open":
                raise BackendError(f"{self.name}: the backend is closed")
            self._in_flight += 1

    def _leave_call(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if not self._in_flight:
                self._cond.notify_all()

    @contextmanager
    def _in_use(self):
        self._enter_call()
        try:
            yield
        finally:
            self._leave_call()

    # ---- inference -------------------------------------------------------
    def infer(self, batch) -> np.ndarray:
        """A batch in the model's layout (any number of images; a dict of named arrays for
        a model with several inputs) -> the first output, float32."""
        return self.infer_timed(batch)[0]

    def infer_timed(self, batch) -> tuple[np.ndarray, dict]:
        """(outputs, {h2d, compute, d2h} in ms, summed over the engine's runs). A backend
        that cannot tell the copies apart reports None for h2d and d2h, and the whole
        call as compute."""
        self._enter_call()  # not a `with`: this is the hot path of every backend
        try:
            x = self._checked_inputs(batch)
            lead = x if isinstance(x, np.ndarray) else x[self._in_spec.name]
            runs = self._plan(lead)
            if len(runs) == 1 and not runs[0].padding:
                return self._timed_run(x)
            outs, total = [], dict.fromkeys(STAGES)
            start = 0
            for run in runs:
                chunk = _rows(x, start, run.count, run.padding)
                out, stages = self._timed_run(chunk)
                outs.append(out[: run.count])
                for k in STAGES:
                    if stages.get(k) is not None:
                        total[k] = (total[k] or 0.0) + stages[k]
                start += run.count
            return np.concatenate(outs), total
        finally:
            self._leave_call()

    def _plan(self, x: np.ndarray) -> list:
        try:
            return plan_runs(len(x), self._batch_ranges(x.shape[1:]))
        except BackendError as e:
            msg = str(e)
            raise BackendError(msg if msg.startswith(f"{self.name}: ") else f"{self.name}: {msg}") from None

    def _checked_inputs(self, batch):
        """The array (one-input model) or {name: array} (several inputs), each checked."""
        specs = self._in_specs
        if isinstance(batch, Mapping):
            names = [s.name for s in specs]
            if sorted(batch) != sorted(names):
                raise BackendError(f"{self.name}: the model's inputs are {', '.join(names)}; "
                                   f"got {', '.join(map(str, batch)) or 'none'}")
            if len(specs) == 1:
                return self._checked_input(batch[names[0]], specs[0])
            out = {s.name: self._checked_input(batch[s.name], s) for s in specs}
            rows = {len(a) for a in out.values()}
            if len(rows) != 1:
                raise BackendError(f"{self.name}: the inputs hold different numbers of rows "
                                   f"({', '.join(f'{k}: {len(v)}' for k, v in out.items())})")
            return out
        if len(specs) > 1:
            raise BackendError(f"{self.name}: the model takes {len(specs)} inputs ({', '.join(s.name for s in specs)}): "
                               "pass a dict of arrays by input name")
        return self._checked_input(batch, specs[0])

    def _checked_input(self, batch, spec: TensorSpec) -> np.ndarray:
        if not isinstance(batch, np.ndarray):
            raise BackendError(f"{self.name}: expects a numpy array, got {type(batch).__name__}")
        if batch.ndim != len(spec.shape):
            raise BackendError(f"{self.name}: input '{spec.name}' has {len(spec.shape)} axes "
                               f"{_shape_text(spec.shape)}, got an array of shape {batch.shape}")
        for axis, (want, got) in enumerate(zip(spec.shape[1:], batch.shape[1:]), start=1):
            if isinstance(want, int) and want > 0 and want != got:
                raise BackendError(f"{self.name}: input '{spec.name}' needs {want} on axis {axis} "
                                   f"{_shape_text(spec.shape)}, got shape {batch.shape}")
        if batch.dtype.kind not in "fiub":
            raise BackendError(f"{self.name}: input '{spec.name}' takes numbers, got dtype {batch.dtype}")
        try:
            dtype = np.dtype(spec.dtype)
        except TypeError:
            dtype = batch.dtype  # a type numpy lacks: the backend says what it needs
        return np.ascontiguousarray(batch, dtype=dtype)

    def _timed_run(self, chunk) -> tuple[np.ndarray, dict]:
        t0 = time.perf_counter()
        try:
            res = self._run(chunk)
        except FakedetError:
            raise
        except Exception as e:
            raise BackendError(f"{self.name}: inference failed: {first_line(e, 300)}") from e
        out, stages = res if isinstance(res, tuple) else (res, None)
        if stages is None:
            stages = {"h2d": None, "compute": (time.perf_counter() - t0) * 1e3, "d2h": None}
        out = np.asarray(out)
        n = len(chunk) if isinstance(chunk, np.ndarray) else len(next(iter(chunk.values())))
        if out.ndim == 0 or out.shape[0] != n:
            raise BackendError(f"{self.name}: the model returned shape {out.shape} for a batch of {n}")
        return out.astype(np.float32, copy=False), stages

    # ---- shapes ----------------------------------------------------------
    @property
    def input_spec(self) -> TensorSpec:
        with self._in_use():
            return self._in_spec

    @property
    def input_specs(self) -> list[TensorSpec]:
        """Every input, the image first."""
        with self._in_use():
            return list(self._in_specs)

    @property
    def output_spec(self) -> TensorSpec:
        """The first output; dims that only a run can tell are None."""
        with self._in_use():
            return self._output_spec()

    def _batch_ranges(self, sample_shape: tuple) -> list[Range]:
        """Batch sizes the engine runs for inputs of `sample_shape` (without the batch
        axis): [(min, max or None)]. Here: the input's fixed batch, else any."""
        fixed = self._in_spec.fixed_batch()
        return [(fixed, fixed)] if fixed else [(1, None)]

    def describe(self) -> str:
        """One line: what runs, on which device."""
        return self.name

    # ---- building from a package ------------------------------------------
    @classmethod
    def package_inputs(cls, pkg, choice) -> tuple[object, dict]:
        """(the file to load, options the package implies) for `choice` (selection.Choice);
        options the caller gives override these."""
        return pkg.path_of(choice.artifact), {}

    @classmethod
    def choose_for_package(cls, pkg, precision: str = "auto", **hints):
        """Only for a backend that runs something other than the package's artifacts
        (registry entry with runs_artifacts=False; torch runs the checkpoint): the
        selection.Choice of what it runs. The others are chosen by selection.choose."""
        raise NotImplementedError(f"{cls.name} runs the package's artifacts: selection.choose picks them")

    # ---- to implement ----------------------------------------------------
    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _run(self, batch: np.ndarray):
        """One run at a batch size from `_batch_ranges`: outputs (first axis = batch), or
        (outputs, {h2d, compute, d2h} ms) when the backend times the stages itself."""

    @abstractmethod
    def _input_spec(self) -> TensorSpec: ...

    def _input_specs(self) -> list[TensorSpec]:
        """Every input, the image first (override for models with several)."""
        return [self._input_spec()]

    @abstractmethod
    def _output_spec(self) -> TensorSpec: ...

    def _close(self) -> None:
        """Release what `_open` got; also called after a partial `_open`."""


def _rows(x, start: int, count: int, padding: int):
    """Rows start..start+count of an array or of every array in a dict, padded with
    copies of the last row."""
    if not isinstance(x, np.ndarray):
        return {k: _rows(v, start, count, padding) for k, v in x.items()}
    chunk = x[start : start + count]
    return np.concatenate([chunk, np.repeat(chunk[-1:], padding, axis=0)]) if padding else chunk


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
