"""Triton model repositories: every config.pbtxt the exporter writes is read with Triton's own
ModelConfig proto (text_format, as tritonserver reads it) and checked against the ONNX model
it serves, read with `onnx`."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
mc = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                         reason="tritonclient[grpc] (Triton's model_config proto) is not installed")
from google.protobuf import text_format  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from conftest import build_tiny_onnx, write_spec  # noqa: E402
from fakedet.cli import main  # noqa: E402
from fakedet.export import tensorrt_rules as R  # noqa: E402
from fakedet.export.pipeline import ExportOptions, export_package  # noqa: E402
from fakedet.export.source import ExportSource  # noqa: E402
from fakedet.export.triton import write_triton_repo  # noqa: E402
from fakedet.manifest import InputSpec, Manifest, Preprocess  # noqa: E402
from fakedet.package import ModelPackage, PackageWriter  # noqa: E402

ONNX_TO_TRITON = {TensorProto.FLOAT: mc.TYPE_FP32, TensorProto.FLOAT16: mc.TYPE_FP16}


def read_config(path):
    """config.pbtxt as tritonserver reads it: an unknown field or enum value is a ParseError."""
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except text_format.ParseError as e:
        pytest.fail(f"{path}: not a valid Triton ModelConfig: {e}")


def graph_tensors(onnx_path):
    """({input: (Triton type, shape)}, {output: ...}) of the graph, -1 for symbolic axes."""
    g = onnx.load(str(onnx_path)).graph
    inits = {i.name for i in g.initializer}

    def read(v):
        tt = v.type.tensor_type
        return ONNX_TO_TRITON[tt.elem_type], [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]

    return {v.name: read(v) for v in g.input if v.name not in inits}, {v.name: read(v) for v in g.output}


def check_against_model(cfg, onnx_path):
    """Triton's rules for a config and its model: the same tensors and types; with
    max_batch_size > 0 the model's first axis is dynamic and left out of dims; the model's
    shape is `reshape.shape` where given (same element count as dims), else dims; a fixed
    model axis must be declared with its size."""
    inputs, outputs = graph_tensors(onnx_path)
    batching = cfg.max_batch_size > 0
    for declared, model, role in ((cfg.input, inputs, "input"), (cfg.output, outputs, "output")):
        assert sorted(t.name for t in declared) == sorted(model), f"{role} names: config vs {onnx_path.name}"
        for t in declared:
            dtype, shape = model[t.name]
            assert t.data_type == dtype, f"{t.name}: config {mc.DataType.Name(t.data_type)}, model {mc.DataType.Name(dtype)}"
            dims = list(t.dims)
            if t.HasField("reshape"):
                assert np.prod(dims) == np.prod(list(t.reshape.shape)), f"{t.name}: reshape changes the element count"
                dims = list(t.reshape.shape)
            full = ([-1] if batching else []) + dims
            assert len(full) == len(shape) and all(m in (-1, c) for c, m in zip(full, shape)), (
                f"{t.name}: config shape {full} (max_batch_size {cfg.max_batch_size}) vs model {shape}")
            assert not batching or shape[0] == -1, f"{t.name}: batching needs a dynamic first axis, model has {shape}"


class Tiny(nn.Module):
    """conv 3x3 -> relu -> mean pool -> linear: a detector-shaped net that exports in a second."""

    def __init__(self, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, 1)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def export_tiny(dest, precision, spec, **opts):
    torch.manual_seed(0)
    cfg = {"arch": "tiny", "model_kwargs": {}, "input": spec.to_dict(), "threshold": 0.4}
    export_package(ExportSource(Tiny().eval(), cfg, None), dest, ExportOptions(precision=precision, **opts),
                   echo=lambda m: None)
    return dest


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    spec = InputSpec(preprocess=Preprocess(policy="center-crop", size=(24, 32)))
    return export_tiny(tmp_path_factory.mktemp("t") / "det.fdet", "fp32", spec)


def test_onnxruntime_model_layout_and_config(package, tmp_path):
    repo = tmp_path / "repo"
    (written,) = write_triton_repo(package, repo, "det", max_batch=8, kind="gpu", count=2)
    assert written == repo / "det"
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == ["det/1/model.onnx", "det/config.pbtxt", "det/fakedet.manifest.json"]
    cfg = read_config(repo / "det/config.pbtxt")
    assert (cfg.name, cfg.platform, cfg.backend, cfg.max_batch_size) == ("det", "onnxruntime_onnx", "", 8)
    (inp,), (out,) = cfg.input, cfg.output
    assert (inp.name, inp.data_type, inp.format, list(inp.dims)) == ("image", mc.TYPE_FP32, mc.ModelInput.FORMAT_NCHW,
                                                                     [3, 24, 32])
    assert (out.name, out.data_type, list(out.dims), out.HasField("reshape")) == ("logit", mc.TYPE_FP32, [1], False)
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 2)]
    assert not cfg.HasField("optimization") and not cfg.parameters and not cfg.default_model_filename
    check_against_model(cfg, repo / "det/1/model.onnx")
    contract = Manifest.from_json((repo / "det/fakedet.manifest.json").read_text())
    assert contract.input.preprocess.policy == "center-crop" and contract.threshold.value == 0.4


def test_fp16_only_package_serves_its_fp16_model(tmp_path):
    spec = InputSpec(preprocess=Preprocess(policy="center-crop", size=(24, 32)))
    pkg = export_tiny(tmp_path / "h.fdet", "fp16", spec)
    (written,) = write_triton_repo(pkg, tmp_path / "repo", "h", max_batch=3, kind="cpu", count=1)
    assert (written / "1/model.onnx").read_bytes() == (pkg / "model.fp16.onnx").read_bytes()
    cfg = read_config(written / "config.pbtxt")
    # keep_io_types: the mixed-precision model still takes and gives float32
    assert cfg.input[0].data_type == mc.TYPE_FP32 and cfg.output[0].data_type == mc.TYPE_FP32
    assert cfg.max_batch_size == 3 and list(cfg.dynamic_batching.preferred_batch_size) == [3]
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
    # the fp16 artifact records ORT's CPU NCHWc crash: on CPU instances Triton runs basic + extended passes only
    assert cfg.optimization.graph.level == 1
    check_against_model(cfg, written / "1/model.onnx")
    (gpu,) = write_triton_repo(pkg, tmp_path / "repo_gpu", "h", max_batch=3, kind="gpu", count=1)
    assert not read_config(gpu / "config.pbtxt").HasField("optimization")  # GPU instances do not run that pass


# ---- models wrapped with `fakedet package`: the shapes and types found in the wild ----------

def _feed_conv(model, nodes, initializers, new_input_shape=None):
    """Put `nodes` between the graph input and the Conv, which then reads the last one's output."""
    g = model.graph
    conv = next(n for n in g.node if n.op_type == "Conv")
    conv.input[0] = nodes[-1].output[0]
    for i, n in enumerate(nodes):
        g.node.insert(i, n)
    g.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items())
    if new_input_shape:
        g.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, new_input_shape))


