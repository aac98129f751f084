"""runtime/cuda_api.py against NVIDIA's real cuda-python (`cuda.bindings.runtime`).

No GPU is needed: cuda.bindings imports without a driver, and its calls then return
cudaErrorInsufficientDriver (cudaErrorNoDevice where a driver but no GPU is present).
The conformance check reads cuda_api.py with `ast` and looks every runtime name, enum
member, argument count, documented return count and struct field up in the installed
package, so a misspelling or an API change fails here instead of on a Jetson.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

rt = pytest.importorskip("cuda.bindings.runtime")

from fakedet.errors import BackendUnavailable  # noqa: E402
from fakedet.runtime import cuda_api  # noqa: E402
from fakedet.runtime.cuda_api import CudaPython, insufficient_driver_hint, load_cuda, native_handle  # noqa: E402

CUDA_API_SOURCE = Path(cuda_api.__file__).read_text()


# ---- the checker ------------------------------------------------------------
@dataclass
class Report:
    names: set = field(default_factory=set)  # every runtime function / enum / type fakedet names
    call_sites: int = 0
    arity_checked: int = 0
    returns_checked: int = 0
    problems: list = field(default_factory=list)


def documented_returns(func) -> list[tuple[str, str]] | None:
    """[(name, type), ...] from the numpy-style 'Returns' section cuda-python writes into
    every binding's docstring; the first entry is the cudaError_t. None if there is none."""
    lines = (func.__doc__ or "").splitlines()
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Returns" and set(lines[i + 1].strip()) == {"-"}:
            out = []
            for j in range(i + 2, len(lines)):
                line = lines[j]
                if j + 1 < len(lines) and lines[j + 1].strip() and set(lines[j + 1].strip()) == {"-"}:
                    break  # the next section's title
                if line and not line[0].isspace():
                    name, _, typ = line.partition(" : ")
                    out.append((name.strip(), typ.strip()))
            return out or None
    return None


def _signature(func):
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def check_runtime_uses(source: str, runtime, class_name: str = "CudaPython") -> Report:
    """Look up, in `runtime`, everything `class_name` in `source` takes from the CUDA runtime
    module: reached as `self.rt.X...` or through a name imported inside the class
    (`from cuda.bindings import runtime as cudart`)."""
    tree = ast.parse(source)
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name)
    aliases = {a.asname or a.name for n in ast.walk(cls) if isinstance(n, ast.ImportFrom)
               for a in n.names if a.name in ("runtime", "cudart")}
    parent = {child: node for node in ast.walk(cls) for child in ast.iter_child_nodes(node)}
    report = Report()

    def chain(node):  # attribute names after the runtime module, or None if not rooted there
        names = []
        while isinstance(node, ast.Attribute):
            if (isinstance(node.value, ast.Attribute) and node.value.attr == "rt"
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
                return [node.attr] + names
            if isinstance(node.value, ast.Name) and node.value.id in aliases:
                return [node.attr] + names
            names.insert(0, node.attr)
            node = node.value
        return None

    for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(fn):
            names = chain(node) if isinstance(node, ast.Attribute) else None
            up = parent.get(node)
            if not names or (isinstance(up, ast.Attribute) and up.value is node):
                continue  # not the runtime, or only part of a longer chain
            where = f"{class_name}.{fn.name} line {node.lineno}"
            report.names.add(".".join(names))
            obj = runtime
            for k, name in enumerate(names):
                obj = getattr(obj, name, None)
                if obj is None:
                    report.problems.append(f"{where}: {runtime.__name__} has no {'.'.join(names[:k + 1])}")
                    break
            if obj is None or not (isinstance(up, ast.Call) and up.func is node):
                continue
            _check_call(report, where, ".".join(names), obj, up, parent, fn, runtime)
    return report


def _check_call(report, where, name, func, call, parent, fn, runtime):
    report.call_sites += 1
    sig = _signature(func)
    if sig is not None and not any(isinstance(a, ast.Starred) for a in call.args):
        report.arity_checked += 1
        try:
            sig.bind(*call.args, **{k.arg: None for k in call.keywords if k.arg})
        except TypeError as e:
            report.problems.append(f"{where}: {name}{sig} called with {len(call.args)} positional "
                                   f"argument(s): {e}")
    # `self._check(rt.f(...), ...)` hands back what f returns after its error code.
    wrapper = parent.get(call)
    if not (isinstance(wrapper, ast.Call) and isinstance(wrapper.func, ast.Attribute)
            and wrapper.func.attr == "_check" and wrapper.args and wrapper.args[0] is call):
        return
    target = parent.get(wrapper)
    if isinstance(target, ast.Expr):
        return  # result ignored: any shape will do
    returns = documented_returns(func)
    if returns is None:
        return
    report.returns_checked += 1
    values = returns[1:]
    wanted = len(target.targets[0].elts) if (isinstance(target, ast.Assign)
                                            and isinstance(target.targets[0], ast.Tuple)) else 1
    if len(values) != wanted:
        report.problems.append(f"{where}: fakedet takes {wanted} value(s) from {name}, which returns "
                               f"{len(values)} after its error code: {[n for n, _ in values]}")
        return
    # Fields read from a returned struct (e.g. cudaDeviceProp.integrated) must exist.
    if wanted == 1 and isinstance(target, ast.Assign) and isinstance(target.targets[0], ast.Name):
        var = target.targets[0].id
        struct = re.search(r"~\.(\w+)", values[0][1])
        cls = getattr(runtime, struct.group(1), None) if struct else None
        if not isinstance(cls, type):
            return
        instance = cls()
        for node in ast.walk(fn):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == var
                    and not hasattr(instance, node.attr)):
                report.problems.append(f"{where}: {cls.__name__} has no field '{node.attr}' "
                                       f"(read at line {node.lineno})")


