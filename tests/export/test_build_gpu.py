"""`fakedet build` with a real TensorRT on a real GPU: the plan is built, recorded in the
manifest, loads raw with TensorRT's own runtime and matches ONNX Runtime.
Run with `pytest -m gpu` on a machine with TensorRT, CUDA and torch with CUDA."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _need_gpu():
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed here")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch (needed to run the built plan)")
    return trt, torch


@pytest.fixture(scope="module")
def whole_image_package(tmp_path_factory):
    _need_gpu()
    import torch
    from test_triton_repo import Tiny

    from fakedet.export.pipeline import ExportOptions, export_package
    from fakedet.export.source import ExportSource
    from fakedet.manifest import InputSpec, Preprocess

    torch.manual_seed(0)
    spec = InputSpec(dynamic_axes=("batch", "height", "width"), preprocess=Preprocess(policy="whole-image", size=None))
    cfg = {"arch": "tiny", "model_kwargs": {}, "input": spec.to_dict(), "threshold": 0.5}
    dest = tmp_path_factory.mktemp("gpu") / "tiny.fdet"
    export_package(ExportSource(Tiny(width=8).eval(), cfg, None), dest, ExportOptions(precision="both", whole_image_size=(32, 32)),
                   echo=lambda m: None)
    return dest


def run_plan(trt, torch, plan: bytes, x: np.ndarray) -> np.ndarray:
    """Execute a serialized engine with TensorRT's runtime (tensor-address API, 8.6+)."""
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan)
    assert engine is not None, "the plan file does not deserialize as it is (raw engine expected)"
    if not hasattr(engine, "num_io_tensors"):
        pytest.skip("TensorRT 8.5 has no tensor-address execution API; the build itself was checked")
    ctx = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inp = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    out = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    xin = torch.from_numpy(x).cuda()
    ctx.set_input_shape(inp, tuple(x.shape))
    y = torch.empty(tuple(ctx.get_tensor_shape(out)), dtype=torch.float32, device="cuda")
    ctx.set_tensor_address(inp, xin.data_ptr())
    ctx.set_tensor_address(out, y.data_ptr())
    stream = torch.cuda.Stream()
    assert ctx.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return y.cpu().numpy()


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-3), ("fp16", 5e-2)])
def test_build_records_and_runs_the_plan(whole_image_package, tmp_path, precision, atol):
    trt, torch = _need_gpu()
    import onnxruntime as ort

    from fakedet.cli import main
    from fakedet.export import tensorrt_rules as R
    from fakedet.package import ModelPackage

    cache = tmp_path / "timing.cache"
    out = tmp_path / f"{precision}.fdet"
    rc = main(["build", str(whole_image_package), "--precision", precision, "--batch", "1:2:4",
               "--image-size", "16:32:64", "--workspace", "1G", "--timing-cache", str(cache), "-o", str(out)])
    assert rc == 0
    assert cache.is_file() and cache.stat().st_size > 0  # persisted timing cache
    pkg = ModelPackage.open(out)
    pkg.verify()
    (plan,) = pkg.manifest.artifacts_of("trt-plan")
    version = R.TrtVersion.parse(trt.__version__)
    cc = "%d.%d" % torch.cuda.get_device_capability(0)
    assert plan.file == R.plan_filename(version, cc, precision)
    a = plan.attrs
    assert set(a) == {"trt_version", "compute_capability", "device_name", "precision", "profiles", "dla_core",
                      "version_compatible", "hardware_compatibility", "built_from", "calibration"}
    assert a["trt_version"] == str(version) and a["compute_capability"] == cc and a["precision"] == precision
    assert a["profiles"] == [{"input": "image", "min": [1, 3, 16, 16], "opt": [2, 3, 32, 32], "max": [4, 3, 64, 64]}]
    expected_source = "model.fp16.onnx" if (precision == "fp16" and version.major >= 11) else "model.onnx"
    assert a["built_from"] == expected_source and a["calibration"] is None and a["dla_core"] is None

    x = np.random.default_rng(0).standard_normal((3, 3, 40, 24)).astype(np.float32)
    got = run_plan(trt, torch, (out / plan.file).read_bytes(), x)
    want = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    np.testing.assert_allclose(got, want, atol=atol)
    assert json.loads((out / "manifest.json").read_text())["artifacts"][-1]["kind"] == "trt-plan"


def test_dla_on_a_device_without_dla_is_refused(whole_image_package, tmp_path, capsys):
    trt, _ = _need_gpu()
    if trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores > 0:
        pytest.skip("this device has DLA cores")
    from fakedet.cli import main

    assert main(["build", str(whole_image_package), "--precision", "fp16", "--dla", "0",
                 "-o", str(tmp_path / "x.fdet")]) == 2
    assert "DLA core(s)" in capsys.readouterr().err
    assert not (tmp_path / "x.fdet").exists()