def qdq_input(model):
    _feed_conv(model, [helper.make_node("QuantizeLinear", ["input", "qs", "qz"], ["xq"]),
                       helper.make_node("DequantizeLinear", ["xq", "qs", "qz"], ["xdq"])],
               {"qs": np.float32(0.02), "qz": np.int8(0)})


def nhwc_input(model):
    _feed_conv(model, [helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2])], {}, ["N", 16, 16, 3])


def squeeze_output(model):
    """logit [N, 1] -> [N]."""
    g = model.graph
    g.node[-1].output[0] = "logit2d"
    g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "sq_axes"))
    g.node.append(helper.make_node("Squeeze", ["logit2d", "sq_axes"], ["output"]))
    g.output[0].CopyFrom(helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N"]))


def fp16_io(model):
    from onnxconverter_common import float16

    return float16.convert_float_to_float16(model, keep_io_types=False)


FIXED = {"policy": "center-crop", "size": [16, 16]}
VARIANTS = {  # build options, spec input changes, package kind, --instance, expected config
    "int8-qdq": (dict(edit=qdq_input), {}, "onnx-int8-qdq", ("cpu", 3),
                 dict(mbs=8, fmt="FORMAT_NCHW", in_dims=[3, 16, 16], out_dims=[1], types=("TYPE_FP32", "TYPE_FP32"))),
    "nhwc": (dict(edit=nhwc_input), {"layout": "NHWC"}, "onnx-fp32", ("auto", 2),
             dict(mbs=8, fmt="FORMAT_NHWC", in_dims=[16, 16, 3], out_dims=[1], types=("TYPE_FP32", "TYPE_FP32"))),
    "whole-image": (dict(dynamic_hw=True), {"preprocess": {"policy": "whole-image"}}, "onnx-fp32", ("gpu", 1),
                    dict(mbs=8, fmt="FORMAT_NCHW", in_dims=[3, -1, -1], out_dims=[1], types=("TYPE_FP32", "TYPE_FP32"))),
    "two-class": (dict(two_class=True), {}, "onnx-fp32", ("gpu", 1),
                  dict(mbs=8, fmt="FORMAT_NCHW", in_dims=[3, 16, 16], out_dims=[2], types=("TYPE_FP32", "TYPE_FP32"))),
    # the model fixes its batch: no Triton batching, dims are the whole shape
    "fixed-batch": (dict(fixed_batch=2), {}, "onnx-fp32", ("gpu", 1),
                    dict(mbs=0, fmt="FORMAT_NCHW", in_dims=[2, 3, 16, 16], out_dims=[2, 1], types=("TYPE_FP32", "TYPE_FP32"))),
    # a [N] logit: declared [1], reshaped to the model's per-sample shape []
    "rank1-output": (dict(edit=squeeze_output), {}, "onnx-fp32", ("gpu", 1),
                     dict(mbs=8, fmt="FORMAT_NCHW", in_dims=[3, 16, 16], out_dims=[1], reshape=[],
                          types=("TYPE_FP32", "TYPE_FP32"))),
    "fp16-io": (dict(edit=fp16_io), {"dtype": "float16"}, "onnx-fp32", ("gpu", 1),
                dict(mbs=8, fmt="FORMAT_NCHW", in_dims=[3, 16, 16], out_dims=[1], types=("TYPE_FP16", "TYPE_FP16"))),
}


def wrap_tiny(tmp_path, build, spec_input, kind):
    build = dict(build)
    edit = build.pop("edit", None)
    src = tmp_path / "m.onnx"
    build_tiny_onnx(src, **build)
    if edit is not None:
        model = onnx.load(str(src))
        model = edit(model) or model
        onnx.checker.check_model(model)
        onnx.save(model, str(src))
    inp = {"name": "input", "mean": [0.5] * 3, "std": [0.25] * 3, "preprocess": FIXED, **spec_input}
    out_kind = "two-class-logits" if build.get("two_class") else "logit"
    spec = write_spec(tmp_path / "spec.json", input=inp, output={"name": "output", "kind": out_kind})
    pkg = tmp_path / "m.fdet"
    assert main(["package", str(src), "--input-spec", str(spec), "-o", str(pkg), "--kind", kind]) == 0
    return pkg


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_packaged_model_configs_follow_triton_rules(variant, tmp_path):
    build, spec_input, kind, (inst_kind, count), want = VARIANTS[variant]
    pkg = wrap_tiny(tmp_path, build, spec_input, kind)
    (written,) = write_triton_repo(pkg, tmp_path / "repo", "m", max_batch=8, kind=inst_kind, count=count)
    cfg = read_config(written / "config.pbtxt")
    (inp,), (out,) = cfg.input, cfg.output
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("m", "onnxruntime_onnx", want["mbs"])
    assert (inp.name, mc.ModelInput.Format.Name(inp.format), list(inp.dims)) == ("input", want["fmt"], want["in_dims"])
    assert (out.name, list(out.dims)) == ("output", want["out_dims"])
    assert (mc.DataType.Name(inp.data_type), mc.DataType.Name(out.data_type)) == want["types"]
    if "reshape" in want:
        assert out.HasField("reshape") and list(out.reshape.shape) == want["reshape"]
    else:
        assert not out.HasField("reshape")
    # Triton refuses preferred batch sizes above max_batch_size, so a fixed-batch model has no batcher
    assert cfg.HasField("dynamic_batching") == (want["mbs"] > 0)
    group = cfg.instance_group[0]
    assert (mc.ModelInstanceGroup.Kind.Name(group.kind), group.count) == (f"KIND_{inst_kind.upper()}", count)
    check_against_model(cfg, written / "1/model.onnx")
    if kind == "onnx-int8-qdq":
        assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(written / "1/model.onnx")).graph.node}


