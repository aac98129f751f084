"""One wrapper for bare ONNX files: `fakedet package` and `fakedet calibrate --input-spec`
check a spec against the graph the same way (names, sizes, channels) before any work."""

import pytest

pytest.importorskip("onnx")

from conftest import build_tiny_onnx, write_spec  # noqa: E402
from fakedet.calibration.pipeline import Options, calibrate  # noqa: E402
from fakedet.cli import main  # noqa: E402
from fakedet.errors import PackageError  # noqa: E402
from fakedet.package import ModelPackage  # noqa: E402
from test_calibration_pipeline import write_images  # noqa: E402


def _spec_with(tmp_path, **input_over):
    spec = {"name": "input", "mean": [0.5] * 3, "std": [0.25] * 3,
            "preprocess": {"policy": "center-crop", "size": [16, 16], "small_images": "pad"}}
    spec.update(input_over)
    return write_spec(tmp_path / "spec.json", input=spec)


@pytest.mark.parametrize("over,problem", [
    ({"preprocess": {"policy": "center-crop", "size": [32, 32]}}, "takes 16x16 images but the spec's preprocessing makes 32x32"),
    ({"layout": "NHWC"}, "channels at the NHWC channel axis"),
])
def test_calibrate_input_spec_refuses_what_package_refuses(tmp_path, over, problem):
    build_tiny_onnx(tmp_path / "m.onnx")
    spec = _spec_with(tmp_path, **over)
    with pytest.raises(PackageError, match=problem):
        calibrate(tmp_path / "m.onnx", Options(data=tmp_path / "unused", progress=False), input_spec=spec,
                  out=tmp_path / "m.fdet")
    assert not (tmp_path / "m.fdet").exists()
    assert main(["package", str(tmp_path / "m.onnx"), "--input-spec", str(spec), "-o", str(tmp_path / "p.fdet")]) == 2
    assert not (tmp_path / "p.fdet").exists()


def test_calibrate_input_spec_adopts_the_graphs_only_tensor_names(tmp_path, caplog):
    build_tiny_onnx(tmp_path / "m.onnx", input_name="pixels", output_name="score")
    spec = _spec_with(tmp_path, name="image")  # the spec kept a default name
    write_images(tmp_path / "calib", 8, 8, seed=0)
    with caplog.at_level("WARNING", logger="fakedet.calibration"):
        res = calibrate(tmp_path / "m.onnx", Options(data=tmp_path / "calib", samples=16, progress=False),
                        input_spec=spec, out=tmp_path / "m.fdet")
    assert "using the model's only input 'pixels'" in caplog.text
    with ModelPackage.open(res.dest) as pkg:
        assert (pkg.manifest.input.name, pkg.manifest.output.name) == ("pixels", "score")
