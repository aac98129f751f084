"""What the benchmark feeds a model: synthetic tensors of the input's shape, or real
images decoded and preprocessed each iteration (`--images`); for a caption-aware model,
also the token ids of a synthetic caption of a stated length beside every image
(`--caption-tokens`), tokenized by the package's own tokenizer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fakedet.errors import FakedetError, ImageError
from fakedet.package import ModelPackage

WHOLE_IMAGE_HW = (224, 224)  # whole-image models take any size; the benchmark picks this one
DEFAULT_CAPTION_TOKENS = 20  # a typical caption (COCO's average is about 11 words, 13 BPE tokens)
# Words that are one CLIP BPE token each: a synthetic caption of N tokens is N of them.
CAPTION_WORDS = ("a photo of a dog running on the beach near the water with people and boats in the "
                 "distance under a blue sky at sunset").split()


def sample_shape(manifest) -> tuple[tuple, list[str]]:
    """Shape of one input tensor (no batch axis) from the manifest's input spec, and notes."""
    spec = manifest.input
    if spec.preprocess.size is None:
        h, w = WHOLE_IMAGE_HW
        return spec.tensor_shape(hw=WHOLE_IMAGE_HW), [f"whole-image model: synthetic inputs are {h}x{w}"]
    return spec.tensor_shape(), []


def synthetic_caption(tokenizer, n_tokens: int) -> str:
    """A caption that the tokenizer turns into exactly `n_tokens` BPE tokens (start and
    end markers not counted), built from CAPTION_WORDS; checked by tokenizing it."""
    words: list[str] = []
    count, pool = 0, 0
    while count < n_tokens and pool < 10 * (n_tokens + len(CAPTION_WORDS)):
        word = CAPTION_WORDS[pool % len(CAPTION_WORDS)]
        pool += 1
        grown = len(tokenizer.token_ids([" ".join(words + [word])])[0])
        if grown <= n_tokens:  # a word worth two tokens where one is left is passed over
            words.append(word)
            count = grown
    if count != n_tokens:
        raise FakedetError(f"cannot build a caption of {n_tokens} tokens with this package's tokenizer")
    return " ".join(words)


class CaptionFeed:
    """The token ids fed beside the images of a caption-aware model: one synthetic caption
    of `n_tokens` tokens, the same for every image."""

    def __init__(self, captions, n_tokens: int | None):  # captions: runtime.captions.CaptionInput
        ctx = captions.spec.context_length
        n = DEFAULT_CAPTION_TOKENS if n_tokens is None else int(n_tokens)
        n = min(n, ctx - 2) if n_tokens is None else n
        if not 1 <= n <= ctx - 2:
            raise FakedetError(f"--caption-tokens {n}: this model's captions hold 1 to {ctx - 2} tokens "
                               f"(its context is {ctx} positions, two of them the start and end markers)")
        self.captions, self.n_tokens, self.context_length = captions, n, ctx
        self.text = synthetic_caption(captions.tokenizer, n)
        self.name = captions.spec.name
        self._cache: dict[int, np.ndarray] = {}
        self.notes = [self.describe()]

    def tokens(self, b: int) -> np.ndarray:
        if b not in self._cache:
            self._cache[b] = self.captions.tokens([self.text] * b)
        return self._cache[b]

    def describe(self) -> str:
        return (f"captions: a synthetic caption of {self.n_tokens} tokens beside every image ('{self.text}'; "
                f"start + {self.n_tokens} + end of the {self.context_length} positions, the rest padding)")

    def feed(self, image_name: str, images: np.ndarray, fresh: bool = False) -> dict:
        """{image input: images, text input: token ids}; `fresh`: tokenized now, as a service
        would, rather than taken from the cache."""
        ids = self.captions.tokens([self.text] * len(images)) if fresh else self.tokens(len(images))
        return {image_name: images, self.name: ids}


class ImageOnlyFeed:
    """CaptionFeed's null twin for an image-only model: no caption, the images fed as they are."""

    n_tokens = None

    def __init__(self, n_tokens: int | None):
        self.notes = [] if n_tokens is None else ["--caption-tokens: this model is image-only; no captions were fed"]

    def feed(self, image_name: str, images: np.ndarray, fresh: bool = False) -> np.ndarray:
        return images


def caption_feed(pkg: ModelPackage, n_tokens: int | None) -> "CaptionFeed | ImageOnlyFeed":
    """What the benchmark feeds beside the images: the one place that asks what the model takes."""
    from ..captions import CaptionInput

    captions = CaptionInput.for_package(pkg)
    return CaptionFeed(captions, n_tokens) if captions.takes_captions else ImageOnlyFeed(n_tokens)


class BenchInputs:
    """Batches to feed: synthetic tensors, or real images decoded and preprocessed each
    iteration, fed through `caption_feed` (a caption-aware model gets a dict {image input:
    batch, text input: token ids}, an image-only one the batch)."""

    def __init__(self, pkg: ModelPackage, settings):  # a run.BenchSettings
        self.spec = pkg.manifest.input
        self.shape, self.notes = sample_shape(pkg.manifest)
        self.caption_feed = caption_feed(pkg, settings.caption_tokens)
        self.notes += self.caption_feed.notes
        self.rng = np.random.default_rng(settings.seed)
        self.files = []
        self.failed = 0
        if settings.e2e_dir:
            from ..imageio import expand_paths

            self.files = expand_paths([Path(settings.e2e_dir)])
            if not self.files:
                raise FakedetError(f"{settings.e2e_dir}: no images found for --e2e")
        self._next = 0
        self._cache: dict[int, np.ndarray] = {}

    @property
    def caption_tokens(self) -> int | None:
        """The caption length fed (tokens), None for an image-only model."""
        return self.caption_feed.n_tokens

    def synthetic(self, b: int):
        if b not in self._cache:
            self._cache[b] = self.rng.standard_normal((b,) + tuple(self.shape)).astype(np.float32)
        return self.caption_feed.feed(self.spec.name, self._cache[b])

    def real(self, b: int) -> tuple[object, float]:
        """Decode + preprocess b images (cycling through the folder), and tokenize their
        captions (a caption-aware model); (batch, ms)."""
        from ..imageio import load_image
        from ..preprocess import preprocess_image

        t0 = time.perf_counter()
        tensors, tries = [], 0
        while len(tensors) < b:
            if tries > 2 * len(self.files) + b:
                raise FakedetError(f"{len(self.files)} images in the --e2e folder; too few decode")
            path = self.files[self._next % len(self.files)]
            self._next += 1
            tries += 1
            try:
                tensors.append(preprocess_image(load_image(path, self.spec.preprocess.max_pixels), self.spec, str(path)))
            except ImageError:
                self.failed += 1  # one bad image costs only itself
        shapes = {t.shape for t in tensors}
        if len(shapes) > 1:
            raise FakedetError("the --e2e images preprocess to different sizes (whole-image policy); "
                               "use same-size images to batch them")
        batch = self.caption_feed.feed(self.spec.name, np.stack(tensors), fresh=True)  # captions tokenized each time
        return batch, (time.perf_counter() - t0) * 1e3