# ---- TensorRT plans ---------------------------------------------------------------------------

def test_tensorrt_model_from_plans_and_whole_image_dims(tmp_path):
    spec = InputSpec(dynamic_axes=("batch", "height", "width"), preprocess=Preprocess(policy="whole-image", size=None))
    pkg_path = export_tiny(tmp_path / "w.fdet", "fp32", spec, whole_image_size=(32, 32))
    pkg = ModelPackage.open(pkg_path)
    # Plan entries as `fakedet build` records them (the bytes are placeholders: Triton is not run here)
    with PackageWriter(pkg_path, pkg.manifest, base=pkg) as w:
        for ver, cc, maxb in (("10.3.0", "8.7", 16), ("10.16.0", "9.0", 32), ("8.6.1", "9.0", 8)):
            prof = R.profile_shapes(pkg.manifest.input, (1, 4, maxb), (64, 256, 512))
            name = R.plan_filename(ver, cc, "fp16")
            w.staged_path(name).write_bytes(np.random.default_rng(maxb).bytes(64))
            w.add_file(None, name, "trt-plan", **R.plan_attrs(ver, cc, "gpu", "fp16", prof, None, False, "none",
                                                              "model.onnx", None))
    repo = tmp_path / "repo"
    assert main(["export", str(pkg_path), "-o", str(repo), "--format", "triton", "--instance", "cpu:1"]) == 0

    onnx_cfg = read_config(repo / "w/config.pbtxt")
    assert list(onnx_cfg.input[0].dims) == [3, -1, -1]
    assert [(g.kind, g.count) for g in onnx_cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
    check_against_model(onnx_cfg, repo / "w/1/model.onnx")

    trt_cfg = read_config(repo / "w_trt/config.pbtxt")
    assert (trt_cfg.name, trt_cfg.platform) == ("w_trt", "tensorrt_plan")
    # one plan per GPU, newest TensorRT for sm90; max batch within every profile
    assert dict(trt_cfg.cc_model_filenames) == {"8.7": "trt-10.3.0_sm87_fp16.plan", "9.0": "trt-10.16.0_sm90_fp16.plan"}
    assert trt_cfg.default_model_filename == "trt-10.16.0_sm90_fp16.plan"  # unlisted GPUs: the newest architecture
    assert trt_cfg.max_batch_size == 16 and list(trt_cfg.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert [(g.kind, g.count) for g in trt_cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 1)]
    assert list(trt_cfg.input[0].dims) == [3, -1, -1] and trt_cfg.input[0].data_type == mc.TYPE_FP32
    # the plans' tensors are those of the ONNX they were built from
    check_against_model(trt_cfg, pkg_path / "model.onnx")
    plans = sorted(p.name for p in (repo / "w_trt/1").iterdir())
    assert plans == ["trt-10.16.0_sm90_fp16.plan", "trt-10.3.0_sm87_fp16.plan"]
    assert (repo / "w_trt/1/trt-10.3.0_sm87_fp16.plan").read_bytes() == (pkg_path / "plans/trt-10.3.0_sm87_fp16.plan").read_bytes()
    assert json.loads((repo / "w_trt/fakedet.manifest.json").read_text())["name"] == "w"


def test_rewrite_replaces_model_dir_and_keeps_other_models(package, tmp_path):
    repo = tmp_path / "repo"
    (repo / "other/1").mkdir(parents=True)
    (repo / "other/config.pbtxt").write_text('name: "other"\n')
    write_triton_repo(package, repo, "det", max_batch=4)
    (repo / "det/stale.txt").write_text("old")
    write_triton_repo(package, repo, "det", max_batch=2)
    assert not (repo / "det/stale.txt").exists()
    assert read_config(repo / "det/config.pbtxt").max_batch_size == 2
    assert (repo / "other/config.pbtxt").exists()
    assert [p.name for p in repo.iterdir() if p.name.startswith(".")] == []


# ---- negative controls: the checks above fail on a wrong config ------------------------------

@pytest.mark.parametrize("good, bad", [
    ("max_batch_size:", "max_batch_sise:"),  # misspelled field
    ("data_type: TYPE_FP32", "data_type: TYPE_FLOAT32"),  # no such DataType
    ("kind: KIND_GPU", "kind: GPU"),  # no such instance kind
    ('platform: "onnxruntime_onnx"', "platform: onnxruntime_onnx"),  # a string needs quotes
])
def test_corrupted_config_fails_the_proto_parse(package, tmp_path, good, bad):
    (written,) = write_triton_repo(package, tmp_path / "repo", "det", max_batch=8)
    text = (written / "config.pbtxt").read_text()
    assert good in text
    text_format.Parse(text, mc.ModelConfig())
    with pytest.raises(text_format.ParseError):
        text_format.Parse(text.replace(good, bad, 1), mc.ModelConfig())


def _batching_on(cfg):  # what the exporter wrote for fixed-batch models before it read the model
    cfg.max_batch_size = 8
    cfg.input[0].dims[:] = cfg.input[0].dims[1:]
    cfg.output[0].dims[:] = cfg.output[0].dims[1:]


MISMATCHES = {
    "batch axis in dims": ("two-class", lambda cfg: cfg.input[0].dims.insert(0, -1)),
    "wrong output type": ("two-class", lambda cfg: setattr(cfg.output[0], "data_type", mc.TYPE_FP16)),
    "wrong output name": ("two-class", lambda cfg: setattr(cfg.output[0], "name", "score")),
    "wrong fixed size": ("two-class", lambda cfg: cfg.input[0].dims.__setitem__(1, 32)),
    "batching a fixed-batch model": ("fixed-batch", _batching_on),
    "[N] output without reshape": ("rank1-output", lambda cfg: cfg.output[0].ClearField("reshape")),
    "fp16 output declared fp32": ("fp16-io", lambda cfg: setattr(cfg.output[0], "data_type", mc.TYPE_FP32)),
}


@pytest.mark.parametrize("mismatch", list(MISMATCHES))
def test_config_that_disagrees_with_its_model_is_caught(mismatch, tmp_path):
    variant, corrupt = MISMATCHES[mismatch]
    build, spec_input, kind, _, _ = VARIANTS[variant]
    (written,) = write_triton_repo(wrap_tiny(tmp_path, build, spec_input, kind), tmp_path / "repo", "m")
    cfg = read_config(written / "config.pbtxt")
    check_against_model(cfg, written / "1/model.onnx")
    corrupt(cfg)
    with pytest.raises(AssertionError):
        check_against_model(cfg, written / "1/model.onnx")


# ---- the image endpoint: Triton's Python backend running fakedet on encoded images ------
def test_image_endpoint_model_dir(tiny_package, tmp_path):
    src, _ = tiny_package
    assert main(["export", str(src), "-o", str(tmp_path / "repo"), "--format", "triton", "--name", "t",
                 "--image-endpoint", "--max-batch", "8", "--instance", "cpu:2"]) == 0
    d = tmp_path / "repo" / "t_images"
    cfg = read_config(d / "config.pbtxt")
    assert (cfg.name, cfg.backend, cfg.max_batch_size) == ("t_images", "python", 8)
    (inp,) = cfg.input
    assert (inp.name, inp.data_type, list(inp.dims)) == ("IMAGE", mc.TYPE_STRING, [1])
    assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [
        ("SCORE", mc.TYPE_FP32, [1]), ("IS_FAKE", mc.TYPE_BOOL, [1]), ("ERROR", mc.TYPE_STRING, [1])]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 2)]
    assert {k: v.string_value for k, v in cfg.parameters.items()} == {"fakedet_backend": "auto",
                                                                       "fakedet_precision": "auto"}
    # the package travels whole and intact; model.py is the shipped template
    copied = ModelPackage.open(d / "1" / "detector.fdet")
    copied.verify()
    assert copied.manifest.to_json() == ModelPackage.open(src).manifest.to_json()
    from fakedet.export.triton import PYTHON_MODEL

    assert (d / "1" / "model.py").read_text() == PYTHON_MODEL.read_text()
    compile(PYTHON_MODEL.read_text(), "model.py", "exec")  # valid Python for the stub's interpreter


def test_image_endpoint_from_a_bare_onnx_takes_only_its_own_file(tiny_package, tmp_path):
    """A bare .onnx package lives in a folder of other files: only it and a manifest travel."""
    import onnx

    from fakedet.package import embed_manifest

    pkg = ModelPackage.open(tiny_package[0])
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "unrelated.bin").write_bytes(b"x" * 100)
    model = onnx.load(str(tiny_package[0] / "model.onnx"))
    embed_manifest(model, pkg.manifest, "onnx-fp32")
    onnx.save(model, str(folder / "det.onnx"))
    (written,) = write_triton_repo(folder / "det.onnx", tmp_path / "repo", "d", kind="cpu", image_endpoint=True)[1:]
    copied = written / "1" / "detector.fdet"
    assert sorted(p.name for p in copied.iterdir()) == ["det.onnx", "manifest.json"]
    ModelPackage.open(copied).verify()
