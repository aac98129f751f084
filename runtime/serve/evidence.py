"""Evidence maps in the service (`POST /v1/detect?explain=1`).

A package with the exported evidence output gets its map from the same forward pass, so
the batcher always asks for it (no extra cost) and a result carries it only when the
request says explain=1. A model without the output would need one forward per tile: the
service does not make tile maps (they would hold the inference thread for a whole
batch's worth per image); `fakedet predict --explain` does."""

from __future__ import annotations

import functools

NO_EXPORTED_MAP = ("this model has no exported evidence output; its tile maps (one forward per tile) come from "
                   "`fakedet predict --explain`, not from the service")
TRUE_WORDS = ("1", "true", "yes", "on")


def batch_scorer(detector):
    """What the batcher runs: predict_prepared, with the map when the package exports one."""
    explainer = getattr(detector, "explainer", None)  # a stand-in detector in a test may have none
    if explainer is not None and explainer().exported:
        return functools.partial(detector.predict_prepared, explain=True)
    return detector.predict_prepared


def wants_explain(value: str | None) -> bool:
    return value is not None and value.strip().lower() in TRUE_WORDS


def evidence_fields(pred) -> dict:
    """The result's evidence fields: the grid summary and the partial verdict, or why none."""
    if pred.evidence is None:
        return {"evidence": None, "partial": None, "evidence_note": NO_EXPORTED_MAP}
    return {"evidence": pred.evidence.summary(), "partial": pred.partial}


OPENAPI_PARAM = {"name": "explain", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "1: each result also carries its evidence map (a grid of at most 16x16 P(fake), "
                                "the share of the area over the threshold) and the 'partial' verdict"}
