"""The model-package manifest: a versioned, validated description of a detector.

A manifest says everything needed to run a model without the code that trained
it: the input tensor and the preprocessing that produces it, the output and how
it becomes P(fake), the decision threshold, where the model came from, and the
artifacts (ONNX files, TensorRT plans, calibration data) with their hashes.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import InputSpecError, ManifestError
from .safe_json import MAX_JSON_DEPTH, depth, parse_json

# 2: the optional `text_input` (caption-aware models). Version 1 packages (image only) open unchanged.
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)

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
    "onnx-external-data",  # tensors of an ONNX artifact kept beside it (models over 2 GB); attrs: of
    "tokenizer",  # a caption-aware model's tokenizer (HF tokenizers JSON); attrs: tokenizer kind
)
ONNX_KINDS = ("onnx-fp32", "onnx-fp16", "onnx-int8-qdq")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# Sane ranges for every number a package may state: a crafted manifest must not make the
# runtime allocate without bound (a 10**6 crop) or switch the decompression-bomb guard off.
MAX_SIDE = 4096  # size and resize_shorter, in pixels
MAX_MULTIPLE_OF = 512
PIXEL_LIMIT = 2 * 89_478_485  # max_pixels ceiling: the runtime's own limit (Pillow's error threshold)
MAX_STD_MEAN = 1e4
MAX_NAME = 256
MAX_ARTIFACTS = 1000
MAX_FILE_BYTES = 1 << 50


def _kind(v) -> str:
    if isinstance(v, str):
        text = f"'{v}'"
    else:
        text = json.dumps(v) if isinstance(v, (int, float, bool, type(None))) else f"a {type(v).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def _object(d, where: str) -> dict:
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {_kind(d)}")
    return d


def _int(v, where: str, key: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ManifestError(f"{where}: {key} must be an integer, got {_kind(v)}")
    if not lo <= v <= hi:
        raise ManifestError(f"{where}: {key} must lie in [{lo}, {hi}], got {v}")
    return v


def _num(v, where: str, key: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ManifestError(f"{where}: {key} must be a finite number, got {_kind(v)}")
    if not lo <= v <= hi:
        raise ManifestError(f"{where}: {key} must lie in [{lo:g}, {hi:g}], got {v:g}")
    return float(v)


def _str(v, where: str, key: str, max_len: int = MAX_NAME) -> str:
    if not isinstance(v, str):
        raise ManifestError(f"{where}: {key} must be a string, got {_kind(v)}")
    if len(v) > max_len:
        raise ManifestError(f"{where}: {key} is {len(v)} characters long (at most {max_len})")
    return v


def _choice(v, where: str, key: str, known) -> str:
    if not isinstance(v, str) or v not in known:
        raise ManifestError(f"{where}: unknown {key} {_kind(v)} (known: {', '.join(known)})")
    return v


def _no_unknown(cls, d: dict, where: str) -> None:
    _object(d, where)
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {sorted(unknown)}")


class _FlatRecord:
    """from_dict / to_dict for a dataclass of plain fields: unknown keys refused, then validate."""

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None):
        where = where or cls.WHERE
        _no_unknown(cls, d, where)
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        return asdict(self)


def _need(d: dict, key: str, where: str):
    if key not in d:
        raise ManifestError(f"{where}: missing required field '{key}'")
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
        _choice(self.policy, where, "preprocessing policy", POLICIES)
        _choice(self.interpolation, where, "interpolation", INTERPOLATIONS)
        _choice(self.small_images, where, "small_images rule", SMALL_IMAGE_RULES)
        if self.policy != "whole-image" or self.size is not None:
            if not isinstance(self.size, (tuple, list)) or len(self.size) != 2:
                raise InputSpecError(f"{where}: policy '{self.policy}' needs size [height, width], got {_kind(self.size)}")
            self.size = tuple(_int(s, where, "size", 1, MAX_SIDE) for s in self.size)
        if self.resize_shorter is not None:
            _int(self.resize_shorter, where, "resize_shorter", 1, MAX_SIDE)
        if self.policy == "resize-center-crop" and not self.resize_shorter:
            raise InputSpecError(f"{where}: policy 'resize-center-crop' needs resize_shorter")
        _int(self.pad_value, where, "pad_value (a pixel value)", 0, 255)
        _int(self.multiple_of, where, "multiple_of", 1, MAX_MULTIPLE_OF)
        _int(self.max_pixels, where, "max_pixels", 1, PIXEL_LIMIT)
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "preprocess") -> "Preprocess":
        _no_unknown(cls, d, where)
        d = dict(d)
        size = d.get("size")
        if isinstance(size, int) and not isinstance(size, bool):
            d["size"] = (size, size)
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
        _str(self.name, where, "name")
        _choice(self.dtype, where, "dtype", ("float32", "float16"))
        _choice(self.layout, where, "layout", ("NCHW", "NHWC"))
        _choice(self.channel_order, where, "channel_order", ("RGB", "BGR"))
        for key, lo in (("mean", -MAX_STD_MEAN), ("std", 1e-6)):
            v = getattr(self, key)
            if not isinstance(v, (tuple, list)) or len(v) != 3:
                raise InputSpecError(f"{where}: {key} needs 3 values, got {_kind(v)}")
            setattr(self, key, tuple(_num(x, where, key, lo, MAX_STD_MEAN) for x in v))
        if not isinstance(self.dynamic_axes, (tuple, list)) or len(self.dynamic_axes) > 8:
            raise InputSpecError(f"{where}: dynamic_axes must be a list of at most 8 names, got {_kind(self.dynamic_axes)}")
        self.dynamic_axes = tuple(_str(a, where, "dynamic_axes entry", 64) for a in self.dynamic_axes)
        if not isinstance(self.preprocess, Preprocess):
            raise InputSpecError(f"{where}: preprocess must be an object")
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


TOKENIZER_KINDS = ("clip-bpe",)
TRUNCATIONS = ("end-with-eot",)
EMPTY_CAPTION_RULES = ("refuse", "score")
MAX_CONTEXT_LENGTH = 4096


@dataclass
class TextInputSpec(_FlatRecord):
    """A caption-aware model's second input: the caption's token ids.

    tokenizer       the package file holding the tokenizer (an artifact of kind
                    "tokenizer", hashed like every artifact)
    tokenizer_kind  clip-bpe: CLIP's byte-level BPE, text cleaned as open_clip cleans it,
                    [start] tokens [end], padded with 0
    truncation      end-with-eot: a caption longer than context_length is cut and its last
                    token replaced by the end token (open_clip's rule)
    empty_caption   refuse: an item whose caption is missing or blank fails with an error;
                    score: it is scored with the empty caption (a model trained with
                    uncaptioned rows)
    """

    WHERE = "text_input"
    name: str = "text"
    dtype: str = "int32"
    context_length: int = 77
    tokenizer: str = "tokenizer.json"
    tokenizer_kind: str = "clip-bpe"
    truncation: str = "end-with-eot"
    empty_caption: str = "refuse"

    def validate(self, where: str = "text_input") -> "TextInputSpec":
        _str(self.name, where, "name")
        _choice(self.dtype, where, "dtype", ("int32", "int64"))
        _int(self.context_length, where, "context_length", 2, MAX_CONTEXT_LENGTH)
        _str(self.tokenizer, where, "tokenizer", 1024)
        _choice(self.tokenizer_kind, where, "tokenizer_kind", TOKENIZER_KINDS)
        _choice(self.truncation, where, "truncation", TRUNCATIONS)
        _choice(self.empty_caption, where, "empty_caption", EMPTY_CAPTION_RULES)
        return self



@dataclass
class OutputSpec(_FlatRecord):
    """The output tensor. `logit`: one value, sigmoid gives P(fake). `two-class-logits`:
    two values, softmax[fake_index] gives P(fake)."""

    WHERE = "output"
    name: str = "logit"
    kind: str = "logit"
    fake_index: int = 1

    def validate(self, where: str = "output") -> "OutputSpec":
        _str(self.name, where, "name")
        _choice(self.kind, where, "kind", OUTPUT_KINDS)
        _int(self.fake_index, where, "fake_index", 0, 1)
        return self


@dataclass
class Threshold(_FlatRecord):
    """Decision threshold on P(fake), and how it was chosen."""

    WHERE = "threshold"

    value: float = 0.5
    method: str = "default"
    details: dict = field(default_factory=dict)

    def validate(self, where: str = "threshold") -> "Threshold":
        self.value = _num(self.value, where, "value", 0.0, 1.0)
        _str(self.method, where, "method")
        _object(self.details, f"{where}.details")
        return self


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
        _choice(self.kind, where, "artifact kind", ARTIFACT_KINDS)
        _str(self.file, where, "file", 1024)
        parts = self.file.replace("\\", "/").split("/")
        if self.file.startswith("/") or ".." in parts or "" in parts or "\0" in self.file:
            raise ManifestError(f"{where}: artifact path '{self.file}' leaves the package")
        _str(self.sha256, where, "sha256", 64)
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256.lower()):
            raise ManifestError(f"{where}: sha256 must be 64 hex digits")
        _int(self.size, where, "size", 0, MAX_FILE_BYTES)
        _object(self.attrs, f"{where}.attrs")
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
    text_input: TextInputSpec | None = None  # caption-aware models only (schema 2)

    @property
    def takes_captions(self) -> bool:
        return self.text_input is not None

    # ---- artifacts -------------------------------------------------------
    def artifacts_of(self, *kinds: str) -> list[Artifact]:
        return [a for a in self.artifacts if a.kind in kinds]

    def artifact(self, kind: str) -> Artifact | None:
        found = self.artifacts_of(kind)
        return found[0] if found else None

    def tokenizer_artifact(self) -> Artifact:
        """The caption tokenizer's artifact; ManifestError when the package lacks it."""
        name = self.text_input.tokenizer if self.text_input is not None else None
        found = [a for a in self.artifacts if a.file == name]
        if name is None or not found or found[0].kind != "tokenizer":
            raise ManifestError(f"text_input: tokenizer '{name}' is not an artifact of kind 'tokenizer' in this package")
        return found[0]

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
            **({"text_input": self.text_input.to_dict()} if self.text_input is not None else {}),
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
            raise ManifestError(f"{where}: expected a JSON object")
        version = d.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ManifestError(
                f"{where}: unknown schema_version {version!r} (this fakedet reads "
                f"{', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}; upgrade fakedet to open it)"
            )
        _no_unknown(cls, d, where)
        if depth(d) > MAX_JSON_DEPTH:
            raise ManifestError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels")
        artifacts = d.get("artifacts", [])
        if not isinstance(artifacts, list) or len(artifacts) > MAX_ARTIFACTS:
            raise ManifestError(f"{where}: artifacts must be a list of at most {MAX_ARTIFACTS} objects")
        text = d.get("text_input")
        if text is not None and version < 2:
            raise ManifestError(f"{where}: text_input needs schema_version 2 or later, the manifest says {version}")
        text_input = TextInputSpec.from_dict(text, f"{where}.text_input") if text is not None else None
        return cls(
            text_input=text_input,
            name=_str(_need(d, "name", where), where, "name"),
            architecture=_str(d.get("architecture", "unknown"), where, "architecture"),
            input=InputSpec.from_dict(_need(d, "input", where), f"{where}.input"),
            output=OutputSpec.from_dict(d.get("output", {}), f"{where}.output"),
            threshold=Threshold.from_dict(d.get("threshold", {}), f"{where}.threshold"),
            provenance=copy.deepcopy(_object(d.get("provenance", {}), f"{where}.provenance")),
            artifacts=[Artifact.from_dict(a, f"{where}.artifacts[{i}]") for i, a in enumerate(artifacts)],
            schema_version=version,
        )

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> "Manifest":
        return cls.from_dict(parse_json(text, where), where)

    def copy(self) -> "Manifest":
        return Manifest.from_dict(copy.deepcopy(self.to_dict()))
