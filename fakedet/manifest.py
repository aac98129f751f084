"""The model-package manifest: a versioned, validated description of a detector.

A manifest says everything needed to run a model without the code that trained
it: the input tensor and the preprocessing that produces it, the output and how
it becomes P(fake), the decision threshold, where the model came from, and the
artifacts (ONNX files, TensorRT plans, calibration data) with their hashes.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InputSpecError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)

POLICIES = ("center-crop", "resize", "resize-center-crop", "whole-image")
SMALL_IMAGE_RULES = ("pad", "refuse", "upscale")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
OUTPUT_KINDS = ("logit", "two-class-logits")
ARTIFACT_KINDS = (
    "onnx-fp32",
    "onnx-fp16",
    "onnx-int8-qdq",
    "trt-calibration-cache",
    "trt-plan",
    "calibration-report",
    "parity-report",
)
ONNX_KINDS = ("onnx-fp32", "onnx-fp16", "onnx-int8-qdq")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _no_unknown(cls, d: dict, where: str) -> None:
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise InputSpecError(f"{where}: unknown field(s) {sorted(unknown)}")


def _need(d: dict, key: str, where: str):
    if key not in d:
        raise InputSpecError(f"{where}: missing required field '{key}'")
    return d[key]


@dataclass
class Preprocess:
    """How an image becomes the model's input tensor.

    policy:
      center-crop         crop `size` from the centre at native resolution (no resize);
                          images smaller than the crop follow `small_images`.
      resize              resize to exactly `size` with `interpolation`.
      resize-center-crop  resize the shorter side to `resize_shorter`, then centre-crop `size`
                          (CLIP's preprocessing).
      whole-image         the image at native size; `multiple_of` > 1 pads right/bottom to a
                          multiple (for networks with fixed downsampling factors).
    small_images (center-crop only):
      pad      pad symmetrically with `pad_value` (0-255 pixel value) up to the crop size
      refuse   the image is reported as an error
      upscale  resize the shorter side up to the crop size, then crop
    """

    policy: str = "center-crop"
    size: tuple[int, int] | None = (224, 224)  # (height, width)
    interpolation: str = "bilinear"
    resize_shorter: int | None = None
    small_images: str = "pad"
    pad_value: int = 0
    multiple_of: int = 1
    max_pixels: int = 89_478_485  # Pillow's default decompression-bomb threshold

    def validate(self, where: str = "preprocess") -> "Preprocess":
        if self.policy not in POLICIES:
            raise InputSpecError(
                f"{where}: unknown preprocessing policy '{self.policy}' (known: {', '.join(POLICIES)})"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise InputSpecError(
                f"{where}: unknown interpolation '{self.interpolation}' (known: {', '.join(INTERPOLATIONS)})"
            )
        if self.small_images not in SMALL_IMAGE_RULES:
            raise InputSpecError(
                f"{where}: unknown small_images rule '{self.small_images}' (known: {', '.join(SMALL_IMAGE_RULES)})"
            )
        if self.policy != "whole-image":
            if self.size is None or len(self.size) != 2 or min(self.size) < 1:
                raise InputSpecError(f"{where}: policy '{self.policy}' needs size [height, width]")
            self.size = (int(self.size[0]), int(self.size[1]))
        if self.policy == "resize-center-crop" and not self.resize_shorter:
            raise InputSpecError(f"{where}: policy 'resize-center-crop' needs resize_shorter")
        if not 0 <= int(self.pad_value) <= 255:
            raise InputSpecError(f"{where}: pad_value must be a pixel value 0-255")
        if int(self.multiple_of) < 1:
            raise InputSpecError(f"{where}: multiple_of must be >= 1")
        if int(self.max_pixels) < 1:
            raise InputSpecError(f"{where}: max_pixels must be >= 1")
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "preprocess") -> "Preprocess":
        _no_unknown(cls, d, where)
        d = dict(d)
        if d.get("size") is not None:
            size = d["size"]
            d["size"] = (int(size), int(size)) if isinstance(size, int) else tuple(size)
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size) if self.size is not None else None
        return d


@dataclass
class InputSpec:
    """The input tensor and the preprocessing contract that fills it."""

    name: str = "image"
    dtype: str = "float32"
    layout: str = "NCHW"
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dynamic_axes: tuple[str, ...] = ("batch",)
    preprocess: Preprocess = field(default_factory=Preprocess)

    def validate(self, where: str = "input") -> "InputSpec":
        if self.dtype not in ("float32", "float16"):
            raise InputSpecError(f"{where}: dtype must be float32 or float16, got '{self.dtype}'")
        if self.layout not in ("NCHW", "NHWC"):
            raise InputSpecError(f"{where}: layout must be NCHW or NHWC, got '{self.layout}'")
        if self.channel_order not in ("RGB", "BGR"):
            raise InputSpecError(f"{where}: channel_order must be RGB or BGR, got '{self.channel_order}'")
        for key in ("mean", "std"):
            v = getattr(self, key)
            if len(v) != 3:
                raise InputSpecError(f"{where}: {key} needs 3 values, got {list(v)}")
            setattr(self, key, tuple(float(x) for x in v))
        if min(self.std) <= 0:
            raise InputSpecError(f"{where}: std values must be > 0")
        self.preprocess.validate(f"{where}.preprocess")
        return self

    def hw_axes(self) -> tuple[int, int]:
        """Indices of the height and width axes of the batched input tensor."""
        return (2, 3) if self.layout == "NCHW" else (1, 2)

    def tensor_shape(self, batch: int | None = None, hw: tuple | None = None) -> tuple:
        """The input tensor's shape: `batch` images (None: no batch axis) of `hw`
        (default: the preprocessing size; a whole-image model has none, so pass one).
        The one place that turns a layout into a shape."""
        h, w = hw if hw is not None else (self.preprocess.size or (None, None))
        sample = (3, h, w) if self.layout == "NCHW" else (h, w, 3)
        return sample if batch is None else (batch, *sample)

    @classmethod
    def from_dict(cls, d: dict, where: str = "input") -> "InputSpec":
        _no_unknown(cls, d, where)
        d = dict(d)
        d["preprocess"] = Preprocess.from_dict(d.get("preprocess", {}), f"{where}.preprocess")
        if "dynamic_axes" in d:
            d["dynamic_axes"] = tuple(d["dynamic_axes"])
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "layout": self.layout,
            "channel_order": self.channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "dynamic_axes": list(self.dynamic_axes),
            "preprocess": self.preprocess.to_dict(),
        }


@dataclass
class OutputSpec:
    """The output tensor. `logit`: one value, sigmoid gives P(fake). `two-class-logits`:
    two values, softmax[fake_index] gives P(fake)."""

    name: str = "logit"
    kind: str = "logit"
    fake_index: int = 1

    def validate(self, where: str = "output") -> "OutputSpec":
        if self.kind not in OUTPUT_KINDS:
            raise InputSpecError(f"{where}: kind must be one of {', '.join(OUTPUT_KINDS)}, got '{self.kind}'")
        if self.fake_index not in (0, 1):
            raise InputSpecError(f"{where}: fake_index must be 0 or 1")
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "output") -> "OutputSpec":
        _no_unknown(cls, d, where)
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Threshold:
    """Decision threshold on P(fake), and how it was chosen."""

    value: float = 0.5
    method: str = "default"
    details: dict = field(default_factory=dict)

    def validate(self, where: str = "threshold") -> "Threshold":
        if not 0.0 <= float(self.value) <= 1.0:
            raise InputSpecError(f"{where}: value must lie in [0, 1], got {self.value}")
        self.value = float(self.value)
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "threshold") -> "Threshold":
        _no_unknown(cls, d, where)
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Artifact:
    """One file of a package. `attrs` holds kind-specific facts (e.g. for a trt-plan:
    trt_version, compute_capability, precision, profiles; for calibration outputs:
    method, data_digest, model_sha256)."""

    file: str
    kind: str
    sha256: str
    size: int = 0
    attrs: dict = field(default_factory=dict)

    def validate(self, where: str = "artifact") -> "Artifact":
        if self.kind not in ARTIFACT_KINDS:
            raise InputSpecError(f"{where}: unknown artifact kind '{self.kind}' (known: {', '.join(ARTIFACT_KINDS)})")
        if self.file.startswith("/") or ".." in self.file.replace("\\", "/").split("/"):
            raise InputSpecError(f"{where}: artifact path '{self.file}' leaves the package")
        if len(self.sha256) != 64:
            raise InputSpecError(f"{where}: sha256 must be 64 hex digits")
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "artifact") -> "Artifact":
        _no_unknown(cls, d, where)
        for key in ("file", "kind", "sha256"):
            _need(d, key, where)
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def int8_target(self) -> str:
        """The engine a QDQ INT8 artifact was made for ("tensorrt": symmetric int8; "ort-cpu":
        uint8 activations). Packages older than the attribute hold the TensorRT one.
        The one place that decides an INT8 artifact's flavour."""
        return self.attrs.get("target", "tensorrt")


@dataclass
class Manifest:
    name: str
    architecture: str = "unknown"
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    threshold: Threshold = field(default_factory=Threshold)
    provenance: dict = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    # ---- artifacts -------------------------------------------------------
    def artifacts_of(self, *kinds: str) -> list[Artifact]:
        return [a for a in self.artifacts if a.kind in kinds]

    def artifact(self, kind: str) -> Artifact | None:
        found = self.artifacts_of(kind)
        return found[0] if found else None

    def put_artifact(self, artifact: Artifact) -> None:
        """Add an artifact, replacing any with the same file name."""
        self.artifacts = [a for a in self.artifacts if a.file != artifact.file] + [artifact]

    # ---- (de)serialisation ----------------------------------------------
    def to_dict(self, with_artifacts: bool = True) -> dict:
        d = {
            "schema_version": self.schema_version,
            "name": self.name,
            "architecture": self.architecture,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "threshold": self.threshold.to_dict(),
            "provenance": self.provenance,
        }
        if with_artifacts:
            d["artifacts"] = [a.to_dict() for a in self.artifacts]
        return d

    def to_json(self, with_artifacts: bool = True) -> str:
        return json.dumps(self.to_dict(with_artifacts), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, d: Any, where: str = "manifest") -> "Manifest":
        if not isinstance(d, dict):
            raise InputSpecError(f"{where}: expected a JSON object")
        version = d.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise InputSpecError(
                f"{where}: unknown schema_version {version!r} (this fakedet reads "
                f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}; upgrade fakedet to open it)"
            )
        _no_unknown(cls, d, where)
        return cls(
            name=str(_need(d, "name", where)),
            architecture=str(d.get("architecture", "unknown")),
            input=InputSpec.from_dict(_need(d, "input", where), f"{where}.input"),
            output=OutputSpec.from_dict(d.get("output", {}), f"{where}.output"),
            threshold=Threshold.from_dict(d.get("threshold", {}), f"{where}.threshold"),
            provenance=copy.deepcopy(d.get("provenance", {})),
            artifacts=[
                Artifact.from_dict(a, f"{where}.artifacts[{i}]") for i, a in enumerate(d.get("artifacts", []))
            ],
            schema_version=version,
        )

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> "Manifest":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputSpecError(f"{where}: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(data, where)

    def copy(self) -> "Manifest":
        return Manifest.from_dict(copy.deepcopy(self.to_dict()))
