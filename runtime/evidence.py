"""Evidence maps in the runtime: where in an image the detector sees its evidence.

Two sources:
  exported  the package's ONNX graph has a second output (manifest `evidence`): per-region
            logits over the model's input tensor, from the same forward pass (no extra cost).
  tiles     any other model (CLIP heads, foreign ONNX): the image is cut into overlapping
            tiles, each scored as an image of its own; a cell's logit is the mean of the
            tiles that cover it. Cost: one forward per tile (`tile_layout` says how many).

A map's cells cover equal areas of what they map (`covers`: the model's input tensor,
i.e. the pixels the model read, or the whole decoded image), so the share of cells over
a threshold is the share of that area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from fakedet.manifest import InputSpec

from .scoring import sigmoid

GRID_MAX_SIDE = 16  # the JSON grid: at most 16 x 16 probabilities
MIN_TILE = 32


@dataclass
class EvidenceMap:
    logits: np.ndarray  # (h, w) float32 per-region logits
    source: str  # "exported" or "tiles"
    covers: str  # "input" (the preprocessed pixels the model read) or "image" (the decoded image)
    size: tuple[int, int]  # (width, height) in pixels of what the map covers
    threshold: float  # P(fake) over which a region counts
    # where each cell looks, when the graph says (runtime.tiling): per axis (height, width),
    # (stride, centre of cell 0) in pixels; cell j's receptive field is centred on
    # centre + stride * j. None: cells spread evenly over the covered size.
    anchor: tuple | None = None

    @property
    def probs(self) -> np.ndarray:
        return sigmoid(self.logits).astype(np.float32)

    def area_over(self, threshold: float | None = None) -> float:
        t = self.threshold if threshold is None else threshold
        return float(np.mean(self.probs >= t))

    def max_region(self) -> float:
        return float(self.probs.max())

    def max_logit(self) -> float:
        return float(self.logits.max())

    def window_logit(self, window: float = 0.0) -> float:
        """The highest mean region logit over any window whose sides are `window` of the map's
        (at least one region); 0 gives the single highest region."""
        return float(window_means(self.logits, window).max())

    def grid(self, max_side: int = GRID_MAX_SIDE) -> list[list[float]]:
        """Probabilities on at most max_side x max_side cells (block means of the regions)."""
        return [[round(float(v), 4) for v in row] for row in block_mean(self.probs, max_side)]

    def upsampled(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        """P(fake) per pixel (height x width; default: the covered size), bilinear between the
        cells' centres (the anchor's where known, else evenly spread ones)."""
        w, h = width or self.size[0], height or self.size[1]
        if self.anchor is None:
            img = Image.fromarray(self.probs, mode="F").resize((w, h), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.float32)
        rows = _cell_coordinates(h, self.size[1], self.logits.shape[0], *self.anchor[0])
        cols = _cell_coordinates(w, self.size[0], self.logits.shape[1], *self.anchor[1])
        return _bilinear(self.probs, rows, cols)

    def summary(self) -> dict:
        """The JSON form: small grid, area share over the threshold, where it came from."""
        return {"source": self.source, "covers": self.covers, "shape": list(self.logits.shape),
                "threshold": self.threshold, "area_over_threshold": round(self.area_over(), 4),
                "max_region": round(self.max_region(), 4), "grid": self.grid()}


def _cell_coordinates(n: int, covered: int, cells: int, stride: float, centre: float) -> np.ndarray:
    """The fractional cell index under each of n output pixels spanning `covered` input pixels."""
    pixel = (np.arange(n, dtype=np.float64) + 0.5) * (covered / n) - 0.5  # output pixel centres, input pixels
    return np.clip((pixel - centre) / stride, 0.0, cells - 1.0)


def _bilinear(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, a.shape[0] - 1), np.minimum(c0 + 1, a.shape[1] - 1)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    top = a[r0][:, c0] * (1 - fc) + a[r0][:, c1] * fc
    bottom = a[r1][:, c0] * (1 - fc) + a[r1][:, c1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def anchor_of(reach) -> tuple | None:
    """(stride, centre of cell 0) per axis from a runtime.tiling.Reach: cell j reads input
    pixels [S*j - before, S*j + after], so its centre is S*j + (after - before) / 2."""
    if reach is None:
        return None
    return tuple((float(reach.stride[a]), (reach.after[a] - reach.before[a]) / 2.0) for a in (0, 1))


def block_mean(a: np.ndarray, max_side: int) -> np.ndarray:
    """Mean over a grid of at most max_side x max_side blocks (uneven blocks where needed)."""
    h, w = a.shape
    ys = np.linspace(0, h, min(h, max_side) + 1).round().astype(int)
    xs = np.linspace(0, w, min(w, max_side) + 1).round().astype(int)
    return np.array([[a[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].mean() for j in range(len(xs) - 1)]
                     for i in range(len(ys) - 1)], dtype=np.float32)


def window_means(a: np.ndarray, window: float) -> np.ndarray:
    """Means of `a` over every window of round(window * side) cells per side (>= 1), from
    its summed-area table."""
    h, w = a.shape
    kh, kw = (max(1, min(n, int(round(window * n)))) for n in (h, w))
    s = np.zeros((h + 1, w + 1), np.float64)
    s[1:, 1:] = np.asarray(a, np.float64).cumsum(0).cumsum(1)
    return (s[kh:, kw:] - s[:-kh, kw:] - s[kh:, :-kw] + s[:-kh, :-kw]) / (kh * kw)


def is_partial(ev: EvidenceMap, whole_image_fake: bool, partial_logit: float, window: float = 0.0) -> bool:
    """Some window's mean region logit at or over the partial threshold while the whole-image
    score is under its own."""
    return (not whole_image_fake) and ev.window_logit(window) >= partial_logit


def logit_of(p: float) -> float:
    """The logit of a probability (+-inf at 1 and 0)."""
    import math

    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))


# ---- tiles ------------------------------------------------------------------
def tile_side(spec: InputSpec, width: int, height: int) -> int:
    """A tile is what the model takes (a fixed-size input); a whole-image model gets
    tiles of a quarter of the shorter side (at least 32 px)."""
    pre = spec.preprocess
    if pre.size is not None:
        return int(max(pre.size))
    return max(MIN_TILE, min(width, height) // 4)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_layout(spec: InputSpec, width: int, height: int) -> tuple[int, int, list[tuple[int, int]]]:
    """(tile side, stride, [(x, y) of each tile]): stride half a tile, so tiles overlap by half
    and every pixel is scored by up to four of them. The cost is one forward per tile."""
    tile = tile_side(spec, width, height)
    stride = max(1, tile // 2)
    return tile, stride, [(x, y) for y in _starts(height, tile, stride) for x in _starts(width, tile, stride)]


def tile_map(img: Image.Image, spec: InputSpec, score_tensors, threshold: float, batch: int = 8) -> EvidenceMap:
    """The tile map of a decoded RGB image; `score_tensors(batch) -> logits` scores
    preprocessed tiles (the detector's own preprocessing makes each tile a model input)."""
    from .preprocess import preprocess_image

    w, h = img.size
    tile, stride, spots = tile_layout(spec, w, h)
    logits = []
    for start in range(0, len(spots), batch):
        chunk = spots[start:start + batch]
        tensors = np.stack([preprocess_image(img.crop((x, y, min(x + tile, w), min(y + tile, h))), spec)
                            for x, y in chunk])
        logits.extend(np.asarray(score_tensors(tensors), dtype=np.float64).reshape(-1).tolist())
    ch, cw = -(-h // stride), -(-w // stride)  # cells of stride x stride pixels
    total, count = np.zeros((ch, cw)), np.zeros((ch, cw))
    for (x, y), lg in zip(spots, logits):
        y0, x0 = y // stride, x // stride
        y1, x1 = -(-min(y + tile, h) // stride), -(-min(x + tile, w) // stride)
        total[y0:y1, x0:x1] += lg
        count[y0:y1, x0:x1] += 1
    cells = (total / np.maximum(count, 1)).astype(np.float32)
    return EvidenceMap(cells, "tiles", "image", (w, h), threshold)


def exported_map(evidence: np.ndarray, input_hw: tuple[int, int], threshold: float,
                 anchor: tuple | None = None) -> EvidenceMap:
    """One image's exported map (1 x h x w or h x w logits) over an input of input_hw pixels."""
    a = np.asarray(evidence, dtype=np.float32)
    a = a.reshape(a.shape[-2], a.shape[-1])
    return EvidenceMap(a, "exported", "input", (int(input_hw[1]), int(input_hw[0])), threshold, anchor)
