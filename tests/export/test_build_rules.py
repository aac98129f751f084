"""The pure TensorRT build rules (export/tensorrt_rules.py), without TensorRT."""

import struct

import pytest

from fakedet.cli import main
from fakedet.export import tensorrt_rules as R
from fakedet.manifest import InputSpec, Preprocess
from fakedet.runtime.tensorrt_version import TensorRTVersionError, cache_header_version

ALL = {"onnx-fp32", "onnx-fp16", "onnx-int8-qdq", "trt-calibration-cache"}


@pytest.mark.parametrize("text,expected", [
    ("8.5.2.2", (8, 5, 2)), ("8.6.1", (8, 6, 1)), ("10.3.0.26", (10, 3, 0)), ("11.4", (11, 4, 0)), ("10", (10, 0, 0)),
])
def test_version_parse(text, expected):
    v = R.TrtVersion.parse(text)
    assert (v.major, v.minor, v.patch) == expected
    assert str(v) == ".".join(map(str, expected))


def test_version_ordering_is_numeric_not_lexical():
    versions = [R.TrtVersion.parse(t) for t in ["10.16.0", "8.6.1", "11.4.0", "10.3.0", "8.5.2", "10.10.0"]]
    assert [str(v) for v in sorted(versions)] == ["8.5.2", "8.6.1", "10.3.0", "10.10.0", "10.16.0", "11.4.0"]
    with pytest.raises(TensorRTVersionError):
        R.TrtVersion.parse("trt")


@pytest.mark.parametrize("line,expected", [
    ("TRT-8601-EntropyCalibration2", "8.6.1"), ("TRT-8502-MinMaxCalibration", "8.5.2"),
    ("TRT-100300-EntropyCalibration2", "10.3.0"), ("TRT-110400-EntropyCalibration2", "11.4.0"), ("garbage", None),
])
def test_calibration_cache_header_version(line, expected):
    got = cache_header_version(line)
    assert (str(got) if got else None) == expected
    if got:  # the header tag and the version are inverse of each other
        assert line.startswith(f"TRT-{got.cache_tag}-")


def test_stale_calibration_cache_is_refused():
    R.check_calibration_cache("TRT-8601-EntropyCalibration2", R.TrtVersion.parse("8.6.1"))
    with pytest.raises(R.BuildOptionError, match="written for TensorRT 8.6.1, this is TensorRT 10.3.0"):
        R.check_calibration_cache("TRT-8601-EntropyCalibration2", R.TrtVersion.parse("10.3.0"))
    with pytest.raises(R.BuildOptionError, match="header"):
        R.check_calibration_cache("image: 3c008912", R.TrtVersion.parse("10.3.0"))


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1", "10.0.1", "10.3.0", "10.16.0"])
def test_weakly_typed_versions_use_builder_flags(version):
    v = R.TrtVersion.parse(version)
    net = ["EXPLICIT_BATCH"] if v.major == 8 else []
    r32 = R.choose_recipe(v, "fp32", ALL)
    assert (r32.onnx_kind, r32.builder_flags, r32.network_flags, r32.calibration) == ("onnx-fp32", [], net, None)
    r16 = R.choose_recipe(v, "fp16", {"onnx-fp32"})
    assert (r16.onnx_kind, r16.builder_flags) == ("onnx-fp32", ["FP16"])
    assert "STRONGLY_TYPED" not in r16.network_flags
    only16 = R.choose_recipe(v, "fp16", {"onnx-fp16"})  # a package exported with --precision fp16
    assert (only16.onnx_kind, only16.builder_flags) == ("onnx-fp16", ["FP16"])
    with pytest.raises(R.BuildOptionError, match="no onnx-fp32"):
        R.choose_recipe(v, "fp32", {"onnx-fp16"})


def test_int8_source_per_version():
    # 8.x with both: the calibration cache (implicit INT8 is what JetPack 5/6.0 users build with)
    r = R.choose_recipe(R.TrtVersion.parse("8.6.1"), "int8", ALL)
    assert (r.onnx_kind, r.calibration, r.builder_flags) == ("onnx-fp32", "trt-calibration-cache", ["INT8", "FP16"])
    # 10.1+: implicit INT8 deprecated -> QDQ
    r = R.choose_recipe(R.TrtVersion.parse("10.3.0"), "int8", ALL)
    assert (r.onnx_kind, r.calibration) == ("onnx-int8-qdq", "qdq")
    # 10.3 with only a cache still builds, with a note
    r = R.choose_recipe(R.TrtVersion.parse("10.3.0"), "int8", {"onnx-fp32", "trt-calibration-cache"})
    assert r.calibration == "trt-calibration-cache" and r.notes
    # 8.5 with only a QDQ model
    r = R.choose_recipe(R.TrtVersion.parse("8.5.2"), "int8", {"onnx-fp32", "onnx-int8-qdq"})
    assert (r.onnx_kind, r.calibration) == ("onnx-int8-qdq", "qdq")
    with pytest.raises(R.BuildOptionError, match="calibrate"):
        R.choose_recipe(R.TrtVersion.parse("10.3.0"), "int8", {"onnx-fp32", "onnx-fp16"})