# ---- a. conformance -----------------------------------------------------------
def test_cuda_api_uses_only_what_the_installed_cuda_python_has():
    report = check_runtime_uses(CUDA_API_SOURCE, rt)
    assert report.problems == [], "runtime/cuda_api.py vs cuda.bindings.runtime:\n" + "\n".join(report.problems)
    # Not vacuous: the extraction found the calls and enums CudaPython is built on.
    assert len(report.names) >= 15, sorted(report.names)
    assert {"cudaMemcpyAsync", "cudaGraphInstantiate", "cudaStreamBeginCapture", "cudaSetDevice",
            "cudaMemcpyKind.cudaMemcpyHostToDevice", "cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal",
            } <= report.names
    if report.arity_checked == 0:
        pytest.skip("the installed cuda.bindings exposes no signatures: argument counts unchecked")
    assert report.arity_checked == report.call_sites
    assert report.returns_checked >= 6  # device props, stream, malloc, host malloc, event, graph...


def test_installed_signatures_are_what_the_checker_relies_on():
    """The CUDA 12+ forms fakedet calls (cudaGraphInstantiate took a log buffer on CUDA 11)."""
    assert list(inspect.signature(rt.cudaGraphInstantiate).parameters) == ["graph", "flags"]
    assert len(inspect.signature(rt.cudaMemcpyAsync).parameters) == 5
    assert len(inspect.signature(rt.cudaStreamBeginCapture).parameters) == 2
    assert [n for n, _ in documented_returns(rt.cudaMalloc)] == ["cudaError_t", "devPtr"]
    assert [n for n, _ in documented_returns(rt.cudaSetDevice)] == ["cudaError_t"]


BAD_SOURCE = '''
class CudaPython:
    def __init__(self):
        from cuda.bindings import runtime as cudart
        cudart.cudaSetDevise(0)

    def copy(self, dst, src, n, stream):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevise
        self._check(self.rt.cudaMemcpyAsync(dst, src, n, stream), "4 of 5 arguments")

    def graph(self, graph):
        return self._check(self.rt.cudaGraphInstantiate(graph), "CUDA 11 form")

    def two_values_from_one(self):
        stream, extra = self._check(self.rt.cudaStreamCreate(), "x")

    def props(self):
        p = self._check(self.rt.cudaGetDeviceProperties(0), "x")
        return p.major, p.nmae
'''

GOOD_SOURCE = '''
class CudaPython:
    def copy(self, dst, src, n, stream):
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst, src, n, kind, stream), "ok")
        p = self._check(self.rt.cudaGetDeviceProperties(0), "ok")
        return p.major, p.name
'''


def test_checker_reports_misspellings_wrong_arity_and_wrong_fields():
    problems = check_runtime_uses(BAD_SOURCE, rt).problems
    text = "\n".join(problems)
    assert "has no cudaSetDevise" in text
    assert "has no cudaMemcpyKind.cudaMemcpyHostToDevise" in text
    assert "cudaMemcpyAsync" in text and "4 positional" in text
    assert "cudaGraphInstantiate" in text and "1 positional" in text
    assert "takes 2 value(s) from cudaStreamCreate" in text
    assert "cudaDeviceProp has no field 'nmae'" in text
    assert len(problems) == 6, text
    assert check_runtime_uses(GOOD_SOURCE, rt).problems == []


# ---- b. the real no-driver path ---------------------------------------------
def _gpu_present() -> bool:
    err, count = rt.cudaGetDeviceCount()
    return int(err) == 0 and count > 0


needs_no_gpu = pytest.mark.skipif(_gpu_present(), reason="a CUDA GPU is present: the no-GPU path cannot be seen")


