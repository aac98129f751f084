"""A caption-aware package's text input at run time: which caption goes with which image,
what a missing one means, and the token ids fed beside the image tensor."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from fakedet.errors import DataError, FakedetError, ManifestError, PackageError, first_line
from fakedet.manifest import TextInputSpec

MAX_CAPTION_CHARS = 100_000  # far beyond any context length: a bound on the work one item may cost


class CaptionRefused(FakedetError):
    """An item's caption is missing or unusable."""


class CaptionInput:
    """The package's text input and its tokenizer (loaded once, from the package's hashed
    tokenizer file)."""

    takes_captions = True

    def __init__(self, spec: TextInputSpec, tokenizer, tokenizer_sha256: str | None = None):
        self.spec = spec
        self.tokenizer = tokenizer
        self.tokenizer_sha256 = tokenizer_sha256  # the package's hashed tokenizer file

    @classmethod
    def for_package(cls, package) -> "CaptionInput | ImageOnly":
        """The package's text input, or IMAGE_ONLY (the null object) for an image-only package."""
        return cls.of(package) or IMAGE_ONLY

    @classmethod
    def of(cls, package) -> "CaptionInput | None":
        """None for an image-only package."""
        spec = package.manifest.text_input
        if spec is None:
            return None
        from .caption_tokenizer import CaptionTokenizer

        try:
            art = package.manifest.tokenizer_artifact()
        except ManifestError as e:
            raise PackageError(package.source, str(e)) from None
        return cls(spec, CaptionTokenizer.from_file(package.path_of(art), spec.context_length), art.sha256)

    @property
    def empty_is_valid(self) -> bool:
        return self.spec.empty_caption == "score"

    def align(self, captions, n: int) -> list:
        """One caption (or None) per item."""
        if captions is None:
            return [None] * n
        if isinstance(captions, (str, bytes)):
            raise FakedetError("captions: pass one caption per image (a list), not one string")
        captions = list(captions)
        if len(captions) != n:
            raise FakedetError(f"captions: {len(captions)} caption(s) for {n} image(s); give one per image "
                               "(None where an image has none)")
        return captions

    def check(self, caption) -> None:
        """Raise CaptionRefused when `caption` cannot be scored. A caption already turned into
        token ids (`prepare`) passes when its shape is the package's."""
        if isinstance(caption, np.ndarray):
            if caption.shape != (self.spec.context_length,) or caption.dtype.kind not in "iu":
                raise CaptionRefused(f"prepared caption must be {self.spec.context_length} integer token ids, "
                                     f"got {caption.dtype} {caption.shape}")
            return
        if caption is not None and not isinstance(caption, str):
            raise CaptionRefused(f"caption must be text, got {type(caption).__name__}")
        if caption is not None and len(caption) > MAX_CAPTION_CHARS:
            raise CaptionRefused(f"caption is {len(caption)} characters long (at most {MAX_CAPTION_CHARS})")
        if (caption is None or not caption.strip()) and not self.empty_is_valid:
            raise CaptionRefused("no caption: this model reads each image with its caption, and its package "
                               "refuses an empty one (give the caption, or export with --empty-caption score)")

    def problem(self, caption) -> str | None:
        """Why `caption` cannot be scored, or None."""
        try:
            self.check(caption)
        except CaptionRefused as e:
            return str(e)
        return None

    def tokens(self, captions: list) -> np.ndarray:
        """Token ids for captions (str or None), or rows already prepared (`prepare`)."""
        out = np.zeros((len(captions), self.spec.context_length), dtype=self.spec.dtype)
        text = [i for i, c in enumerate(captions) if not isinstance(c, np.ndarray)]
        if text:
            out[text] = self.tokenizer.encode(["" if captions[i] is None else captions[i] for i in text])
        for i, c in enumerate(captions):
            if isinstance(c, np.ndarray):
                out[i] = c
        return out

    def prepare(self, caption) -> np.ndarray:
        """One caption checked and tokenized ahead of inference (a host tokenizes in its decode
        workers, so a long caption never holds up the inference thread): pass the result
        where the caption would go."""
        self.check(caption)
        return self.tokens([caption])[0]

    def feed(self, image_name: str, images: np.ndarray, captions: list) -> dict:
        """The backend's inputs for images and their (checked) captions."""
        return {image_name: images, self.spec.name: self.tokens(captions)}

    def key_fields(self) -> dict:
        """What turns captions into token ids (text input spec, tokenizer file hash), for keys
        over a model's inputs: a change of either is a change of the data fed."""
        return {"text_input": self.spec.to_dict(), "tokenizer_sha256": self.tokenizer_sha256}


class ImageOnly:
    """CaptionInput's image-only twin (a null object): an image-only model reads no caption,
    so any captions given are set aside, none is refused, and the backend gets the images as
    they are. Code that scores items calls the same methods whatever the model takes."""

    takes_captions = False
    empty_is_valid = True

    def align(self, captions, n: int) -> list:
        return [None] * n  # captions, if any, are ignored

    def check(self, caption) -> None:
        pass

    def problem(self, caption) -> None:
        return None

    def prepare(self, caption) -> None:
        return None

    def feed(self, image_name: str, images: np.ndarray, captions: list) -> np.ndarray:
        return images

    def key_fields(self) -> dict:
        return {}  # no text input: keys stay those of an image-only model


IMAGE_ONLY = ImageOnly()


def caption_key(path) -> str:
    """The one way a path is looked up in a captions table."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def read_captions_csv(source) -> dict[str, str]:
    """path -> caption from a CSV with 'path' and 'caption' columns (a dataset CSV, or a
    `predict --captions` file); relative paths are read against the CSV's folder. Look
    captions up with `caption_for`."""
    source = Path(source)
    if not source.is_file():
        raise DataError(f"{source}: captions need a CSV file with 'path' and 'caption' columns")
    out: dict[str, str] = {}
    try:
        with open(source, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            if "path" not in cols or "caption" not in cols:
                raise DataError(f"{source}: a captions CSV needs columns 'path' and 'caption'; found {sorted(cols)}")
            for n, row in enumerate(reader, start=2):
                if row.get("path") is None or not row["path"].strip():
                    raise DataError(f"{source}:{n}: empty path")
                p = Path(row["path"])
                key = caption_key(p if p.is_absolute() else source.parent / p)
                if key in out:
                    raise DataError(f"{source}:{n}: '{row['path']}' is listed twice")
                out[key] = row["caption"] or ""
    except UnicodeDecodeError as e:
        raise DataError(f"{source}: not UTF-8 text ({first_line(e)})") from None
    except csv.Error as e:
        raise DataError(f"{source}: not a readable CSV ({first_line(e)})") from None
    return out


def caption_for(captions: dict | None, path) -> str | None:
    """`path`'s caption in a table from read_captions_csv (None: not listed)."""
    return None if captions is None else captions.get(caption_key(path))
