"""Record the option keys ONNX Runtime's GPU execution providers accept, for
tests/runtime/test_ort_provider_options.py (fakedet's provider options checked without a GPU).

An unknown key in `providers=[("TensorrtExecutionProvider", {...})]` fails session
creation, but only on a machine where the provider loads. The keys are plain strings in
the provider libraries of the onnxruntime-gpu wheel, so they can be read here without
loading them (or CUDA):

    pip download --no-deps -d wheels onnxruntime-gpu==1.31.1
    python scripts/ort_provider_options.py wheels/onnxruntime_gpu-*.whl -o tests/data/ort_providers
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

from fakedet.atomic import sha256_file

sys.path.insert(0, str(Path(__file__).parent))
from trt_api_surface import binary_identifiers, record_wheels, wheel_version  # noqa: E402

LIBRARIES = {
    "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so",
    "CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
}
OPTION_LIKE = re.compile(r"^[a-z][a-z0-9_]{2,63}$")  # option keys are snake_case


def read_wheel(path: Path) -> dict:
    if not path.name.startswith("onnxruntime_gpu-"):
        raise SystemExit(f"{path.name}: not an onnxruntime-gpu wheel")
    record = {"onnxruntime": wheel_version(path.name), "source": path.name, "sha256": sha256_file(path),
              "providers": {}}
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for provider, lib in LIBRARIES.items():
            member = next((n for n in names if n.endswith("/" + lib)), None)
            if member is None:
                raise SystemExit(f"{path.name}: no {lib}")
            keys = {t for t in binary_identifiers(zf.read(member)) if OPTION_LIKE.match(t) and "_" in t}
            record["providers"][provider] = sorted(keys)
    return record


def main(argv: list[str] | None = None) -> int:
    def name_and_summary(record: dict) -> tuple[str, str]:
        sizes = ", ".join(f"{p}: {len(k)}" for p, k in record["providers"].items())
        return f"onnxruntime-gpu-{record['onnxruntime']}", f"{sizes} names"

    return record_wheels(__doc__, "tests/data/ort_providers", read_wheel, name_and_summary, argv)


if __name__ == "__main__":
    sys.exit(main())
