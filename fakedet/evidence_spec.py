"""The manifest's `evidence` entry (schema 3): how a package says where in an image it
sees its evidence.

`source` "exported": the ONNX graph has a second output `name` (N x 1 x h x w logits,
one per region of the input tensor, whose mean is the image's logit). A package without
the entry (older schemas, CLIP heads, foreign ONNX) gets a tile map from the runtime.
`partial_logit`: the region logit at or above which an image the whole-image score
calls real is flagged `partial` (chosen by `fakedet eval --splice`; the decision
threshold's logit until then). A logit, not a probability: region logits of a trained
detector reach tens, where P(fake) rounds to 1 and no probability threshold separates.
`partial_window`: what is compared with `partial_logit`: the highest mean region logit over
any window of that fraction of the map's side (0.5: a quarter of the image); 0, one
region. One region alone is noisy on real photos; a window asks that an area look generated."""

from __future__ import annotations

from dataclasses import dataclass, field

from .manifest_fields import _FlatRecord, _choice, _num, _object, _str

EVIDENCE_SOURCES = ("exported",)
EVIDENCE_KINDS = ("logit-map",)


@dataclass
class EvidenceSpec(_FlatRecord):
    WHERE = "evidence"

    name: str = "evidence"
    kind: str = "logit-map"
    source: str = "exported"
    partial_logit: float | None = None
    partial_window: float = 0.0
    details: dict = field(default_factory=dict)  # how the partial threshold was chosen, the export's check

    def validate(self, where: str = "evidence") -> "EvidenceSpec":
        _str(self.name, where, "name")
        _choice(self.kind, where, "kind", EVIDENCE_KINDS)
        _choice(self.source, where, "source", EVIDENCE_SOURCES)
        if self.partial_logit is not None:
            self.partial_logit = _num(self.partial_logit, where, "partial_logit", -1e6, 1e6)
        self.partial_window = _num(self.partial_window, where, "partial_window", 0.0, 1.0)
        _object(self.details, f"{where}.details")
        return self
