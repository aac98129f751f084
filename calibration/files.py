"""What `fakedet calibrate` adds to a package: its file names and the two INT8 flavours."""

from fakedet.artifact_kinds import CALIBRATION_REPORT, ONNX_FP32, ONNX_INT8_QDQ, TRT_CALIBRATION_CACHE, default_file


INT8_FILE = default_file(ONNX_INT8_QDQ)  # the TensorRT flavour
INT8_CPU_FILE = "model.int8-cpu.onnx"
# The CPU flavour's weights: 7-bit (ORT's reduce_range), so ONNX Runtime's u8 x s8 kernels
# cannot saturate on x86 without VNNI and compute the exact quantization arithmetic on every
# tier; chosen over 8-bit and uint8 weights by benchmarks/calibration_int8.py (accuracy and
# speed per form) and benchmarks/int8_cpu_tiers.py (kernels vs exact arithmetic per tier).
CPU_WEIGHTS = "int8-7bit"
# (target attr, file, activation type, weight form): the TensorRT one first (older readers
# take the first QDQ). TensorRT's is guarded on the exact quantization arithmetic (it does not
# run ORT's CPU kernels); the CPU one on ORT's kernels here, which for it equal that arithmetic.
TARGETS = (("tensorrt", INT8_FILE, "int8", "int8"), ("ort-cpu", INT8_CPU_FILE, "uint8", CPU_WEIGHTS))
CACHE_FILE = default_file(TRT_CALIBRATION_CACHE)
REPORT_FILE = default_file(CALIBRATION_REPORT)
FIGURE_FILE = "calibration.png"
FP32_FILE = default_file(ONNX_FP32)
