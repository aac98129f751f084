"""Captions as a null object (issue 26): a stage feeds each batch through the model's caption
input. The image-only twins (IMAGE_ONLY; bench's ImageOnlyFeed; calibration sets built with
IMAGE_ONLY) feed exactly the images; a captioned input feeds the images and the captions'
token ids, those the tokenizer itself gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("ftfy")

from fakedet.calibration.dataset import TensorSet  # noqa: E402
from fakedet.manifest import TextInputSpec  # noqa: E402
from fakedet.runtime import caption_tokenizer as ct  # noqa: E402
from fakedet.runtime.bench.inputs import CaptionFeed, ImageOnlyFeed  # noqa: E402
from fakedet.runtime.captions import IMAGE_ONLY, CaptionInput  # noqa: E402

CONTEXT = 16
SHA = "ab" * 32


@pytest.fixture(scope="module")
def tokenizer():
    return ct.CaptionTokenizer.from_json(ct.build_clip_tokenizer_json(ct.open_clip_vocab_path()), CONTEXT)


@pytest.fixture(scope="module")
def captioned(tokenizer):
    return CaptionInput(TextInputSpec(context_length=CONTEXT), tokenizer, SHA)


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_image_only_feeds_exactly_the_images():
    x = _images(3)
    caps = IMAGE_ONLY.align(["a cat", None, "a dog"], 3)
    assert caps == [None, None, None]  # captions given to an image-only model are set aside
    assert IMAGE_ONLY.feed("image", x, caps) is x
    assert IMAGE_ONLY.key_fields() == {}  # an image-only model's keys carry nothing about text
    bench = ImageOnlyFeed(None)
    assert bench.feed("image", x) is x and bench.feed("image", x, fresh=True) is x
    assert bench.n_tokens is None and bench.notes == []
    assert ImageOnlyFeed(30).notes == ["--caption-tokens: this model is image-only; no captions were fed"]
    tensors = list(_images(3))
    rows = [IMAGE_ONLY.prepare(c) for c in ("a", None, "b")]
    batches = list(TensorSet([], tensors, "", Path("."), caption_rows=rows, image_name="image").batches(2))
    assert [type(b) for b in batches] == [np.ndarray, np.ndarray]
    np.testing.assert_array_equal(np.concatenate(batches), np.stack(tensors))


def test_a_captioned_input_feeds_images_and_their_token_ids(captioned, tokenizer):
    x = _images(2)
    texts = ["a cat on a mat", "two dogs"]
    want = tokenizer.encode(texts)  # the reference: the tokenizer itself, batched
    feed = captioned.feed("image", x, captioned.align(texts, 2))
    assert set(feed) == {"image", "text"} and feed["image"] is x
    np.testing.assert_array_equal(feed["text"], want)
    # captions prepared one at a time (as calibration does) feed the same ids
    prepared = [captioned.prepare(t) for t in texts]
    np.testing.assert_array_equal(captioned.feed("image", x, prepared)["text"], want)
    assert captioned.key_fields() == {"text_input": TextInputSpec(context_length=CONTEXT).to_dict(),
                                      "tokenizer_sha256": SHA}
    # a calibration set: each batch carries its own rows' ids
    tensors = list(_images(3))
    rows = [captioned.prepare(t) for t in ("one", "two", "three")]
    got = list(TensorSet([], tensors, "", Path("."), captions=captioned, caption_rows=rows,
                         image_name="image").batches(2))
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in got]), np.stack(tensors))
    np.testing.assert_array_equal(np.concatenate([b["text"] for b in got]), tokenizer.encode(["one", "two", "three"]))
    # bench: one synthetic caption beside every image, cached or tokenized afresh
    bench = CaptionFeed(captioned, 5)
    one = tokenizer.encode([bench.text])[0]
    for b in (bench.feed("image", x), bench.feed("image", x, fresh=True)):
        assert b["image"] is x
        np.testing.assert_array_equal(b["text"], np.stack([one, one]))
    assert np.count_nonzero(one) == 5 + 2 and bench.n_tokens == 5  # start + 5 + end
