"""TensorRT's native calibration cache (implicit INT8, TensorRT <= 10), written on the CPU.

    TRT-100300-EntropyCalibration2
    image: 3c010a14
    input.4: 3d1f0b5a

One line per tensor: the float32 bit pattern of scale = amax / 127 in hex (TensorRT
reads dynamic range = scale * 127). Names are the FP32 ONNX model's tensor names, which
is what TensorRT's ONNX parser gives its tensors."""

from __future__ import annotations

import numpy as np

ALGORITHMS = {
    "entropy2": "EntropyCalibration2",
    "entropy": "EntropyCalibration",
    "minmax": "MinMaxCalibration",
    "legacy": "LegacyCalibration",
}
DEFAULT_TRT_VERSION = 100300  # TensorRT 10.3 (JetPack 6.1 / 6.2)


def scale_hex(amax: float) -> str:
    """Hex of the float32 bits of amax / 127."""
    scale = np.array([np.float64(amax) / 127.0], dtype=">f4")
    return scale.tobytes().hex()


def format_cache(amax: dict[str, float], version: int = DEFAULT_TRT_VERSION, algorithm: str = "entropy2") -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown TensorRT calibrator '{algorithm}' (known: {', '.join(ALGORITHMS)})")
    lines = [f"TRT-{int(version)}-{ALGORITHMS[algorithm]}"]
    for name, a in amax.items():
        # names may hold '::' (torch exports); the value follows the last ': '
        if "\n" in name or name.endswith(":"):
            raise ValueError(f"tensor name {name!r} cannot be written to a TensorRT calibration cache")
        lines.append(f"{name}: {scale_hex(a)}")
    return "\n".join(lines) + "\n"


def parse_cache(text: str) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}) from a cache's text."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise ValueError("not a TensorRT calibration cache (no TRT-<version>-<calibrator> header)")
    out = {}
    for ln in lines[1:]:
        name, _, hexbits = ln.rpartition(": ")
        out[name] = float(np.frombuffer(bytes.fromhex(hexbits), dtype=">f4")[0])
    return lines[0], out
