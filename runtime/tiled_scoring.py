"""Scoring a large image tile by tile, exactly (see runtime.tiling for why it is exact).

The image stays uint8 (after the policy's geometry) until each tile is cut: a tile is
normalised on its own, run, and its evidence map cropped to its core; the cores stitch
into the whole image's map, and the logit is that map's mean (the exported map's mean is
the model's logit: fakedet.evidence_spec). Memory is the uint8 image plus one tile's
activations, whatever the image's size."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .tiling import Analysis, Reach, analyse, core_cells, spans

DEFAULT_TILE_SIDE = 1024  # pixels of a tile, halo included (~200 MB of activations for resnet-tiny-nodown)
MAX_TILE_SIDE = 2048  # larger tiles save little (the halos are ~5% of a 1024-px tile) and cost memory
MIN_CORE_CELLS = 4  # a core is at least 4 map cells a side, or the halos cost more than the cores


@dataclass
class TiledImage:
    """What `Detector.prepare` returns for an image scored in tiles: its uint8 pixels (HxWx3,
    after the policy's geometry), not a float tensor."""
    pixels: np.ndarray

    @property
    def shape(self) -> tuple:
        return self.pixels.shape

    @property
    def nbytes(self) -> int:
        return self.pixels.nbytes


class Tiler:
    """Cuts, runs and stitches. `run(tensor (1,3,h,w)) -> evidence map (h', w')`."""

    def __init__(self, reach: Reach, normalize, run, tile_side: int = DEFAULT_TILE_SIDE):
        self.reach = reach
        self.normalize = normalize  # uint8 HxWx3 -> float32 CxHxW
        self.run = run
        self.set_tile_side(tile_side)

    def set_tile_side(self, side: int) -> None:
        """Tiles of at most `side` pixels a side, halo included (a core keeps at least
        MIN_CORE_CELLS map cells, so a tiny side is raised)."""
        self.core = tuple(max(MIN_CORE_CELLS * s, (side - 2 * self.reach.halo(a)) // s * s)
                          for a, s in enumerate(self.reach.stride))

    @property
    def tile_side(self) -> int:
        return max(c + 2 * self.reach.halo(a) for a, c in enumerate(self.core))

    def wants_tiles(self, height: int, width: int) -> bool:
        """More than one tile: an image that fits one is scored whole (and batched)."""
        return height > self.core[0] + self.reach.halo(0) or width > self.core[1] + self.reach.halo(1)

    def evidence(self, pixels: np.ndarray) -> np.ndarray:
        """The whole image's evidence map, stitched from the tiles' cores."""
        h, w = pixels.shape[:2]
        rows = spans(h, self.core[0], self.reach.halo(0), self.reach.stride[0])
        cols = spans(w, self.core[1], self.reach.halo(1), self.reach.stride[1])
        band_rows = []
        for i, ry in enumerate(rows):
            pieces = []
            for j, rx in enumerate(cols):
                tile = self.normalize(pixels[ry.start:ry.end, rx.start:rx.end])
                ev = np.asarray(self.run(tile[None]), dtype=np.float32)
                cells = ev.reshape(ev.shape[-2], ev.shape[-1])
                del tile
                y0, y1 = core_cells(ry, rows[i + 1] if i + 1 < len(rows) else None, self.reach.stride[0],
                                    cells.shape[0])
                x0, x1 = core_cells(rx, cols[j + 1] if j + 1 < len(cols) else None, self.reach.stride[1],
                                    cells.shape[1])
                pieces.append(cells[y0:y1, x0:x1].copy())
            band_rows.append(np.concatenate(pieces, axis=1))
        return np.concatenate(band_rows, axis=0)

    def score(self, pixels: np.ndarray) -> tuple[float, np.ndarray]:
        """(logit, evidence map) of one image: the logit is the stitched map's mean."""
        cells = self.evidence(pixels)
        return float(np.mean(cells, dtype=np.float64)), cells


def side_for_bytes(tile_bytes: float, bytes_per_pixel: float) -> int:
    """The tile side whose activations (and float input) fit in `tile_bytes`."""
    return min(MAX_TILE_SIDE, max(1, int(math.sqrt(max(tile_bytes, 1.0) / max(bytes_per_pixel, 1.0)))))


def tiler_for(detector) -> tuple[Tiler | None, str]:
    """A Tiler for `detector`, or None and why its images are scored whole."""
    m = detector.manifest
    if m.input.preprocess.policy != "whole-image":
        return None, "the model takes a fixed-size input"
    if m.evidence is None or m.input.layout != "NCHW":
        return None, "the package has no exported evidence map over an NCHW input"
    if detector.takes_captions:
        return None, "the model takes captions"
    art = detector.choice.artifact
    if not art.kind.startswith("onnx"):
        return None, f"the backend runs {art.kind}, not an ONNX graph"
    try:
        names = detector.backend.output_names()
    except Exception:
        names = []
    if m.evidence.name not in names:
        return None, f"the backend does not return '{m.evidence.name}'"
    analysis = analyse_package(detector.package, art, m.input.name, m.evidence.name)
    if analysis.reach is None:
        return None, analysis.why_not
    from .preprocess import normalize

    name = m.evidence.name

    def run(x: np.ndarray) -> np.ndarray:
        _, maps = detector.backend.infer_outputs(x, (name,))
        return maps[0]

    return Tiler(analysis.reach, lambda arr: normalize(arr, m.input), run), "tiled"


def analyse_package(package, artifact, image: str, evidence: str) -> Analysis:
    from .onnx_wire import read_graph

    try:
        graph = read_graph(package.path_of(artifact, verify=False))
    except Exception as e:  # an unreadable graph is scored whole, as before
        return Analysis(None, f"cannot read the graph: {type(e).__name__}: {e}")
    return analyse(graph, image, evidence)
