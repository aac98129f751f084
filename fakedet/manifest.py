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

from .errors import ManifestError
from .inputs import (  # noqa: F401  (the input contract, re-exported: most code imports it from here)
    CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATIONS, PIXEL_LIMIT, POLICIES, SMALL_IMAGE_RULES,
    InputSpec, Preprocess, TextInputSpec,
)
from .artifact_kinds import ARTIFACT_KINDS, ONNX_KINDS, TOKENIZER  # noqa: F401  (ONNX_KINDS: re-exported)
from .manifest_fields import _FlatRecord, _choice, _int, _need, _no_unknown, _num, _object, _str
from .safe_json import MAX_JSON_DEPTH, depth, parse_json
from .verdict_fields import OperatingPoint, ProbabilityCalibration, operating_points_from

# 2: the optional `text_input` (caption-aware models). Version 1 packages (image only) open unchanged.
# 3: the optional `calibration` (calibrated P(fake)) and `operating_points`, written only by a manifest
# that has them (so a package without them still opens in a fakedet that reads 2).
SCHEMA_VERSION = 2
VERDICT_SCHEMA_VERSION = 3
SUPPORTED_SCHEMA_VERSIONS = (1, 2, 3)
OUTPUT_KINDS = ("logit", "two-class-logits")
MAX_ARTIFACTS = 1000
MAX_FILE_BYTES = 1 << 50


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
    calibration: ProbabilityCalibration | None = None  # schema 3
    operating_points: list[OperatingPoint] = field(default_factory=list)  # schema 3

    @property
    def takes_captions(self) -> bool:
        return self.text_input is not None

    # ---- artifacts -------------------------------------------------------
    def artifacts_of(self, *kinds: str) -> list[Artifact]:
        return [a for a in self.artifacts if a.kind in kinds]

    def artifact(self, kind: str) -> Artifact | None:
        found = self.artifacts_of(kind)
        return found[0] if found else None

    def operating_point(self, name: str) -> OperatingPoint:
        """The named operating point; ManifestError naming the known ones otherwise."""
        for p in self.operating_points:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.operating_points) or "none (calibrate with `fakedet eval --fit-calibration`)"
        raise ManifestError(f"operating point '{name}' is not in the package (known: {known})")

    def tokenizer_artifact(self) -> Artifact:
        """The caption tokenizer's artifact; ManifestError when the package lacks it."""
        name = self.text_input.tokenizer if self.text_input is not None else None
        found = [a for a in self.artifacts if a.file == name]
        if name is None or not found or found[0].kind != TOKENIZER:
            raise ManifestError(f"text_input: tokenizer '{name}' is not an artifact of kind 'tokenizer' in this package")
        return found[0]

    def put_artifact(self, artifact: Artifact) -> None:
        """Add an artifact, replacing any with the same file name."""
        self.artifacts = [a for a in self.artifacts if a.file != artifact.file] + [artifact]

    # ---- (de)serialisation ----------------------------------------------
    def to_dict(self, with_artifacts: bool = True) -> dict:
        verdict = self.calibration is not None or bool(self.operating_points)
        d = {
            "schema_version": max(self.schema_version, VERDICT_SCHEMA_VERSION) if verdict else self.schema_version,
            "name": self.name,
            "architecture": self.architecture,
            "input": self.input.to_dict(),
            **({"text_input": self.text_input.to_dict()} if self.text_input is not None else {}),
            "output": self.output.to_dict(),
            "threshold": self.threshold.to_dict(),
            "provenance": self.provenance,
            **({"calibration": self.calibration.to_dict()} if self.calibration is not None else {}),
            **({"operating_points": [p.to_dict() for p in self.operating_points]} if self.operating_points else {}),
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
        for key in ("calibration", "operating_points"):
            if key in d and version < 3:
                raise ManifestError(f"{where}: {key} needs schema_version 3 or later, the manifest says {version}")
        calibration = d.get("calibration")
        return cls(
            text_input=text_input,
            calibration=ProbabilityCalibration.from_dict(calibration, f"{where}.calibration") if calibration else None,
            operating_points=operating_points_from(d.get("operating_points", []), f"{where}.operating_points"),
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
