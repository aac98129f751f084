"""The backend contract (runtime/backends/base.py), one suite for every backend.

Running part: every backend that can run here (ort-cpu; torch where PyTorch is
installed) loads the same tiny network (conv3x3 -> ReLU -> average pool -> linear) and
is checked against an independent numpy computation of it (conftest.reference_forward):
batches of any size, input checks, the lifecycle, errors, threads.

Static part: every registered backend, TensorRT and the GPU providers included, is
checked without loading anything: the registry resolves it without importing its
library, it implements the hooks and leaves the checked public methods to the base,
it declares its options, refuses unknown ones, and what it derives from a package is
among the options it declares. TensorRT itself is not run here (no fake TensorRT):
tests/runtime/test_tensorrt_backend.py runs it under `pytest -m gpu`, and
tests/runtime/test_trt_api_surface.py checks its calls against real TensorRT APIs.
"""

import threading

import numpy as np
import pytest
from conftest import assert_threads_agree, build_tiny_onnx, reference_forward

from fakedet.errors import BackendError, BackendUnavailable, FakedetError, PackageError
from fakedet.runtime.backends import registry
from fakedet.runtime.backends.base import Backend, TensorSpec

RUNNABLE = ["ort-cpu", "torch"]
ARCH = "contract-tiny-cnn"


# ---- the tiny network on each backend ---------------------------------------------
def _torch_checkpoint(tmp_path, w):
    torch = pytest.importorskip("torch", reason="the torch backend needs PyTorch")
    from fakedet.manifest import InputSpec, Preprocess
    from fakedet.train.checkpoint import save_checkpoint
    from fakedet.train.models import create_model, list_models, register_model

    if ARCH not in list_models():
        def spec(**_):
            return InputSpec(name="input", mean=(0.5,) * 3, std=(0.25,) * 3,
                             preprocess=Preprocess(policy="center-crop", size=(16, 16))).validate()

        @register_model(name=ARCH, input_spec=spec)
        def contract_tiny_cnn(pretrained: str = "none"):
            """The conftest tiny network in torch."""
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 1))

    model = create_model(ARCH)
    with torch.no_grad():
        for param, key in zip(model.parameters(), ("conv_w", "conv_b", "fc_w", "fc_b")):
            param.copy_(torch.from_numpy(w[key]))
    return save_checkpoint(tmp_path / "ckpt", model, {"arch": ARCH, "model_kwargs": {}})


@pytest.fixture
def make(tmp_path):
    """make(name, **options) -> (an unopened backend running the tiny network, its weights)."""
    made = []

    def factory(name, fixed_batch=None, **options):
        path = tmp_path / f"tiny-{len(made)}.onnx"
        w = build_tiny_onnx(path, fixed_batch=fixed_batch)
        if name == "torch":
            path = _torch_checkpoint(tmp_path, w)
            options.setdefault("device", "cpu")
        else:
            options.setdefault("threads", 1)
        b = registry.create(name, path, **options)
        made.append(b)
        return b, w

    yield factory
    for b in made:
        b.close()


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16)).astype(np.float32)


