"""FP32 ONNX -> mixed-precision FP16 ONNX (what TensorRT 11 builds FP16 engines from).

Converter: onnxconverter-common's float16 pass. It is maintained, pure Python, runs on
this CPU-only machine and lets us name exactly which ops stay FP32. NVIDIA Model
Optimizer's AutoCast would choose the FP32 islands from data, but it pulls in a large
dependency set (and CUDA-oriented tooling) we do not need for these CNN/ViT graphs.

Kept FP32:
  - graph inputs and outputs (keep_io_types): callers feed and read float32 as before;
  - reductions, normalisation and transcendental ops, where FP16's 10-bit mantissa or
    its 65504 range loses accuracy (LayerNorm statistics, softmax, pow/sqrt, exp/log).
onnxconverter-common 1.16's clean-up of redundant Cast(fp16)->Cast(fp32) pairs crashes
when the second cast feeds several nodes or a graph output (it does on open_clip heads),
so we switch it off for the call and remove those pairs ourselves (remove_cast_pairs).
Its value_info can also disagree with the new types (ORT then refuses the model), so we
drop it and re-run shape inference. Before converting we also drop the model's own
float32->float32 Casts and un-share initializers read by both FP32 and FP16 nodes; the
converter mistypes both (see drop_noop_float_casts, unshare_initializers).
"""

from __future__ import annotations

import contextlib
import warnings

from .onnx_export import check_and_infer

SENSITIVE_OPS = (
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp",
    "Softmax", "LogSoftmax", "Pow", "Sqrt", "Reciprocal", "Exp", "Log",
)


# ONNX Runtime 1.32's NCHWc layout transformer (CPU, ORT_ENABLE_ALL) crashes the process
# on mixed-precision transformer graphs (open_clip ViT-B-32 here). NCHWc is an fp32-only
# CPU layout, so switching it off for fp16 models costs nothing; the onnx-fp16 artifact
# records this in its attrs for the runtime.
ORT_CPU_DISABLED_OPTIMIZERS = ("NchwcTransformer",)


def fp16_block_list() -> list[str]:
    from onnxconverter_common import float16

    return sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OPS))


def unshare_initializers(model, blocked_ops: set[str]) -> int:
    """Give nodes of blocked (FP32) op types their own copy of any initializer that FP16
    nodes also read. Exporters and onnxslim merge identical constants (all-zero biases of a
    fresh model, for one), and the converter would otherwise cast the shared tensor for
    one consumer and leave the other with the wrong type. Returns the copies made."""
    inits = {i.name: i for i in model.graph.initializer}
    users: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            if name in inits:
                users.setdefault(name, []).append(node)
    made = 0
    for name, nodes in users.items():
        kinds = {n.op_type in blocked_ops for n in nodes}
        if kinds != {True, False}:
            continue
        copy_name = f"{name}__fp32"
        clone = model.graph.initializer.add()
        clone.CopyFrom(inits[name])
        clone.name = copy_name
        for n in nodes:
            if n.op_type in blocked_ops:
                for i, inp in enumerate(n.input):
                    if inp == name:
                        n.input[i] = copy_name
        made += 1
    return made


def _float_tensors(model) -> dict[str, int]:
    import onnx

    m = onnx.helper.make_model(model.graph, opset_imports=model.opset_import)
    del m.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(m)
    dtypes = {v.name: v.type.tensor_type.elem_type
              for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    dtypes.update({i.name: i.data_type for i in model.graph.initializer})
    return dtypes


def drop_noop_float_casts(model) -> int:
    """Remove the model's own Cast(float32 -> float32) nodes (e.g. open_clip's class
    embedding `.to(x.dtype)`). The converter keeps a Cast's target type, so such a node
    would hand a float32 tensor to an FP16 region."""
    from onnx import TensorProto

    from fakedet.onnx_graph import replace_uses

    dtypes = _float_tensors(model)
    outputs = {o.name for o in model.graph.output}
    dropped = 0
    for node in list(model.graph.node):
        if (node.op_type == "Cast" and _cast_to(node) == TensorProto.FLOAT
                and dtypes.get(node.input[0]) == TensorProto.FLOAT and node.output[0] not in outputs):
            replace_uses(model.graph, node.output[0], node.input[0])
            model.graph.node.remove(node)
            dropped += 1
    return dropped


def _cast_to(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def remove_cast_pairs(model) -> int:
    """Drop Cast(->fp16) -> Cast(->fp32) round trips between two FP32 regions: consumers of
    the second cast read the first cast's (float32) input directly. Returns pairs removed."""
    from onnx import TensorProto

    from fakedet.onnx_graph import producers, replace_uses

    removed = 0
    outputs = {o.name for o in model.graph.output}
    graph = model.graph
    # only casts of float32 tensors: a model's own Cast(int/bool -> float) becomes ->fp16
    # under the converter, and skipping the pair would feed its consumers the wrong type
    dtypes = _float_tensors(model)
    while True:
        writers = producers(graph)
        pair = None
        for n2 in graph.node:
            if n2.op_type != "Cast" or _cast_to(n2) != TensorProto.FLOAT or n2.output[0] in outputs:
                continue
            n1 = writers.get(n2.input[0])
            if (n1 is not None and n1.op_type == "Cast" and _cast_to(n1) == TensorProto.FLOAT16
                    and dtypes.get(n1.input[0]) == TensorProto.FLOAT):
                pair = (n1, n2)
                break
        if pair is None:
            return removed
        n1, n2 = pair
        replace_uses(graph, n2.output[0], n1.input[0])
        graph.node.remove(n2)
        if not any(n1.output[0] in n.input for n in graph.node) and n1.output[0] not in outputs:
            graph.node.remove(n1)
        removed += 1


@contextlib.contextmanager
def _library_cast_cleanup_off(float16):
    original = float16.remove_unnecessary_cast_node
    float16.remove_unnecessary_cast_node = lambda graph: None
    try:
        yield
    finally:
        float16.remove_unnecessary_cast_node = original


def to_fp16(proto):
    """Return a new mixed-precision model; float32 I/O, sensitive ops in float32."""
    import copy

    from onnxconverter_common import float16

    model = copy.deepcopy(proto)
    block_list = fp16_block_list()
    drop_noop_float_casts(model)
    unshare_initializers(model, set(block_list))
    with warnings.catch_warnings(), _library_cast_cleanup_off(float16):
        warnings.simplefilter("ignore")  # one "truncated to 1e-07" warning per tiny weight
        converted = float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=block_list,
            disable_shape_infer=False,
        )
    remove_cast_pairs(converted)
    # value_info from the fp32 graph can disagree with the new types; re-infer from scratch
    del converted.graph.value_info[:]
    return check_and_infer(converted)


def fp16_summary(proto) -> dict:
    """How much of the graph runs in FP16: counts of initializers by type."""
    from onnx import TensorProto

    counts = {"float16_initializers": 0, "float32_initializers": 0}
    for init in proto.graph.initializer:
        if init.data_type == TensorProto.FLOAT16:
            counts["float16_initializers"] += 1
        elif init.data_type == TensorProto.FLOAT:
            counts["float32_initializers"] += 1
    counts["cast_nodes"] = sum(1 for n in proto.graph.node if n.op_type == "Cast")
    return counts
