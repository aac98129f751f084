"""How a Detector explains its predictions: the exported evidence output when the package
and the backend have it, a tile map otherwise (runtime.evidence), and the `partial` verdict."""

from __future__ import annotations

import numpy as np

from fakedet.errors import FakedetError

from .evidence import EvidenceMap, anchor_of, exported_map, is_partial, logit_of, tile_map
from .imageio import load_image
from .scoring import fake_logits


class Explainer:
    def __init__(self, detector):
        self.detector = detector
        m = detector.manifest
        self.name = m.evidence.name if m.evidence is not None else None
        self.exported = self.name is not None and self._backend_has(self.name)
        chosen = m.evidence.partial_logit if m.evidence is not None else None
        self.partial_logit = float(chosen) if chosen is not None else logit_of(detector.threshold)
        self.partial_window = m.evidence.partial_window if chosen is not None else 0.0

    def _backend_has(self, name: str) -> bool:
        try:
            return name in self.detector.backend.output_names()
        except FakedetError:
            return False

    @property
    def source(self) -> str:
        return "exported" if self.exported else "tiles"

    def infer(self, batch) -> tuple[np.ndarray, list[EvidenceMap]]:
        """(raw first output, a map per row) in one forward pass (exported output only)."""
        out, maps = self.detector.backend.infer_outputs(batch, (self.name,))
        lead = batch if isinstance(batch, np.ndarray) else batch[self.detector.manifest.input.name]
        h_axis, w_axis = self.detector.manifest.input.hw_axes()
        hw = (lead.shape[h_axis], lead.shape[w_axis])
        return out, [exported_map(m, hw, self.detector.threshold, self.anchor) for m in maps]

    @property
    def anchor(self) -> tuple | None:
        """Where the exported map's cells look (from the graph, when the runtime can read it)."""
        tiler = self.detector.tiler
        return anchor_of(tiler.reach) if tiler is not None else None

    def tiles(self, item, caption=None) -> EvidenceMap:
        """The tile map of one item (decoded again: the window keeps tensors, not images)."""
        d = self.detector
        img = load_image(item, d.manifest.input.preprocess.max_pixels)

        def score(tensors):
            feed = d.captions.feed(d.manifest.input.name, tensors, [caption] * len(tensors))
            return fake_logits(d.backend.infer(feed), d.manifest.output)

        return tile_map(img, d.manifest.input, score, d.threshold, batch=d.batch_size)

    def attach(self, pred, ev: EvidenceMap) -> None:
        pred.evidence = ev
        pred.partial = is_partial(ev, bool(pred.is_fake), self.partial_logit, self.partial_window)