# ---- running part ------------------------------------------------------------------
@pytest.mark.parametrize("name", RUNNABLE)
def test_any_batch_size_gives_the_reference_outputs(make, name):
    b, w = make(name)
    assert not b.is_open  # construction loads nothing
    for n in (1, 3, 7):
        x = _x(n, seed=n)
        out = b.infer(x)
        assert out.dtype == np.float32 and out.shape == (n, 1)
        np.testing.assert_allclose(out, reference_forward(x, w), rtol=1e-4, atol=1e-5)
    assert b.is_open  # the first call opened it
    x64 = _x(2).astype(np.float64)  # converted to the model's dtype
    np.testing.assert_allclose(b.infer(x64), reference_forward(x64, w), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", RUNNABLE)
def test_infer_timed_reports_the_stages(make, name):
    b, w = make(name)
    out, ms = b.open().infer_timed(_x(4))
    np.testing.assert_allclose(out, reference_forward(_x(4), w), rtol=1e-4, atol=1e-5)
    assert set(ms) == {"h2d", "compute", "d2h"}
    assert ms["compute"] > 0 and ms["h2d"] is None and ms["d2h"] is None  # CPU: no copies to time


@pytest.mark.parametrize("name", RUNNABLE)
def test_specs(make, name):
    b, _ = make(name)
    spec, out = b.input_spec, b.output_spec
    assert isinstance(spec, TensorSpec) and isinstance(out, TensorSpec)
    assert len(spec.shape) == 4 and spec.name == "input" and np.dtype(spec.dtype) == np.float32
    assert out.values_per_item() in (1, None)  # None: eager torch knows it only when it runs


@pytest.mark.parametrize("name", RUNNABLE)
@pytest.mark.parametrize("bad, problem", [
    (np.zeros((3, 16, 16), np.float32), "axes"),
    (np.zeros((2, 4, 16, 16), np.float32), "axis 1|channels"),  # ort-cpu: the spec says 3; torch: the conv refuses it
    ([[0.0]], "numpy array"),
    (np.zeros((0, 3, 16, 16), np.float32), "at least one image"),
    (np.full((1, 3, 16, 16), "x"), "numbers"),
])
def test_bad_input_is_a_backend_error(make, name, bad, problem):
    b, _ = make(name)
    with pytest.raises(BackendError, match=problem) as e:
        b.infer(bad)
    assert str(e.value).startswith(f"{name}: ")
    np.testing.assert_array_equal(b.infer(_x(1)).shape, (1, 1))  # the backend still works


@pytest.mark.parametrize("name", RUNNABLE)
def test_lifecycle(make, name):
    b, w = make(name)
    with b as opened:
        assert opened is b and b.is_open
        assert b.open() is b  # idempotent
        first = b.infer(_x(2))
    assert not b.is_open
    b.close()  # idempotent
    with pytest.raises(BackendError, match="closed"):
        b.infer(_x(2))
    with pytest.raises(BackendError, match="closed"):
        b.input_spec
    np.testing.assert_array_equal(b.open().infer(_x(2)), first)  # reopened: same model


@pytest.mark.parametrize("name", RUNNABLE)
def test_a_model_that_cannot_load_is_a_fakedet_error_naming_it(tmp_path, name):
    bad = tmp_path / "broken"
    if name == "torch":
        pytest.importorskip("torch")
        bad.mkdir()
        (bad / "config.json").write_text("{}")
    else:
        bad.write_bytes(b"not a model")
    b = registry.create(name, bad)
    for _ in range(2):  # stays unopened: each use reports the cause again
        with pytest.raises(FakedetError) as e:
            b.infer(_x(1))
        assert isinstance(e.value, (PackageError, BackendError, BackendUnavailable)) and "broken" in str(e.value)
        assert not b.is_open


@pytest.mark.parametrize("name", RUNNABLE)
def test_threads_share_one_backend(make, name):
    b, w = make(name)
    assert_threads_agree(b.open(), w, threads=6, calls=10)


@pytest.mark.parametrize("name", RUNNABLE)
def test_close_waits_for_calls_in_flight_then_refuses(make, name):
    b, w = make(name)
    b.open()
    x, want = _x(3), None
    want = reference_forward(x, w)
    started, outcomes = threading.Barrier(5), []

    def worker():
        started.wait()
        good = 0
        while True:
            try:
                out = b.infer(x)
            except BackendError as e:
                outcomes.append((good, str(e)))
                return
            except Exception as e:  # anything else breaks the contract
                outcomes.append((good, repr(e)))
                return
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
            good += 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    b.infer(x)  # the calls are running
    b.close()
    assert b._in_flight == 0 and not b.is_open
    for t in threads:
        t.join(timeout=30)
    assert len(outcomes) == 4
    assert all(msg == f"{name}: the backend is closed" for _, msg in outcomes), outcomes


def test_fixed_batch_engine_is_padded_and_split(make):
    """An ONNX exported with batch 4 runs only 4: any other count is split and padded."""
    b, w = make("ort-cpu", fixed_batch=4)
    assert b.input_spec.fixed_batch() == 4
    for n in (1, 4, 6, 9):
        x = _x(n, seed=n)
        np.testing.assert_allclose(b.infer(x), reference_forward(x, w), rtol=1e-4, atol=1e-5)
    assert b.infer_timed(_x(9))[1]["compute"] > 0  # summed over the three runs


# ---- static part: every registered backend, nothing loaded --------------------------
def _cls(name):
    try:
        return registry.backend_class(name)
    except BackendUnavailable as e:  # torch without PyTorch
        pytest.skip(str(e))


PUBLIC = ("open", "close", "infer", "infer_timed", "input_spec", "input_specs", "output_spec", "__enter__", "__exit__",
          "_in_use", "_checked_input", "_checked_inputs", "_timed_run")
HOOKS = ("_open", "_run", "_input_spec", "_output_spec", "_close")


@pytest.mark.parametrize("name", list(registry.entries()))
def test_every_backend_implements_the_hooks_only(name):
    cls = _cls(name)
    assert issubclass(cls, Backend)
    for attr in PUBLIC:
        assert getattr(cls, attr) is getattr(Backend, attr), f"{name} overrides {attr}: the checks live in the base"
    for attr in HOOKS:
        assert getattr(cls, attr) is not getattr(Backend, attr), f"{name} lacks the hook {attr}"
    assert cls.OPTIONS and all(isinstance(k, str) and isinstance(v, str) and v for k, v in cls.OPTIONS.items())


@pytest.mark.parametrize("name", list(registry.entries()))
def test_every_backend_refuses_unknown_options_with_the_known_ones(name, tmp_path):
    cls = _cls(name)
    with pytest.raises(BackendError) as e:
        registry.create(name, tmp_path / "model", threds=2)
    msg = str(e.value)
    assert msg.startswith(f"{name}: unknown option threds") and all(k in msg for k in cls.OPTIONS)
    b = registry.create(name, tmp_path / "model", **{k: None for k in cls.OPTIONS})  # every declared one is taken
    assert b.name == name and not b.is_open


def test_registry_imports_no_inference_library():
    import subprocess
    import sys

    code = ("import sys\nfrom fakedet.runtime.backends import registry\n"
            "for n in ('ort-cpu', 'ort-cuda', 'ort-trt', 'tensorrt'):\n    registry.create(n, 'm')\n"
            "bad = [m for m in ('onnxruntime', 'tensorrt', 'torch', 'fakedet.train') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(BackendUnavailable, match="unknown backend 'jax'.*ort-cpu.*tensorrt.*torch"):
        registry.backend_class("jax")


def test_what_a_package_implies_is_among_each_backends_options(tiny_package, tmp_path):
    """make_backend for a TensorRT plan, the ONNX Runtime GPU routes and the torch row:
    each builds (nothing loads) with options the backend declares."""
    from package_helpers import add_artifacts, plan_attrs

    from fakedet.package import ModelPackage
    from fakedet.runtime.selection import Choice, make_backend

    pkg_dir, _ = tiny_package
    add_artifacts(pkg_dir, int8=True, plans=[plan_attrs()], tmp=tmp_path)
    pkg = ModelPackage.open(pkg_dir)
    plan, int8 = pkg.manifest.artifact("trt-plan"), pkg.manifest.artifact("onnx-int8-qdq")
    cases = [("tensorrt", plan, {"version_compatible"}), ("ort-trt", int8, {"fp16", "int8", "cache_dir"}),
             ("ort-cuda", pkg.manifest.artifact("onnx-fp32"), set())]
    for name, art, implied in cases:
        b = make_backend(Choice(name, art, "test"), pkg, contexts=2) if name == "tensorrt" else \
            make_backend(Choice(name, art, "test"), pkg)
        assert set(b.options) - {"contexts"} == implied and not b.is_open
        assert b.model_path == pkg.path_of(art)
    with pytest.raises(BackendError, match="unknown option threads.*contexts"):
        make_backend(Choice("tensorrt", plan, "test"), pkg, threads=2)


def test_tensorrt_without_tensorrt_is_unavailable_and_stays_unopened(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: tests/runtime/test_tensorrt_backend.py runs it")
    except ImportError:
        pass
    b = registry.create("tensorrt", tmp_path / "x.plan")
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        b.open()
    assert not b.is_open


def test_tensorrt_batch_ranges_follow_the_profiles_that_take_the_image_size(tmp_path):
    """The pure part of the TensorRT backend's batch shapes: profiles are plain (min, opt,
    max) shape tuples as the backend reads them from a plan; no TensorRT object is involved."""
    from fakedet.runtime.backends.batching import plan_runs

    b = registry.create("tensorrt", tmp_path / "x.plan")
    b.profiles = [((1, 3, 64, 64), (4, 3, 224, 224), (8, 3, 256, 256)),  # small images, batch up to 8
                  ((16, 3, 224, 224), (32, 3, 224, 224), (32, 3, 512, 512))]  # large batches
    assert b._batch_ranges((3, 224, 224)) == [(1, 8), (16, 32)]
    assert b._batch_ranges((3, 400, 300)) == [(16, 32)]  # only the second takes 400x300
    assert [r.size for r in plan_runs(3, b._batch_ranges((3, 400, 300)))] == [16]  # padded to its min
    with pytest.raises(BackendError, match=r"tensorrt: input of shape \[N, 3, 600, 600\] is outside every"):
        b._batch_ranges((3, 600, 600))