@pytest.mark.parametrize("version, noted", [("10.11.0", False), ("10.12.0", True), ("10.16.1", True), ("8.6.1", False)])
def test_precision_flags_deprecated_from_10_12_are_noted(version, noted):
    r = R.choose_recipe(R.TrtVersion.parse(version), "fp16", {"onnx-fp32"})
    assert any("deprecated since TensorRT 10.12" in n for n in r.notes) == noted
    assert not R.choose_recipe(R.TrtVersion.parse(version), "fp32", {"onnx-fp32"}).notes  # no flags, no note


def test_trt11_is_strongly_typed_from_typed_onnx():
    v = R.TrtVersion.parse("11.4.0")
    for precision, kind, calib in [("fp32", "onnx-fp32", None), ("fp16", "onnx-fp16", None), ("int8", "onnx-int8-qdq", "qdq")]:
        r = R.choose_recipe(v, precision, ALL)
        assert (r.onnx_kind, r.builder_flags, r.network_flags, r.calibration) == (kind, [], ["STRONGLY_TYPED"], calib)
    with pytest.raises(R.BuildOptionError, match="--precision fp16"):
        R.choose_recipe(v, "fp16", {"onnx-fp32"})
    with pytest.raises(R.BuildOptionError, match="Q/DQ"):  # a calibration cache is useless on 11
        R.choose_recipe(v, "int8", {"onnx-fp32", "trt-calibration-cache"})


def test_too_old_and_unknown():
    with pytest.raises(R.BuildOptionError, match="8.5 or newer"):
        R.choose_recipe(R.TrtVersion.parse("8.4.3"), "fp16", ALL)
    with pytest.raises(R.BuildOptionError, match="unknown precision"):
        R.choose_recipe(R.TrtVersion.parse("10.3.0"), "bf16", ALL)


def test_option_combinations():
    v85, v10 = R.TrtVersion.parse("8.5.2"), R.TrtVersion.parse("10.3.0")
    assert R.check_options(v10, "fp16", 0, False, "none", "8.7") == []
    with pytest.raises(R.BuildOptionError, match="DLA runs fp16 or int8"):
        R.check_options(v10, "fp32", 0, False, "none")
    with pytest.raises(R.BuildOptionError, match="8.6 or newer"):
        R.check_options(v85, "fp16", None, True, "none")
    with pytest.raises(R.BuildOptionError, match="cannot be combined with --dla"):
        R.check_options(v10, "fp16", 0, False, "ampere+")
    with pytest.raises(R.BuildOptionError, match="Ampere or newer"):
        R.check_options(v10, "fp16", None, False, "ampere+", "7.5")


@pytest.mark.parametrize("text,expected", [
    ("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5G", 3 * 2**29), ("2GiB", 2 * 2**30), ("1048576", 2**20), ("64k", 2**16),
])
def test_workspace_sizes(text, expected):
    assert R.parse_size_bytes(text) == expected


@pytest.mark.parametrize("bad", ["", "4X", "-1G", "0", "G"])
def test_bad_workspace(bad):
    with pytest.raises(R.BuildOptionError):
        R.parse_size_bytes(bad)


def test_batch_ranges():
    assert R.parse_range("1:8:32") == (1, 8, 32)
    assert R.parse_range("16") == (1, 16, 16)
    for bad in ("8:1:32", "0:1:2", "1:2", "a:b:c"):
        with pytest.raises(R.BuildOptionError):
            R.parse_range(bad)


