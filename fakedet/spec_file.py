"""The input-spec file: how to run an ONNX image classifier fakedet did not train.

    {
      "name": "my-detector",                      # optional, default: the ONNX file's stem
      "architecture": "convnext-tiny",            # optional, free text
      "input":  { InputSpec fields },             # see fakedet.manifest.InputSpec / Preprocess
      "output": { "name": "logits", "kind": "two-class-logits", "fake_index": 1 },
      "threshold": 0.5                            # or {"value": 0.5, "method": "..."}
    }

A complete example ships as fakedet/examples/input_spec.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ManifestError
from .manifest import InputSpec, OutputSpec, Threshold
from .safe_json import read_json_file

EXAMPLE = Path(__file__).with_name("examples") / "input_spec.json"


@dataclass
class SpecFile:
    input: InputSpec
    output: OutputSpec
    threshold: Threshold
    name: str | None = None
    architecture: str | None = None


def load_spec_file(path: str | Path) -> SpecFile:
    path = Path(path)
    data = read_json_file(path)  # a FIFO, an oversized or too deeply nested file is refused here
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object")
    unknown = set(data) - {"name", "architecture", "input", "output", "threshold", "$comment"}
    if unknown:
        raise ManifestError(f"{path}: unknown field(s) {sorted(unknown)} (see {EXAMPLE.name})")
    if "input" not in data:
        raise ManifestError(f"{path}: missing required field 'input'")
    try:
        thr = data.get("threshold", 0.5)
        threshold = Threshold.from_dict({"value": thr} if isinstance(thr, (int, float)) else thr, "threshold")
        return SpecFile(
            input=InputSpec.from_dict(data["input"], "input"),
            output=OutputSpec.from_dict(data.get("output", {}), "output"),
            threshold=threshold,
            name=data.get("name"),
            architecture=data.get("architecture"),
        )
    except ManifestError as e:
        raise ManifestError(f"{path}: {e}") from None
    except TypeError as e:
        raise ManifestError(f"{path}: {e}") from None