@needs_no_gpu
def test_load_cuda_names_cuda_python_and_the_cuda_error():
    with pytest.raises(BackendUnavailable) as e:
        load_cuda("cuda-python")
    msg = str(e.value)
    assert msg.startswith("cuda-python: cudaSetDevice failed: "), msg
    assert re.search(r"cudaError(InsufficientDriver|NoDevice)\b", msg), msg
    if "InsufficientDriver" in msg:  # and says why: the real cudaDriverGetVersion / cudaRuntimeGetVersion
        assert "(no CUDA driver is installed)" in msg or "driver supports CUDA" in msg, msg


@needs_no_gpu
def test_load_cuda_default_order_reports_both_bindings():
    if importlib.util.find_spec("pycuda") is not None:
        pytest.skip("pycuda is installed here: this test is about its absence")
    with pytest.raises(BackendUnavailable) as e:
        load_cuda()
    msg = str(e.value)
    assert msg.startswith("cuda-python: cudaSetDevice failed: cudaError"), msg
    assert msg.endswith("; pycuda not installed"), msg


@needs_no_gpu
def test_detect_environment_says_why_there_is_no_gpu():
    from fakedet.runtime.tensorrt_support import detect_environment

    detect_environment.cache_clear()
    try:
        env = detect_environment()
    finally:
        detect_environment.cache_clear()
    assert env.compute_capability is None and not env.usable
    gpu = [w for w in env.why_absent if w.startswith("no usable CUDA GPU (")]
    assert len(gpu) == 1, env.why_absent
    assert "cuda-python: cudaSetDevice failed: cudaError" in gpu[0] and gpu[0].endswith(")"), gpu[0]


@needs_no_gpu
def test_build_device_facts_refuses_without_a_gpu():
    from fakedet.export.tensorrt_build import device_facts

    with pytest.raises(BackendUnavailable) as e:
        device_facts()
    msg = str(e.value)
    assert msg.startswith("no CUDA device found ("), msg
    assert "cuda-python: cudaSetDevice failed: cudaError" in msg, msg
    assert "TensorRT plans are built on the GPU they run on" in msg


# ---- c. _check ------------------------------------------------------------------
def _bare_cuda_python():
    """A CudaPython whose constructor (cudaSetDevice) is skipped: _check needs only self."""
    obj = object.__new__(CudaPython)
    obj.rt = rt
    return obj


def test_check_returns_what_follows_the_error_code():
    c, ok = _bare_cuda_python(), rt.cudaError_t.cudaSuccess
    assert c._check((ok,), "cudaSetDevice") is None
    assert c._check(ok, "bare code") is None
    assert c._check((ok, 1234), "cudaMalloc") == 1234
    assert c._check((ok, "graph", "node"), "two values") == ("graph", "node")


@pytest.mark.parametrize("err", ["cudaErrorInsufficientDriver", "cudaErrorMemoryAllocation", "cudaErrorNoDevice"])
def test_check_raises_naming_the_call_and_the_error(err):
    code = getattr(rt.cudaError_t, err)
    assert int(code) != 0
    with pytest.raises(RuntimeError, match=rf"^cudaMalloc failed: {err}$"):
        _bare_cuda_python()._check((code, None), "cudaMalloc")
    with pytest.raises(RuntimeError, match=rf"^cudaSetDevice failed: {err}$"):
        _bare_cuda_python()._check((code,), "cudaSetDevice")


def test_check_on_a_real_failing_call():
    if _gpu_present():
        pytest.skip("a CUDA GPU is present: cudaGetDeviceProperties(0) succeeds")
    with pytest.raises(RuntimeError, match=r"^cudaGetDeviceProperties failed: cudaError\w+$"):
        _bare_cuda_python()._check(rt.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")


# ---- version hint and handles ---------------------------------------------------
def test_insufficient_driver_hint():
    assert insufficient_driver_hint(0, 13050) == "no CUDA driver is installed"
    # JetPack 6 (CUDA 12.6 driver) with cuda-python 13: only an older cuda-python can work.
    jetson = insufficient_driver_hint(12060, 13050)
    assert jetson == "driver supports CUDA 12.6, this cuda-python is built for 13.5: pip install 'cuda-python<13'"
    # Same major: minor-version compatibility applies, so no reinstall advice.
    assert "pip install" not in insufficient_driver_hint(12020, 12090)


def test_native_handle_of_real_cuda_python_handles():
    for handle in (rt.cudaStream_t(0x1234), rt.cudaEvent_t(0x1234), rt.cudaGraphExec_t(0x1234)):
        assert native_handle(handle) == 0x1234
    assert CudaPython.stream_handle(rt.cudaStream_t(0)) == 0
    assert native_handle(rt.cudaStream_t(0x1235)) != 0x1234