def test_profile_shapes_fixed_size_input():
    spec = InputSpec(name="image", preprocess=Preprocess(policy="center-crop", size=(224, 224)))
    (p,) = R.profile_shapes(spec, (1, 8, 32))
    assert p == {"input": "image", "min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [32, 3, 224, 224]}
    nhwc = InputSpec(name="x", layout="NHWC", preprocess=Preprocess(policy="resize", size=(96, 128)))
    assert R.profile_shapes(nhwc, (2, 4, 4))[0]["max"] == [4, 96, 128, 3]
    with pytest.raises(R.BuildOptionError, match="whole-image models only"):
        R.profile_shapes(spec, (1, 1, 1), (64, 64, 64))


def test_profile_shapes_whole_image_rounds_to_the_padding_multiple():
    spec = InputSpec(dynamic_axes=("batch", "height", "width"),
                     preprocess=Preprocess(policy="whole-image", size=None, multiple_of=32))
    (p,) = R.profile_shapes(spec, (1, 4, 8), (100, 500, 1000))
    # min rounded up, max rounded down: every padded image in [100, 1000] has a side in [128, 992]
    assert p["min"] == [1, 3, 128, 128] and p["opt"] == [4, 3, 512, 512] and p["max"] == [8, 3, 992, 992]
    plain = InputSpec(dynamic_axes=("batch", "height", "width"), preprocess=Preprocess(policy="whole-image", size=None))
    assert R.profile_shapes(plain, (1, 1, 1))[0]["max"] == [1, 3, 1024, 1024]  # default 128:512:1024


def test_plan_names_and_attrs():
    assert R.plan_filename("10.3.0", "8.7", "fp16") == "plans/trt-10.3.0_sm87_fp16.plan"
    assert R.plan_filename(R.TrtVersion.parse("8.5.2.2"), "7.2", "int8", dla_core=1) == "plans/trt-8.5.2_sm72_int8_dla1.plan"
    assert R.plan_filename("10.16.0", "9.0", "fp16", hardware_compat="ampere+") == "plans/trt-10.16.0_sm90_fp16_ampereplus.plan"
    prof = [{"input": "image", "min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [32, 3, 224, 224]}]
    attrs = R.plan_attrs(R.TrtVersion.parse("10.3.0.26"), "8.7", "Orin", "fp16", prof, None, False, "none",
                         "model.fp16.onnx", None)
    assert attrs == {"trt_version": "10.3.0", "compute_capability": "8.7", "device_name": "Orin", "precision": "fp16",
                     "profiles": prof, "dla_core": None, "version_compatible": False, "hardware_compatibility": "none",
                     "built_from": "model.fp16.onnx", "calibration": None}


def test_plan_manifest_entry_round_trips_through_the_package(tmp_path, tiny_package):
    """A trt-plan entry made from these attrs is accepted by the manifest and read back as written."""
    from fakedet.package import ModelPackage, PackageWriter

    pkg_path, _ = tiny_package
    pkg = ModelPackage.open(pkg_path)
    prof = R.profile_shapes(pkg.manifest.input, (1, 2, 4))
    attrs = R.plan_attrs("10.3.0", "8.7", "Orin", "fp16", prof, 0, True, "none", "model.onnx", None)
    name = R.plan_filename("10.3.0", "8.7", "fp16", 0)
    with PackageWriter(pkg_path, pkg.manifest, base=pkg) as w:
        w.staged_path(name).write_bytes(struct.pack("<4I", 1, 2, 3, 4))
        w.add_file(None, name, "trt-plan", **attrs)
    again = ModelPackage.open(pkg_path)
    again.verify()
    (plan,) = again.manifest.artifacts_of("trt-plan")
    assert plan.file == name and plan.attrs == attrs


def test_default_timing_cache_is_per_version_and_gpu(tmp_path):
    a = R.default_timing_cache(str(tmp_path), R.TrtVersion.parse("10.3.0"), "8.7")
    b = R.default_timing_cache(str(tmp_path), R.TrtVersion.parse("8.6.1"), "8.7")
    assert a != b and a.endswith("trt-10.3.0_sm87.cache") and a.startswith(str(tmp_path))


def test_build_without_tensorrt_is_one_line_exit_2(tiny_package, capsys):
    pytest.importorskip("click")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the no-TensorRT message cannot be shown")
    except ImportError:
        pass
    pkg_path, _ = tiny_package
    assert main(["build", str(pkg_path), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TensorRT is not installed" in err[0]


def test_build_rejects_bad_options_before_tensorrt(tiny_package, capsys):
    pkg_path, _ = tiny_package
    assert main(["build", str(pkg_path), "--batch", "8:1:2"]) == 2
    assert "--batch '8:1:2'" in capsys.readouterr().err
    assert main(["build", str(pkg_path), "--workspace", "lots"]) == 2
